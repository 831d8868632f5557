import Foundation

/// `maskshop up`: the gateway and the four services as child processes, their output prefixed
/// with their names, all stopped together on SIGINT/SIGTERM.
public final class Supervisor: @unchecked Sendable {
    struct Child {
        let name: String
        let process: Process
    }

    let dataDir: String
    let config: String
    private var children: [Child] = []
    private let lock = NSLock()
    private let output = NSLock()

    /// Extra flags: the gateway's (`--access-log ...`) and every service's (`--durability ...`).
    let gatewayFlags: [String]
    let serviceFlags: [String]

    public init(dataDir: String, config: String, gatewayFlags: [String] = [], serviceFlags: [String] = []) {
        self.dataDir = dataDir
        self.config = config
        self.gatewayFlags = gatewayFlags
        self.serviceFlags = serviceFlags
    }

    /// The executables built next to this one.
    static func sibling(_ name: String) -> URL {
        let me = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0])
        return me.deletingLastPathComponent().appendingPathComponent(name)
    }

    func start(_ name: String, _ executable: URL, _ arguments: [String]) throws {
        let p = Process()
        p.executableURL = executable
        p.arguments = arguments
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        let prefix = name.padding(toLength: 9, withPad: " ", startingAt: 0) + "| "
        let output = self.output
        // One reader thread per child: lines are prefixed whole, never interleaved mid-line.
        Thread {
            let handle = pipe.fileHandleForReading
            var pending = Data()
            while true {
                let data = handle.availableData
                if data.isEmpty { break }
                pending.append(data)
                var lines: [Data] = []
                while let nl = pending.firstIndex(of: 10) {
                    lines.append(pending[pending.startIndex..<nl])
                    pending = pending[(nl + 1)...]
                }
                output.lock()
                for line in lines { FileHandle.standardOutput.write(Data(prefix.utf8) + line + Data([10])) }
                output.unlock()
            }
        }.start()
        try p.run()
        lock.lock()
        children.append(Child(name: name, process: p))
        lock.unlock()
    }

    /// Where everything listens, read from the gateway config so the services come up exactly
    /// where the gateway routes to them: the listener and admin ports, and each service's port
    /// from the `serviceEntries` endpoint of its host (SPEC defaults where the file is silent).
    struct Layout {
        var listener = 8080
        var admin = 9901
        var services: [ShopService: Int] = Dictionary(uniqueKeysWithValues: ShopService.allCases.map { ($0, $0.defaultPort) })

        init() {}

        init(config path: String) throws {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw SupervisorError("cannot read gateway config \(path)")
            }
            guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw SupervisorError("gateway config \(path) is not a JSON object")
            }
            if let p = ((root["listener"] as? [String: Any])?["port"] as? NSNumber)?.intValue { listener = p }
            if let p = ((root["admin"] as? [String: Any])?["port"] as? NSNumber)?.intValue { admin = p }
            for entry in root["serviceEntries"] as? [[String: Any]] ?? [] {
                let spec = entry["spec"] as? [String: Any] ?? entry
                let hosts = (spec["host"] as? String).map { [$0] } ?? (spec["hosts"] as? [String] ?? [])
                let port = ((spec["endpoints"] as? [[String: Any]])?.first?["port"] as? NSNumber)?.intValue
                for host in hosts {
                    if let kind = ShopService(rawValue: host.split(separator: ".").first.map(String.init) ?? host), let port {
                        services[kind] = port
                    }
                }
            }
        }

        func url(_ port: Int) -> String { "http://127.0.0.1:\(port)" }

        func arguments(_ s: ShopService) -> [String] {
            var a = [s.rawValue, "--port", String(services[s]!)]
            switch s {
            case .order: a += ["--delivery-url", url(listener)]
            case .delivery: a += ["--order-url", url(services[.order]!)]
            case .inventory: a += ["--delivery-url", url(services[.delivery]!)]
            case .mypage: a += ["--order-url", url(services[.order]!), "--delivery-url", url(services[.delivery]!)]
            }
            return a
        }
    }

    /// Starts everything, waits until each answers its health check; returns false (after
    /// stopping what started) when one does not.
    public func up() throws -> Bool {
        // Trapped before any child starts: a SIGTERM while the shop is coming up (its first
        // services may already answer) must stop every child, not kill this process alone.
        Self.trapStopSignals()
        let gateway = Self.sibling("gateway")
        guard FileManager.default.isExecutableFile(atPath: gateway.path) else {
            throw SupervisorError("gateway executable not found at \(gateway.path): build it (swift build --product gateway)")
        }
        let layout = try Layout(config: config)
        for port in [layout.listener, layout.admin] + ShopService.allCases.map({ layout.services[$0]! }) where portInUse(port) {
            throw SupervisorError("port \(port) is already in use (another maskshop up or gateway?)")
        }
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let me = Self.sibling("maskshop")
        try start("gateway", gateway, ["--config", config] + gatewayFlags)
        for s in ShopService.allCases {
            try start(s.rawValue, me, layout.arguments(s) + ["--data-dir", dataDir] + serviceFlags)
        }
        let checks: [(String, Int, String)] = [("gateway", layout.admin, "/ready")]
            + ShopService.allCases.map { ($0.rawValue, layout.services[$0]!, "/health") }
        for (name, port, path) in checks {
            guard waitHealthy(port: port, path: path, timeout: 30) else {
                FileHandle.standardError.write(Data("maskshop up: \(name) did not become healthy on port \(port)\n".utf8))
                stop()
                return false
            }
        }
        print("maskshop up: all healthy; shop on http://127.0.0.1:\(layout.listener), gateway admin on http://127.0.0.1:\(layout.admin) (Ctrl-C stops)")
        fflush(nil)
        return true
    }

    func waitHealthy(port: Int, path: String, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if anyExited() { return false }
            if let status = simpleGet(port: port, path: path), status == 200 { return true }
            usleep(100_000)
        }
        return false
    }

    func anyExited() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return children.contains { !$0.process.isRunning }
    }

    /// SIGINT and SIGTERM set `stopSignal` from now on (a signal that came earlier stays seen).
    static func trapStopSignals() {
        signal(SIGINT) { _ in stopSignal = 1 }
        signal(SIGTERM) { _ in stopSignal = 1 }
    }

    /// Blocks until SIGINT/SIGTERM arrives or a child dies, then stops everything.
    ///
    /// A plain signal handler that only sets a flag (async-signal-safe), polled here: libdispatch
    /// signal sources did not fire when `up` ran as a background job of a script.
    public func wait() -> Int32 {
        Self.trapStopSignals()
        var code: Int32 = 0
        while stopSignal == 0 {
            if anyExited() {
                FileHandle.standardError.write(Data("maskshop up: a child process exited; stopping the others\n".utf8))
                code = 1
                break
            }
            usleep(100_000)
        }
        stop()
        return code
    }

    /// SIGTERM to every child (the gateway drains), SIGKILL to any still running after 10 s.
    public func stop() {
        lock.lock()
        let all = children
        lock.unlock()
        for c in all where c.process.isRunning { kill(c.process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(10)
        for c in all {
            while c.process.isRunning && Date() < deadline { usleep(50_000) }
            if c.process.isRunning {
                kill(c.process.processIdentifier, SIGKILL)
                c.process.waitUntilExit()
            }
        }
    }
}

/// Set by the SIGINT/SIGTERM handler; read by `Supervisor.wait()`.
nonisolated(unsafe) var stopSignal: sig_atomic_t = 0

public struct SupervisorError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

/// Whether something accepts connections on 127.0.0.1:`port`.
func portInUse(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}

/// A health probe without any HTTP machinery: one GET over a blocking socket.
func simpleGet(port: Int, path: String) -> Int? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var tv = timeval(tv_sec: 1, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let ok = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard ok == 0 else { return nil }
    let req = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    _ = req.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var buf = [UInt8](repeating: 0, count: 64)
    let n = recv(fd, &buf, buf.count, 0)
    guard n > 12 else { return nil }
    return Int(String(decoding: buf[9..<12], as: UTF8.self))
}
