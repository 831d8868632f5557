import Atomics

/// The cluster's circuit-breaker thresholds (Istio connectionPool → Envoy circuit_breakers).
public final class ResourceManager: Sendable {
    /// Every count and maximum, in raw cells (see `AtomicCells`): a request reads and bumps
    /// several, from every event loop.
    private enum Cell: Int, CaseIterable {
        case connections, maxConnections, pendingRequests, maxPendingRequests, requests, maxRequests
        case retries, maxRetries
        /// Istio `retryBudget` as Envoy's `retry_budget`: percent in millionths (-1: none, then
        /// `retries` keeps its static `maxRetries`), and the floor.
        case budgetPercentMicros, budgetMinConcurrency
    }
    private let cells = AtomicCells(count: Cell.allCases.count)

    @inline(__always) private func limit(_ count: Cell, _ maximum: Cell) -> ResourceLimit {
        ResourceLimit(count: cells[count.rawValue], maximum: cells[maximum.rawValue])
    }
    @inline(__always) public var connections: ResourceLimit { limit(.connections, .maxConnections) }
    @inline(__always) public var pendingRequests: ResourceLimit { limit(.pendingRequests, .maxPendingRequests) }
    @inline(__always) public var requests: ResourceLimit { limit(.requests, .maxRequests) }
    @inline(__always) public var retries: ResourceLimit { limit(.retries, .maxRetries) }
    private var budgetPercentMicros: UnsafeAtomic<Int> { cells[Cell.budgetPercentMicros.rawValue] }
    private var budgetMinConcurrency: UnsafeAtomic<Int> { cells[Cell.budgetMinConcurrency.rawValue] }

    public init(_ s: ConnectionPoolSettings) {
        budgetPercentMicros.store(-1, ordering: .relaxed)
        update(s)
    }

    deinit { cells.deallocate() }

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
