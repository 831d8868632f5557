import ArgumentParser
import CLISupport
import Foundation
import MaskShop

@main
enum MaskshopMain {
    static func main() async {
        // A service (not `up`, which only supervises processes) runs its tasks on its event loops.
        if let sub = CommandLine.arguments.dropFirst().first, ShopService(rawValue: sub) != nil {
            runTasksOnEventLoops()
        }
        await CommandRunner.main(Maskshop.self)
    }
}

struct Maskshop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "maskshop",
        abstract: "The mask shop: order, delivery, inventory and mypage services, or all of them behind the gateway.",
        subcommands: [Up.self, Order.self, Delivery.self, Inventory.self, Mypage.self])
}

struct ServiceFlags: ParsableArguments {
    @Option(help: "Port (0 picks a free one; the first output line names it).") var port: Int?
    @Option(help: "Address to bind.") var host = "127.0.0.1"
    @Option(name: .customLong("data-dir"), help: "Folder for the service's SQLite file.") var dataDir = "data"
    @Option(help: "Commit durability: full (fsync per group commit, survives power loss) or normal (survives a killed process).")
    var durability = "full"
    @Option(name: .customLong("otlp-endpoint"),
            help: "Export spans with OTLP/HTTP JSON to this collector URL (default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or $OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces; none: no export).")
    var otlpEndpoint: String?

    func validate() throws {
        if let port, !(0...65535).contains(port) { throw ValidationError("--port must be 0...65535") }
        if Durability(rawValue: durability) == nil { throw ValidationError("--durability must be full or normal, got '\(durability)'") }
    }

    func options(_ kind: ShopService) -> ServiceOptions {
        var o = ServiceOptions(port: port ?? kind.defaultPort)
        o.host = host
        o.dataDir = dataDir
        o.durability = Durability(rawValue: durability) ?? .full
        o.otlpEndpoint = otlpEndpoint ?? ShopTracing.otlpEndpoint(environment: ProcessInfo.processInfo.environment)
        return o
    }
}

struct Order: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Order service (default port 8081).")
    @OptionGroup var flags: ServiceFlags
    @Option(name: .customLong("delivery-url"), help: "Where order calls delivery (default: through the gateway).")
    var deliveryURL = "http://127.0.0.1:8080"
    func run() async throws {
        var o = flags.options(.order)
        o.deliveryURL = deliveryURL
        try await runShopService(.order, o)
    }
}

struct Delivery: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delivery service (default port 8082).")
    @OptionGroup var flags: ServiceFlags
    @Option(name: .customLong("order-url"), help: "Order's event feed.") var orderURL = "http://127.0.0.1:8081"
    func run() async throws {
        var o = flags.options(.delivery)
        o.orderFeedURL = orderURL
        try await runShopService(.delivery, o)
    }
}

struct Inventory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Inventory service (default port 8083).")
    @OptionGroup var flags: ServiceFlags
    @Option(name: .customLong("delivery-url"), help: "Delivery's event feed.") var deliveryURL = "http://127.0.0.1:8082"
    func run() async throws {
        var o = flags.options(.inventory)
        o.deliveryFeedURL = deliveryURL
        try await runShopService(.inventory, o)
    }
}

struct Mypage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mypage read side (default port 8084).")
    @OptionGroup var flags: ServiceFlags
    @Option(name: .customLong("order-url"), help: "Order's event feed.") var orderURL = "http://127.0.0.1:8081"
    @Option(name: .customLong("delivery-url"), help: "Delivery's event feed.") var deliveryURL = "http://127.0.0.1:8082"
    func run() async throws {
        var o = flags.options(.mypage)
        o.orderFeedURL = orderURL
        o.deliveryFeedURL = deliveryURL
        try await runShopService(.mypage, o)
    }
}

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the gateway and the four services; Ctrl-C stops them all.")
    @Option(name: .customLong("data-dir"), help: "One SQLite file per service here.") var dataDir = "data"
    @Option(help: "Gateway config; the services listen on the ports its serviceEntries route to.") var config = "config/gateway.json"
    @Option(name: .customLong("access-log"), help: "Gateway access log: '-' (stdout, prefixed), 'off', or a file.") var accessLog = "-"
    @Option(help: "Services' commit durability: full or normal.") var durability = "full"

    func validate() throws {
        if Durability(rawValue: durability) == nil { throw ValidationError("--durability must be full or normal, got '\(durability)'") }
    }

    func run() async throws {
        let supervisor = Supervisor(dataDir: dataDir, config: config, gatewayFlags: ["--access-log", accessLog],
                                    serviceFlags: ["--durability", durability])
        do {
            guard try supervisor.up() else { throw ExitCode(1) }
        } catch let e as SupervisorError {
            FileHandle.standardError.write(Data("maskshop: \(e.description)\n".utf8))
            throw ExitCode(1)
        }
        let code = supervisor.wait()
        if code != 0 { throw ExitCode(code) }
    }
}


