#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TraceWire

/// The running gateway: compiles configs into snapshots, owns the per-loop workers, the
/// listener and the admin server, and does reload and drain.
/// A refused reload: the message names the JSON path and the reason.
public struct ReloadError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public final class GatewayRuntime: Sendable {
    public let configPath: String?
    /// Reads and checks the config file (the CLI passes `ConfigLoader.load`).
    let loadConfig: @Sendable (String) throws -> GatewayConfig
    let group: EventLoopGroup
    let workers: [Worker]
    public let listenerStats: ListenerStats
    /// The histograms' values since the last stats flush (`/stats` interval quantiles).
    let histogramIntervals = HistogramIntervals()
    /// Writes the access log off the event loops (nil: logging off).
    let accessLogWriter: AccessLogWriter?
    let logger: Logger

    struct State {
        var snapshot: ConfigSnapshot
        var clusters: [String: Cluster] = [:]
        var routeStats: [String: RouteStats] = [:]
        var rateLimiters: [String: LocalRateLimiter] = [:]
        var lastReloadError: String? = nil
        var reloadSuccess = 0
        var reloadFailure = 0
        var draining = false
        var serverChannels: [Channel] = []
        var adminChannel: Channel? = nil
        /// The last good addresses of each endpoint name of a DNS ServiceEntry (`ServiceDiscovery.swift`).
        var resolved: [String: [String]] = [:]
        /// Resolves those names, off the event loops.
        var resolver: EndpointResolver = SystemResolver()
        var resolving = false
        /// A round was asked for while one ran (a reload bringing new names): it runs after it.
        var resolveAgain = false
        /// Rows of every histogram: one per event loop (`HistogramRows.forLoops`).
        var histogramRows = HistogramRows.any
        /// Where sampled spans go (`tracing.otlpEndpoint`); kept across reloads that leave it as it is.
        var exporter: OTLPExporter? = nil
    }
    /// Internal so the service discovery extension can recompile under the same lock as reload.
    let state: NIOLockedValueBox<State>

    /// `accessLogFD`: where access log lines go (nil: off).
    public convenience init(
        config: GatewayConfig, configPath: String?, loadConfig: @escaping @Sendable (String) throws -> GatewayConfig,
        group: EventLoopGroup, accessLogFD: Int32?, logger: Logger
    ) throws {
        try self.init(config: config, configPath: configPath, loadConfig: loadConfig, group: group, accessLogFD: accessLogFD,
                      logger: logger, resolver: SystemResolver())
    }

    /// `resolver`: how endpoint names are resolved (tests substitute their own).
    init(
        config: GatewayConfig, configPath: String?, loadConfig: @escaping @Sendable (String) throws -> GatewayConfig,
        group: EventLoopGroup, accessLogFD: Int32?, logger: Logger, resolver: EndpointResolver
    ) throws {
        self.configPath = configPath
        self.loadConfig = loadConfig
        self.group = group
        self.logger = logger
        var st = State(snapshot: ConfigSnapshot(version: 0, config: config, routes: RouteTable(routes: []), clusters: [:]))
        st.resolver = resolver
        var loops = 0
        for _ in group.makeIterator() { loops += 1 }
        st.histogramRows = HistogramRows.forLoops(loops)
        listenerStats = ListenerStats(histogramRows: st.histogramRows)
        let compiled = try Self.compile(config, version: 1, loops: loops, into: &st)
        st.snapshot = compiled.shared
        state = NIOLockedValueBox(st)
        let writer = accessLogFD.map { AccessLogWriter(fd: $0) }
        accessLogWriter = writer
        var workers: [Worker] = []
        for loop in group.makeIterator() {
            workers.append(Worker(index: workers.count, eventLoop: loop, snapshot: compiled.perLoop[workers.count],
                                  listenerStats: listenerStats, accessLogWriter: writer))
        }
        self.workers = workers
    }

