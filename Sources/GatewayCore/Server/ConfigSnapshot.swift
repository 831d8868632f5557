import NIOCore

/// One config version, compiled: the route table and the clusters it routes to. Immutable;
/// reload builds a new one and hands it to every event loop.
public final class ConfigSnapshot: Sendable {
    public let version: Int
    public let config: GatewayConfig
    let routes: RouteTable
    public let clusters: [String: ClusterSnapshot]
    let tracing: TracingSettings
    /// `downstream.effectiveMaxConnections`, resolved once: when the config leaves it out it
    /// depends on the descriptor limit, a system call a connection's admission must not make.
    let maxDownstreamConnections: Int

    init(version: Int, config: GatewayConfig, routes: RouteTable, clusters: [String: ClusterSnapshot],
         tracing: TracingSettings = .off) {
        self.tracing = tracing
        self.version = version
        self.config = config
        self.routes = routes
        self.clusters = clusters
        maxDownstreamConnections = config.downstream.effectiveMaxConnections
    }
}
