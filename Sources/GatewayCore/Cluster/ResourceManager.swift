import Atomics

/// The cluster's circuit-breaker thresholds (Istio connectionPool → Envoy circuit_breakers).
public final class ResourceManager: Sendable {
    public let connections: ResourceLimit
    public let pendingRequests: ResourceLimit
    public let requests: ResourceLimit
    public let retries: ResourceLimit
    /// Istio `retryBudget` as Envoy's `retry_budget`: percent in millionths (-1: none, then
    /// `retries` keeps its static `maxRetries`), and the floor.
    private let budgetPercentMicros = ManagedAtomic<Int>(-1)
    private let budgetMinConcurrency = ManagedAtomic<Int>(0)

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

    public func setRetryBudget(_ b: RetryBudgetSettings?) {
        budgetMinConcurrency.store(b?.minRetryConcurrency ?? 0, ordering: .relaxed)
        budgetPercentMicros.store(b.map { Int(($0.percent * 1_000_000).rounded()) } ?? -1, ordering: .relaxed)
    }

    /// The retries that may be outstanding now: Envoy's `RetryBudgetImpl::max()` when a budget is
    /// set (percent of active plus pending requests, truncated, at least the floor), else `maxRetries`.
    public var retryLimit: Int {
        let micros = budgetPercentMicros.load(ordering: .relaxed)
        guard micros >= 0 else { return retries.max }
        let budget = RetryBudgetSettings(percent: Double(micros) / 1_000_000,
                                         minRetryConcurrency: budgetMinConcurrency.load(ordering: .relaxed))
        return budget.maxRetries(activeAndPending: requests.current + pendingRequests.current)
    }

    /// Takes one retry unit if `retryLimit` allows it (given back with `retries.dec()`).
    @inline(__always) public func tryAcquireRetry() -> Bool {
        retries.tryAcquire(max: retryLimit)
    }
}
