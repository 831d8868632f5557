import Foundation
import GRDB
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The four services of the shop and their default ports (SPEC §1).
public enum ShopService: String, CaseIterable, Sendable {
    case order, delivery, inventory, mypage

    public var defaultPort: Int {
        switch self {
        case .order: 8081
        case .delivery: 8082
        case .inventory: 8083
        case .mypage: 8084
        }
    }
}

public struct ServiceOptions: Sendable {
    public var host = "127.0.0.1"
    public var port: Int
    public var dataDir = "data"
    /// `PRAGMA synchronous`: FULL (fsync per group commit) unless asked otherwise.
    public var durability = Durability.full
    /// order → delivery (through the gateway by default, so delivery's DestinationRule applies).
    public var deliveryURL = "http://127.0.0.1:8080"
    /// Event feeds, read from the producers directly.
    public var orderFeedURL = "http://127.0.0.1:8081"
    public var deliveryFeedURL = "http://127.0.0.1:8082"
    /// Order's reconciliation: seconds between passes, and how old a pending row must be before
    /// a pass after the first treats it as left behind by a crash.
    public var reconcileInterval: Double = 5
    public var orphanAge: Double = 60
    /// OTLP/HTTP JSON collector for spans (`http://host:4318/v1/traces`); nil exports none.
    public var otlpEndpoint: String? = nil

    public init(port: Int) { self.port = port }
}

/// Makes the services' event loops (NIO's singleton group, which Hummingbird serves on) Swift
/// concurrency's global executor, so a request's handler, its awaits and its answer stay on the
/// loop that read it instead of hopping to the cooperative pool and back. Blocking work (SQLite
/// commits) runs on dispatch queues, never on these threads. Call once, first thing in `main`.
@discardableResult
public func runTasksOnEventLoops() -> Bool {
    NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
}

/// Runs one service until SIGTERM/SIGINT: its database, its routes, its event consumers.
public func runShopService(_ kind: ShopService, _ options: ServiceOptions) async throws {
    try ShopTracing.bootstrap(service: kind.rawValue, otlpEndpoint: options.otlpEndpoint)
    try await makeShopApplication(kind, options).runService()
}

/// One service as a Hummingbird application: its database, its routes and (unless
/// `consumers` is false, as in handler tests) its event consumers and reconciler.
public func makeShopApplication(_ kind: ShopService, _ options: ServiceOptions, consumers: Bool = true) throws
    -> Application<RouterResponder<BasicRequestContext>>
{
    // Every line written while a request runs carries its trace id (`ShopTracing.loggingMetadata`).
    var logger = Logger(label: kind.rawValue, metadataProvider: ShopTracing.loggingMetadata)
    logger.logLevel = .info
    try FileManager.default.createDirectory(atPath: options.dataDir, withIntermediateDirectories: true)
    let store = try Store(path: "\(options.dataDir)/\(kind.rawValue).sqlite", durability: options.durability) { m in
        switch kind {
        case .order: OrderService.migrations(&m)
        case .delivery: DeliveryService.migrations(&m)
        case .inventory: InventoryService.migrations(&m)
        case .mypage: MypageService.migrations(&m)
        }
    }
    let router = Router()
    // The shop's routes in groups, so the middleware leaves the router's own answer to an
    // unknown path (Hummingbird's empty 404) as it is. The service routes are traced (tracing
    // first: it continues the caller's W3C trace context for everything inside, the request's
    // log line included); health checks, event feed polls and stats are plumbing, not traces.
    let plumbing = router.group().add(middleware: UnexpectedErrorMiddleware())
    let routes = router.group()
        .add(middleware: TracingMiddleware())
        .add(middleware: RequestLogMiddleware())
        .add(middleware: UnexpectedErrorMiddleware())
    plumbing.get("/health") { _, _ in JSON.response(.ok, ["status": "UP", "service": kind.rawValue]) }
    plumbing.get("/events") { request, _ in
        let after = try request.intQuery("after") ?? 0
        let limit = min(max(try request.intQuery("limit") ?? 100, 1), 1000)
        let wait = Double(try request.intQuery("wait") ?? 0)
        return JSON.response(.ok, try await store.events(after: after, limit: limit, wait: wait))
    }
    var consumerList: [EventConsumer] = []
    var services: [any Service] = []
    switch kind {
    case .order:
        let placing = OrderService.Placing()
        OrderService.register(routes, store: store, deliveryURL: options.deliveryURL, logger: logger, placing: placing)
        services.append(OrderService.Reconciler(store: store, deliveryURL: options.deliveryURL, logger: logger, placing: placing,
                                                interval: options.reconcileInterval, orphanAge: options.orphanAge))
    case .delivery:
        DeliveryService.register(routes, store: store)
        consumerList.append(EventConsumer(feed: "order", producerURL: options.orderFeedURL, store: store, logger: logger,
                                          apply: DeliveryService.applyOrderEvent))
    case .inventory:
        InventoryService.register(routes, store: store)
        consumerList.append(EventConsumer(feed: "delivery", producerURL: options.deliveryFeedURL, store: store, logger: logger,
                                          apply: InventoryService.applyDeliveryEvent))
    case .mypage:
        MypageService.register(routes, store: store)
        consumerList.append(EventConsumer(feed: "order", producerURL: options.orderFeedURL, store: store, logger: logger,
                                          apply: MypageService.applyOrderEvent))
        consumerList.append(EventConsumer(feed: "delivery", producerURL: options.deliveryFeedURL, store: store, logger: logger,
                                          apply: MypageService.applyDeliveryEvent))
    }
    services += consumerList as [any Service]
    // Event lag per feed (occurredAt at the producer → committed here), for benchmarks.
    let lags = consumerList.map { ($0.feed, $0.lag) }
    plumbing.get("/stats/lag") { _, _ in
        JSON.response(.ok, Dictionary(uniqueKeysWithValues: lags.map { ($0.0, $0.1.summary()) }))
    }
    plumbing.delete("/stats/lag") { _, _ in
        for (_, l) in lags { l.reset() }
        return JSON.response(.ok, [String: Any]())
    }
    let name = kind.rawValue
    return Application(
        router: router,
        configuration: .init(address: .hostname(options.host, port: options.port), serverName: name),
        services: consumers ? services : [],
        onServerRunning: { channel in
            print("\(name) listening on http://\(options.host):\(channel.localAddress?.port ?? options.port)")
            fflush(nil)
        },
        logger: logger)
}