    public var snapshot: ConfigSnapshot { state.withLockedValue { $0.snapshot } }
    public var clusters: [Cluster] { state.withLockedValue { Array($0.clusters.values) }.sorted { $0.name < $1.name } }
    public var routeStats: [RouteStats] { state.withLockedValue { Array($0.routeStats.values) }.sorted { $0.name < $1.name } }
    public var lastReloadError: String? { state.withLockedValue { $0.lastReloadError } }
    public var reloadCounts: (success: Int, failure: Int) { state.withLockedValue { ($0.reloadSuccess, $0.reloadFailure) } }
    public var isDraining: Bool { state.withLockedValue { $0.draining } }

    /// A compiled config: the snapshot the admin reads, and one copy of it per event loop.
    struct Compiled {
        let shared: ConfigSnapshot
        /// One per worker, in `workers` order. Their routes and cluster snapshots are the loop's
        /// own objects over the same shared state (clusters, hosts, stats, rate limiters): a
        /// request retains and releases its route and cluster a dozen times, and on objects both
        /// loops used those writes pulled one cache line back and forth between the cores.
        let perLoop: [ConfigSnapshot]
    }

    /// Builds a config's snapshots, reusing the clusters (counters, ejections, pools) and route
    /// stats that stay.
    static func compile(_ config: GatewayConfig, version: Int, loops: Int, into st: inout State) throws -> Compiled {
        var sharedClusters: [(name: String, cluster: Cluster, hosts: [Host], host: HostConfig)] = []
        var keptClusters: [String: Cluster] = [:]
        for (name, host) in config.hosts {
            let cluster = st.clusters[name] ?? Cluster(config: host, histogramRows: st.histogramRows)
            cluster.resources.update(host.trafficPolicy.connectionPool)
            cluster.resources.setRetryBudget(host.trafficPolicy.retryBudget)
            let hosts = cluster.hosts(for: Self.resolvedEndpoints(host, st.resolved))
            cluster.outlier.update(settings: host.trafficPolicy.outlierDetection, hosts: hosts)
            sharedClusters.append((name, cluster, hosts, host))
            keptClusters[name] = cluster
        }
        var sharedRoutes: [(config: RouteConfig, stats: RouteStats, limiter: LocalRateLimiter?)] = []
        var keptStats: [String: RouteStats] = [:]
        var keptLimiters: [String: LocalRateLimiter] = [:]
        for rc in config.routes {
            let stats = st.routeStats[rc.name] ?? keptStats[rc.name] ?? RouteStats(name: rc.name, histogramRows: st.histogramRows)
            keptStats[rc.name] = stats
            var limiter: LocalRateLimiter? = nil
            if let rl = rc.localRateLimit {
                // An unchanged bucket keeps its tokens across a reload.
                if let old = st.rateLimiters[rc.name], old.config == rl {
                    limiter = old
                } else {
                    limiter = LocalRateLimiter(config: rl, evictions: stats.rateLimitClientsEvicted)
                }
                keptLimiters[rc.name] = limiter
            }
            sharedRoutes.append((rc, stats, limiter))
        }
        // The route and cluster objects of one snapshot, made once for the admin and once per
        // loop from the same shared parts.
        // (Hash tables are immutable and may be large: the first view builds them, the others share them.)
        var balancers: [String: HashBalancer] = [:]
        func views() throws -> (routes: RouteTable, clusters: [String: ClusterSnapshot]) {
            var clusters: [String: ClusterSnapshot] = [:]
            for c in sharedClusters {
                let snapshot = ClusterSnapshot(cluster: c.cluster, hosts: c.hosts, policy: c.host.trafficPolicy,
                                               serviceHost: c.host.service, hashBalancer: balancers[c.name])
                balancers[c.name] = snapshot.hashBalancer
                clusters[c.name] = snapshot
            }
            let routes = try sharedRoutes.map { try Route(config: $0.config, clusters: clusters, stats: $0.stats, rateLimiter: $0.limiter) }
            return (RouteTable(routes: routes), clusters)
        }
        // Before anything is kept: a route that does not compile refuses the config here.
        let first = try views()
        // Clusters that left the config keep their stats visible until the next reload.
        st.clusters = keptClusters
        st.routeStats = keptStats
        st.rateLimiters = keptLimiters
        // Last, so a config refused above leaves the exporter in force as it was.
        let tracing = config.tracing
        if let old = st.exporter, old.endpoint != tracing.otlpEndpoint || old.serviceName != tracing.serviceName {
            old.shutdown(wait: 0)  // sends what it holds and ends; the new config's spans go to the new one
            st.exporter = nil
        }
        if st.exporter == nil, let endpoint = tracing.otlpEndpoint {
            st.exporter = OTLPExporter(endpoint: endpoint, serviceName: tracing.serviceName, scope: "maskshop-gateway")
        }
        let tracingSettings = TracingSettings(sampling: tracing.sampling, exporter: st.exporter)
        func snapshot(_ v: (routes: RouteTable, clusters: [String: ClusterSnapshot])) -> ConfigSnapshot {
            ConfigSnapshot(version: version, config: config, routes: v.routes, clusters: v.clusters, tracing: tracingSettings)
        }
        // The first compiled, so the copies compile too.
        return Compiled(shared: snapshot(first), perLoop: try (0..<loops).map { _ in snapshot(try views()) })
    }

