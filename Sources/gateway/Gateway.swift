import ArgumentParser
import CLISupport
import Foundation
import GatewayCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

@main
enum GatewayMain {
    static func main() async { await CommandRunner.main(Gateway.self) }
}

struct Gateway: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "HTTP/1.1 gateway with Istio-shaped config and Envoy's circuit breaking, retries and outlier detection.",
        subcommands: [Serve.self, Validate.self],
        defaultSubcommand: Serve.self)
}

/// Prints one line to stderr and exits non-zero: the CLI's way to refuse bad input.
func fail(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("gateway: \(message)\n".utf8))
    return ExitCode(1)
}

func loadConfig(_ path: String) throws -> GatewayConfig {
    do {
        return try ConfigLoader.load(contentsOf: path)
    } catch let error as ConfigError {
        throw fail("invalid config \(path): \(error.description)")
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the data plane (default).")

    @Option(help: "Config file (SPEC §4).") var config = "config/gateway.json"
    @Option(help: "Listener port, overriding the config (0 picks a free port).") var port: Int?
    @Option(help: "Listener address, overriding the config.") var address: String?
    @Option(name: .customLong("admin-port"), help: "Admin port, overriding the config (0 picks a free port).") var adminPort: Int?
    @Option(name: .customLong("access-log"), help: "Access log: '-' for stdout, 'off', or a file path.") var accessLog = "-"
    @Option(help: "Event loop threads.") var threads = System.coreCount
    @Option(name: .customLong("cpu-affinity"),
            help: "'auto' pins each event loop to its own core when there is one loop per core; 'off' never pins.")
    var cpuAffinity = "auto"
    @Option(name: .customLong("loop-scheduling"),
            help: "'batch' (default) runs the event loops as SCHED_BATCH threads: woken, they wait for the thread running on their core instead of preempting it; 'normal' leaves them SCHED_OTHER.")
    var loopScheduling = "batch"
    @Option(name: .customLong("loop-nice"), parsing: .unconditional,
            help: "Nice value of the event loop threads, -20...19 (default -5 when the process may lower it, CAP_SYS_NICE): a busy loop keeps its core until its round of events is done instead of being preempted by each upstream it wakes; 0 leaves them as started.")
    var loopNice: Int32?
    @Option(name: .customLong("drain-timeout"), help: "Seconds SIGTERM waits for in-flight requests.") var drainTimeout = 10.0

    func validate() throws {
        if let port, !(0...65535).contains(port) { throw ValidationError("--port must be 0...65535") }
        if let adminPort, !(0...65535).contains(adminPort) { throw ValidationError("--admin-port must be 0...65535") }
        if threads < 1 { throw ValidationError("--threads must be >= 1") }
        if cpuAffinity != "auto" && cpuAffinity != "off" { throw ValidationError("--cpu-affinity must be auto or off") }
        if LoopScheduling(rawValue: loopScheduling) == nil { throw ValidationError("--loop-scheduling must be batch or normal") }
        if let loopNice, !LoopNice.range.contains(loopNice) { throw ValidationError("--loop-nice must be -20...19") }
    }

    func run() async throws {
        var logger = Logger(label: "gateway")
        logger.logLevel = .info
        // Every client and upstream connection is a descriptor: take all the system allows,
        // before the listener's default maxConnections is derived from it.
        DescriptorLimit.raiseToHardLimit()
        let cfg = try loadConfig(config)
        var listener = cfg.listener
        var admin = cfg.admin
        if let port { listener.port = port }
        if let address { listener.address = address }
        if let adminPort { admin.port = adminPort }

        let fd: Int32?
        switch accessLog {
        case "-": fd = 1
        case "off": fd = nil
        default:
            let opened = open(accessLog, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            guard opened >= 0 else { throw fail("cannot open access log \(accessLog): \(String(cString: strerror(errno)))") }
            fd = opened
        }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        if cpuAffinity == "auto" {
            let cpus = CPUAffinity.pinOneLoopPerCPU(group)
            if !cpus.isEmpty { logger.info("event loops pinned to CPUs \(cpus.map(String.init).joined(separator: ","))") }
        }
        let scheduling = LoopScheduling(rawValue: loopScheduling)!
        if scheduling != .normal && LoopScheduling.isSupported && !scheduling.apply(to: group) {
            logger.warning("the kernel refused --loop-scheduling \(loopScheduling) for some event loops: they stay SCHED_OTHER")
        }
        let nice = loopNice ?? LoopNice.defaultValue
        if nice != 0 && LoopNice.isSupported && !LoopNice.apply(nice, to: group) {
            // The default is a preference, not a requirement: without the privilege, say so quietly.
            let message: Logger.Message = "the kernel refused nice \(nice) for some event loops (lowering it needs CAP_SYS_NICE): they keep the one they started with"
            if loopNice == nil { logger.info(message) } else { logger.warning(message) }
        }
        let runtime = try GatewayRuntime(
            config: cfg, configPath: config, loadConfig: { try ConfigLoader.load(contentsOf: $0) }, group: group,
            accessLogFD: fd, logger: logger)
        let bound: GatewayRuntime.BoundAddresses
        do {
            bound = try await runtime.start(listener: listener, admin: admin)
        } catch {
            try? await group.shutdownGracefully()
            throw fail("cannot listen on \(listener.address):\(listener.port) / admin \(admin.address):\(admin.port): \(error)")
        }
        let service = GatewayService(
            runtime: runtime, drainTimeout: .milliseconds(Int64(drainTimeout * 1000)), logger: logger,
            readyLine: "gateway listening on http://\(bound.listener.hostPort) admin http://\(bound.admin.hostPort) config version \(runtime.snapshot.version)")
        let serviceGroup = ServiceGroup(
            configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await serviceGroup.run()
        try? await group.shutdownGracefully()
    }
}

extension SocketAddress {
    var hostPort: String {
        let ip = ipAddress ?? "?"
        return ip.contains(":") ? "[\(ip)]:\(port ?? 0)" : "\(ip):\(port ?? 0)"
    }
}

/// Reloads on SIGHUP; on graceful shutdown (SIGTERM/SIGINT) drains, then lets the process exit.
struct GatewayService: Service {
    let runtime: GatewayRuntime
    let drainTimeout: TimeAmount
    let logger: Logger
    /// Printed once SIGTERM, SIGINT and SIGHUP are trapped (the service group traps the first two
    /// before it runs its services): a supervisor that signals as soon as it reads this line
    /// gets a drain, never the default action.
    let readyLine: String

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        print(readyLine)
        fflush(nil)
        for await _ in hangups.cancelOnGracefulShutdown() {
            logger.info("SIGHUP: reloading \(runtime.configPath ?? "-")")
            runtime.reload()
        }
        logger.info("draining: no new connections, in-flight requests finish")
        await runtime.drain(timeout: drainTimeout)
        await runtime.closeAdmin()
        logger.info("drained, exiting")
    }
}

struct Validate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a config file; print the effective limits per host and tuning warnings.")

    @Option(help: "Config file to check.") var config = "config/gateway.json"
    @Flag(help: "Explain each cluster's breaker: at which client concurrency requests queue and are shed (503 UO), and the throughput ceiling.")
    var explain = false
    @Option(help: "With --explain: the upstream's latency per request (e.g. 50ms, 0.2s).") var latency = "50ms"
    @Option(help: "With --explain: the event loops `serve --threads` will run (default: this machine's cores, as serve).")
    var threads = System.coreCount
    @Option(help: "With --explain: only this cluster.") var cluster: String?

    func validate() throws {
        if threads < 1 { throw ValidationError("--threads must be >= 1") }
        if BreakerModel.parseLatency(latency) == nil { throw ValidationError("--latency: '\(latency)' is not a duration (use e.g. 50ms or 0.05s)") }
    }

    func run() async throws {
        let cfg = try loadConfig(config)
        if let cluster, cfg.hosts[cluster] == nil {
            throw fail("--cluster: \(config) has no cluster '\(cluster)' (it has: \(cfg.hosts.keys.sorted().joined(separator: ", ")))")
        }
        print(ConfigReport.render(cfg))
        let warnings = ConfigReport.warnings(cfg)
        if warnings.isEmpty {
            print("no warnings")
        } else {
            print("warnings:")
            for w in warnings { print("  - \(w)") }
        }
        if explain {
            print("")
            print(ConfigReport.explain(cfg, latency: BreakerModel.parseLatency(latency)!, eventLoops: threads, only: cluster), terminator: "")
        }
        print("\(config): valid")
    }
}
