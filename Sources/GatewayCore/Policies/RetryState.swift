import NIOCore

/// Envoy's `RetryStatus`: what `RetryState.shouldRetry` decided.
public enum RetryStatus: Equatable, Sendable {
    /// `retryOn` does not cover the result (or the result is never retried).
    case no
    /// Retriable, but the cluster's `maxRetries` budget is taken (`upstream_rq_retry_overflow`).
    case noOverflow
    /// Retriable, but the route's attempts are used up, or the body is too large to send
    /// again (`upstream_rq_retry_limit_exceeded`, flag `URX`).
    case noRetryLimitExceeded
    /// A retry is scheduled after the backoff (`upstream_rq_retry`).
    case yes
}

/// What a scheduled retry calls when its backoff is over (Envoy's `DoRetryCallback`). An object
/// rather than a closure, so deciding *not* to retry (every successful response) allocates nothing.
public protocol RetryTarget: AnyObject {
    func retryNow()
}

/// Envoy's retry state for one request (`RetryStateImpl`): which results retry (`retryOn`), how
/// many tries are left, the cluster's retry budget (`maxRetries`), the jittered exponential
/// backoff timer and the retry stats. The router filter asks it after every failed try and
/// acts on the status; it knows no sockets.
public struct RetryState {
    public let policy: RetryPolicyConfig
    public private(set) var retriesDone = 0
    /// Envoy's default base interval (Istio `retries.backoff` sets it); the cap is ten times it.
    public static let baseInterval = TimeAmount.milliseconds(25)
    public static let maxInterval = TimeAmount.milliseconds(250)

    /// The cluster's resources and the counters retries bump (nil in pure policy use): the limit
    /// is their `retryLimit` (the DestinationRule's retry budget, or `maxRetries`) and the count
    /// their `retries`.
    ///
    /// Not reference-counted: both belong to a cluster snapshot that whoever holds this state
    /// keeps alive (the router filter's `cluster`), and both are shared by every event loop, so
    /// counting them would write two cache lines the cores pass back and forth on every request,
    /// although a request that is not retried never reads them.
    private unowned(unsafe) let resources: ResourceManager?
    private unowned(unsafe) let stats: ClusterStats?
    private let row: Int
    /// One retry unit is held from a retry's scheduling until the next decision or the end
    /// of the request, so `maxRetries` bounds retries outstanding at once, as Envoy's does.
    private var holdsBudget = false
    private var backoffTimer: Scheduled<Void>?

    public init(policy: RetryPolicyConfig) {
        self.init(policy: policy, resources: nil, stats: nil, row: ShardedCounters.shared)
    }

    init(policy: RetryPolicyConfig, resources: ResourceManager?, stats: ClusterStats?, row: Int) {
        self.policy = policy
        self.resources = resources
        self.stats = stats
        self.row = row
    }

    public var hasRetriesLeft: Bool { retriesDone < policy.attempts }

    /// Whether `result` would be retried now (the policy alone: no budget, nothing counted).
    public func wouldRetry(_ result: TryResult) -> Bool { hasRetriesLeft && isRetriable(result) }

    /// Whether `retryOn` covers `result` (ignoring how many tries are left). `grpcStatus`: the
    /// `grpc-status` in a gRPC call's response head, for the gRPC conditions.
    public func isRetriable(_ result: TryResult, grpcStatus: Int? = nil) -> Bool {
        let on = policy.retryOn
        switch result {
        case .overflow, .protocolError:
            // Envoy never retries an overflow; a malformed response would most likely come again.
            return false
        case .connectFailure:
            return !on.isDisjoint(with: [.connectFailure, .fiveXX, .gatewayError, .reset])
        case .reset:
            return !on.isDisjoint(with: [.fiveXX, .gatewayError, .reset])
        case .refusedStream:
            // Envoy: a refused stream is a reset too, so 5xx, gateway-error and reset cover it.
            return !on.isDisjoint(with: [.refusedStream, .fiveXX, .gatewayError, .reset])
        case .timeout:
            return !on.isDisjoint(with: [.fiveXX, .gatewayError])
        case .response(let code):
            if on.contains(.fiveXX) && code >= 500 { return true }
            if on.contains(.gatewayError) && (code == 502 || code == 503 || code == 504) { return true }
            if on.contains(.retriable4xx) && code == 409 { return true }
            if on.contains(.retriableStatusCodes) && policy.retriableStatusCodes.contains(code) { return true }
            if let grpcStatus, on.retries(grpcStatus: grpcStatus) { return true }
            return false
        }
    }

    /// Envoy's `shouldRetry`: decides, takes the budget, counts, and on `.yes` schedules
    /// `target.retryNow()` on `eventLoop` after the backoff. `replayable`: the request body is
    /// still whole (a retry could not send a body that was not kept).
    public mutating func shouldRetry(
        _ result: TryResult, grpcStatus: Int? = nil, replayable: Bool = true, eventLoop: EventLoop,
        random: inout FastRandom, target: RetryTarget
    ) -> RetryStatus {
        guard isRetriable(result, grpcStatus: grpcStatus) else {
            // Envoy infers an earlier retry succeeded when its result is not one to retry.
            if retriesDone > 0 { stats?.inc(.upstream_rq_retry_success, row: row) }
            return .no
        }
        guard hasRetriesLeft, replayable else {
            // A route without retries has no limit to exceed.
            guard policy.attempts > 0 else { return .no }
            stats?.inc(.upstream_rq_retry_limit_exceeded, row: row)
            return .noRetryLimitExceeded
        }
        releaseBudget()
        // nil: no limit to ask (pure policy use).
        if let acquired = resources.map({ $0.tryAcquireRetry() }) {
            guard acquired else {
                stats?.inc(.upstream_rq_retry_overflow, row: row)
                return .noOverflow
            }
            holdsBudget = true
        }
        stats?.inc(.upstream_rq_retry, row: row)
        let delay = nextBackoff(random: &random)
        backoffTimer = eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: delay) { target.retryNow() }
        return .yes
    }

    /// The scheduled retry is starting (its timer fired).
    mutating func backoffFired() { backoffTimer = nil }

    /// The request is over: a pending retry is cancelled and the budget given back.
    mutating func reset() {
        backoffTimer?.cancel()
        backoffTimer = nil
        releaseBudget()
    }

    private mutating func releaseBudget() {
        if holdsBudget {
            holdsBudget = false
            resources?.retries.dec()
        }
    }

    /// Consumes one retry and returns how long to wait before it: Envoy's fully jittered
    /// exponential backoff (`JitteredBackOffStrategy`): for the n-th retry (from 1) a uniform draw
    /// in [0, (2^n - 1) × base), capped at max = 10 × base.
    public mutating func nextBackoff(random: inout FastRandom) -> TimeAmount {
        let base = policy.backoffBase.nanoseconds
        let cap = base * 10
        retriesDone += 1
        let ceiling = min((Int64(1) << Int64(min(retriesDone, 20))) - 1, 1 << 20) * base
        return .nanoseconds(min(Int64(random.below(Int(ceiling))), cap))
    }
}