    // MARK: listening

    static let reusePort = NIOBSDSocket.Option(rawValue: SO_REUSEPORT)
    #if os(Linux)
    /// Linux's; the listener's `deferAccept` does nothing elsewhere.
    static let deferAccept = ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: TCP_DEFER_ACCEPT))
    #endif

    public struct BoundAddresses: Sendable {
        public var listener: SocketAddress
        public var admin: SocketAddress
    }

    public func start(listener: BindAddress, admin: BindAddress) async throws -> BoundAddresses {
        // DNS clusters get their first hosts before the listener takes a request (Envoy's cluster warming).
        try? await refreshDNS().get()
        scheduleDNSRefresh()
        // One listening socket per event loop on the same port (SO_REUSEPORT, as Envoy binds its
        // workers' listeners on Linux): the kernel spreads new connections over the loops, and
        // each is accepted on the loop that serves it, with no hand-over between threads. The
        // first bind picks the port when the config asks for 0; the others take the same one.
        var servers: [Channel] = []
        var port = listener.port
        // A Gateway HTTP server on the listener's own port can make it redirect to https;
        // decided here, so the plaintext listener's pipeline is otherwise the one handler.
        let gatewayListeners = snapshot.config.gatewayListeners
        let mainRedirects = gatewayListeners.contains { $0.port == listener.port && $0.kind == .plaintext(httpsRedirect: true) }
        let deferAccept = snapshot.config.downstream.deferAccept
        for worker in workers {
            let server = try await Self.bind(listener.address, port, on: worker, deferAccept: deferAccept) { channel in
                if mainRedirects {
                    try channel.pipeline.syncOperations.addHandler(HTTPSRedirectHandler(worker: worker))
                } else if worker.snapshot.config.downstream.http2 != nil {
                    // HTTP/2 with prior knowledge beside HTTP/1.1: the first bytes decide.
                    try channel.pipeline.syncOperations.addHandler(HTTP2PrefaceSniffer(worker: worker))
                } else {
                    try channel.pipeline.syncOperations.addHandler(DownstreamHandler(worker: worker))
                }
            }
            if port == 0, let bound = server.localAddress?.port { port = bound }
            servers.append(server)
        }
        if let clash = gatewayListeners.first(where: { $0.port == port && $0.scheme == "https" }) {
            for s in servers { try? await s.close() }
            throw ReloadError("\(clash.path): port \(port) is the plaintext listener's; give HTTPS another port")
        }
        for g in gatewayListeners where g.port != port {
            for worker in workers {
                servers.append(try await Self.bind(g.address, g.port, on: worker, deferAccept: deferAccept) { channel in
                    try GatewayListenerPipeline.initialize(channel, port: g.port, worker: worker)
                })
            }
            logger.info("gateway listening on \(g.scheme)://\(g.address):\(g.port) (\(g.path))")
        }
        let adminChannel = try await AdminServer.bind(runtime: self, address: admin)
        state.withLockedValue {
            $0.serverChannels = servers
            $0.adminChannel = adminChannel
        }
        for worker in workers {
            worker.eventLoop.scheduleRepeatedTask(initialDelay: Worker.tickInterval, delay: Worker.tickInterval) { _ in
                worker.tick()
            }
        }
        startOutlierSweeps()
        startStatsFlushes()
        return BoundAddresses(listener: servers[0].localAddress!, admin: adminChannel.localAddress!)
    }

    /// Envoy's stats flush, for the histograms' interval values: every `flushInterval`, on a
    /// thread of the pool rather than an event loop that carries traffic.
    private func startStatsFlushes() {
        let loop = group.next()
        loop.scheduleRepeatedTask(initialDelay: HistogramIntervals.flushInterval, delay: HistogramIntervals.flushInterval) {
            [self] _ in
            _ = NIOThreadPool.singleton.runIfActive(eventLoop: loop) { AdminView(runtime: self).flushHistogramIntervals() }
        }
    }

    /// One listening socket of `worker`'s loop on `port` (SO_REUSEPORT: every loop binds it).
    private static func bind(_ address: String, _ port: Int, on worker: Worker, deferAccept: Bool,
                             _ initialize: @escaping @Sendable (Channel) throws -> Void) async throws -> Channel {
        var bootstrap = ServerBootstrap(group: worker.eventLoop)
        #if os(Linux)
        // The value is seconds to wait for data (the kernel rounds it to SYN-ACK retransmits).
        bootstrap = bootstrap.serverChannelOption(Self.deferAccept, value: deferAccept ? 1 : 0)
        #endif
        return try await bootstrap
            // A burst of connects (thousands of clients at once, an attack or a restart) waits in
            // the kernel's queue rather than losing SYNs, which clients retry only after a second;
            // the kernel caps it at net.core.somaxconn. Accepting up to 64 per wakeup drains it fast.
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.maxMessagesPerRead, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.socketOption(Self.reusePort), value: 1)
            // No child channel options: the bootstrap applies those through a chain of futures
            // per accepted connection. TCP_NODELAY, which it sets on the listening socket, is
            // inherited by every accepted one (Linux copies it at accept); the read budget is a
            // field of the channel, set in place below.
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.syncOptions?.setOption(.maxMessagesPerRead, value: 16)
                    assert(Self.noDelay(channel), "accepted sockets inherit the listener's TCP_NODELAY")
                    try initialize(channel)
                }
            }
            .bind(host: address, port: port).get()
    }

    /// Whether Nagle's algorithm is off on `channel`'s socket (one system call; debug checks only).
    private static func noDelay(_ channel: Channel) -> Bool {
        ((try? channel.syncOptions?.getOption(.tcpOption(.tcp_nodelay))) ?? 0) != 0
    }

    /// Every cluster with outlier detection is swept once per its `interval`.
    private func startOutlierSweeps() {
        let lastSweep = NIOLockedValueBox<[ObjectIdentifier: NIODeadline]>([:])
        group.next().scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { [self] _ in
            let now = NIODeadline.now()
            for (_, c) in snapshot.clusters {
                guard let od = c.policy.outlierDetection else { continue }
                let id = ObjectIdentifier(c.cluster)
                let due = lastSweep.withLockedValue { last -> Bool in
                    if let t = last[id], now < t + od.interval { return false }
                    last[id] = now
                    return true
                }
                if due { c.cluster.outlier.sweep(now: now) }
            }
        }
    }

    // MARK: reload

    /// Re-reads the config file; an invalid one is refused and the old config keeps serving.
    @discardableResult
    public func reload() -> Result<Int, ReloadError> {
        guard let configPath else { return .failure(ReloadError("no config file to reload")) }
        let config: GatewayConfig
        do {
            config = try loadConfig(configPath)
        } catch {
            return refuse(ReloadError("\(error)"))
        }
        return apply(config)
    }

    private func refuse(_ error: ReloadError) -> Result<Int, ReloadError> {
        state.withLockedValue {
            $0.lastReloadError = error.description
            $0.reloadFailure += 1
        }
        logger.error("config reload refused, old config keeps serving: \(error.description)")
        return .failure(error)
    }

    /// Swaps in `config` atomically for new requests; requests in flight finish on the old one.
    public func apply(_ config: GatewayConfig) -> Result<Int, ReloadError> {
        let old = snapshot.config
        let result: Result<Compiled, ReloadError> = state.withLockedValue { st in
            do {
                let next = try Self.compile(config, version: st.snapshot.version + 1, loops: workers.count, into: &st)
                st.snapshot = next.shared
                st.lastReloadError = nil
                st.reloadSuccess += 1
                return .success(next)
            } catch {
                return .failure(ReloadError("\(error)"))
            }
        }
        switch result {
        case .failure(let e):
            return refuse(e)
        case .success(let compiled):
            install(compiled)
            let next = compiled.shared
            // Names the new config brings are resolved now rather than at the next refresh.
            if needsResolution(next.config) { _ = refreshDNS() }
            if next.config.listener != old.listener {
                logger.warning("listener address changes take effect on restart")
            }
            if next.config.downstream.deferAccept != old.downstream.deferAccept {
                logger.warning("listener deferAccept changes take effect on restart")
            }
            if next.config.gatewayListeners.map(\.port) != old.gatewayListeners.map(\.port) {
                logger.warning("gateway server ports opened or closed take effect on restart; certificates of kept ports apply to new connections now")
            }
            logger.info("config version \(next.version) in force")
            return .success(next.version)
        }
    }

    /// Hands every worker its copy of a new config, on its own loop.
    func install(_ compiled: Compiled) {
        for (worker, snapshot) in zip(workers, compiled.perLoop) {
            worker.eventLoop.execute { worker.install(snapshot) }
        }
    }

    // MARK: drain

    /// Stops accepting, lets in-flight requests finish (closing each connection after its
    /// response), and returns when no client connection is left or `timeout` passed.
    public func drain(timeout: TimeAmount) async {
        let servers = state.withLockedValue { st -> [Channel] in
            st.draining = true
            return st.serverChannels
        }
        for server in servers { try? await server.close() }
        for worker in workers {
            worker.eventLoop.execute { worker.startDraining() }
        }
        let deadline = NIODeadline.now() + timeout
        while listenerStats[.connectionsActive] > 0 && NIODeadline.now() < deadline {
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        await flushLogs()
    }

    /// Hands every loop's buffered lines to the writer and spans to the exporter, then waits until
    /// they are written and sent, at most `timeout` each: a stalled stdout or collector cannot
    /// hold up an exit for longer. The exporter ends here: this is for the exit.
    public func flushLogs(timeout: TimeAmount = .seconds(2)) async {
        for worker in workers {
            try? await worker.eventLoop.submit { worker.accessLog.flush() }.get()
        }
        for worker in workers {
            try? await worker.eventLoop.submit { worker.flushSpans() }.get()
        }
        state.withLockedValue { $0.exporter }?.shutdown(wait: Double(timeout.nanoseconds) / 1e9)
        guard let accessLogWriter else { return }
        let deadline = NIODeadline.now() + timeout
        while accessLogWriter.pendingBytes > 0 && NIODeadline.now() < deadline {
            try? await Task.sleep(nanoseconds: 5_000_000)
        }
    }

    /// Access log lines dropped because the writer's queue was full (stdout slower than traffic).
    public var accessLogDropped: Int { accessLogWriter?.droppedLines ?? 0 }

    /// The span exporter's counts (Envoy's `tracing.opentelemetry.*` names), when one is configured.
    public var spanExportStats: [(String, Int)] {
        guard let e = state.withLockedValue({ $0.exporter }) else { return [] }
        return [("tracing.opentelemetry.spans_sent", e.exportedSpans), ("tracing.opentelemetry.spans_dropped", e.droppedSpans),
                ("tracing.opentelemetry.http_reports_failed", e.failedExports)]
    }

    deinit {
        accessLogWriter?.stop()
        state.withLockedValue { $0.exporter }?.shutdown(wait: 0)
    }

    public func closeAdmin() async {
        let admin = state.withLockedValue { $0.adminChannel }
        try? await admin?.close()
    }
}
