#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// Istio `loadBalancer.consistentHash`: which part of the request picks the host, and how the
/// hash maps onto hosts (Envoy's `hash_policy` on every route to the cluster + `RING_HASH` or
/// `MAGLEV` as the cluster's `lb_policy`).
public struct ConsistentHashSettings: Sendable, Equatable {
    public enum Key: Sendable, Equatable {
        /// `httpHeaderName` (stored lower-cased): the header's value is hashed.
        case header(String)
        /// `httpCookie`: the cookie's value. With a `ttl`, a request without the cookie gets one
        /// generated and returned with `Set-Cookie` (ttl 0: a session cookie, no Max-Age).
        case cookie(name: String, path: String?, ttl: TimeAmount?)
        /// `useSourceIp`: the client's address.
        case sourceIP
        /// `httpQueryParameterName`: the query parameter's (raw) value.
        case queryParameter(String)
    }
    public enum Algorithm: Sendable, Equatable {
        /// Envoy ring hash; `minimumRingSize` default 1024.
        case ringHash(minimumRingSize: Int)
        /// Envoy Maglev; `tableSize` default 65537 (a prime).
        case maglev(tableSize: Int)
    }
    public var key: Key
    public var algorithm: Algorithm
    public init(key: Key, algorithm: Algorithm = .ringHash(minimumRingSize: RingHashTable.defaultMinimumRingSize)) {
        self.key = key
        self.algorithm = algorithm
    }
}

/// Istio `loadBalancer.warmup` / `warmupDurationSecs`: Envoy's slow start. A host that joined
/// the cluster less than `duration` ago gets weight × max(minimumPercent/100, t^(1/aggression)),
/// t = max(age, 1 s) / duration.
public struct WarmupSettings: Sendable, Equatable {
    public var duration: TimeAmount
    /// Default 10, as Envoy's `min_weight_percent`.
    public var minimumPercent: Double
    /// Default 1.0 (linear ramp).
    public var aggression: Double
    public init(duration: TimeAmount, minimumPercent: Double = 10, aggression: Double = 1) {
        self.duration = duration
        self.minimumPercent = minimumPercent
        self.aggression = aggression
    }

    /// The factor a host's weight is scaled by at `age` (1 once the window is over).
    @inline(__always) public func factor(age: TimeAmount) -> Double {
        guard age < duration else { return 1 }
        let t = Double(max(age.nanoseconds, 1_000_000_000)) / Double(duration.nanoseconds)
        let ramp = aggression == 1 ? t : pow(t, 1 / aggression)
        return min(1, max(ramp, minimumPercent / 100))
    }
}

/// Istio `trafficPolicy.retryBudget`: Envoy's `circuit_breakers.thresholds.retry_budget`. When
/// set it replaces `maxRetries`: retries outstanding may reach `percent` of the cluster's active
/// plus pending requests, and never fewer than `minRetryConcurrency`.
public struct RetryBudgetSettings: Sendable, Equatable {
    /// Default 20.
    public var percent: Double
    /// Default 3.
    public var minRetryConcurrency: Int
    public init(percent: Double = 20, minRetryConcurrency: Int = 3) {
        self.percent = percent
        self.minRetryConcurrency = minRetryConcurrency
    }

    /// Envoy's `RetryBudgetImpl::max()`: the product is truncated, as its cast to uint64 does.
    @inline(__always) public func maxRetries(activeAndPending: Int) -> Int {
        max(Int(percent / 100 * Double(activeAndPending)), minRetryConcurrency)
    }
}
