import NIOCore

/// How one try ended, as the retry policy sees it.
public enum TryOutcome: Equatable, Sendable {
    case status(Int)
    case connectFailure
    /// Connection reset or closed before a complete response head.
    case reset
    case perTryTimeout
    /// A circuit breaker refused the request: Envoy never retries an overflow.
    case overflow
}

/// Envoy's retry state for one request: which outcomes retry (`retryOn`), how many tries are
/// left, and the jittered exponential backoff. The router consults it; it knows no sockets.
public struct RetryState: Sendable {
    public let policy: RetryPolicyConfig
    public private(set) var retriesDone = 0
    /// Envoy's default base interval; the cap is ten times it.
    public static let baseInterval = TimeAmount.milliseconds(25)
    public static let maxInterval = TimeAmount.milliseconds(250)

    public init(policy: RetryPolicyConfig) { self.policy = policy }

    public var hasRetriesLeft: Bool { retriesDone < policy.attempts }

    /// Whether `outcome` is one `retryOn` covers (ignoring how many tries are left).
    public func isRetriable(_ outcome: TryOutcome) -> Bool {
        let on = policy.retryOn
        switch outcome {
        case .overflow:
            return false
        case .connectFailure:
            return !on.isDisjoint(with: [.connectFailure, .fiveXX, .gatewayError, .reset])
        case .reset:
            return !on.isDisjoint(with: [.fiveXX, .gatewayError, .reset])
        case .perTryTimeout:
            return !on.isDisjoint(with: [.fiveXX, .gatewayError])
        case .status(let code):
            if on.contains(.fiveXX) && code >= 500 { return true }
            if on.contains(.gatewayError) && (code == 502 || code == 503 || code == 504) { return true }
            if on.contains(.retriable4xx) && code == 409 { return true }
            if on.contains(.retriableStatusCodes) && policy.retriableStatusCodes.contains(code) { return true }
            return false
        }
    }

    public func shouldRetry(_ outcome: TryOutcome) -> Bool { hasRetriesLeft && isRetriable(outcome) }

    /// Consumes one retry and returns how long to wait before it: uniformly random in
    /// [0, min(base × 2^n, max)), Envoy's fully jittered exponential backoff.
    public mutating func nextBackoff(random: inout FastRandom) -> TimeAmount {
        let ceiling = min(Self.baseInterval.nanoseconds << Int64(min(retriesDone, 20)), Self.maxInterval.nanoseconds)
        retriesDone += 1
        return .nanoseconds(Int64(random.below(Int(ceiling))))
    }
}
