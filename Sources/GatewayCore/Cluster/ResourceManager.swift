/// The cluster's circuit-breaker thresholds (Istio connectionPool → Envoy circuit_breakers).
public final class ResourceManager: Sendable {
    public let connections: ResourceLimit
    public let pendingRequests: ResourceLimit
    public let requests: ResourceLimit
    public let retries: ResourceLimit

    public init(_ s: ConnectionPoolSettings) {
        connections = ResourceLimit(max: s.maxConnections)
        pendingRequests = ResourceLimit(max: s.http1MaxPendingRequests)
        requests = ResourceLimit(max: s.http2MaxRequests)
        retries = ResourceLimit(max: s.maxRetries)
    }

    public func update(_ s: ConnectionPoolSettings) {
        connections.setMax(s.maxConnections)
        pendingRequests.setMax(s.http1MaxPendingRequests)
        requests.setMax(s.http2MaxRequests)
        retries.setMax(s.maxRetries)
    }
}
