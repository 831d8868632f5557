import Atomics
import NIOConcurrencyHelpers
import NIOCore

/// Envoy's local rate limit token bucket: starts full with `maxTokens`, gains `tokensPerFill`
/// every `fillInterval` (never above `maxTokens`), and each request takes one token.
///
/// Time is counted in whole fill intervals since `epoch`, so the bucket needs no timer: the
/// refill owed is computed when a request arrives.
public struct TokenBucketState: Sendable, Equatable {
    public var tokens: Int
    public var fillIndex: Int

    public init(tokens: Int, fillIndex: Int = 0) {
        self.tokens = tokens
        self.fillIndex = fillIndex
    }

    /// Refills up to `index` and takes a token if there is one.
    @inline(__always)
    public mutating func take(at index: Int, _ config: LocalRateLimitConfig) -> Bool {
        refill(to: index, config)
        guard tokens > 0 else { return false }
        tokens -= 1
        return true
    }

    @inline(__always)
    public mutating func refill(to index: Int, _ config: LocalRateLimitConfig) {
        if index > fillIndex {
            let owed = (index - fillIndex).multipliedReportingOverflow(by: config.tokensPerFill)
            tokens = owed.overflow ? config.maxTokens : min(config.maxTokens, tokens + owed.partialValue)
            fillIndex = index
        }
    }
}

/// The rate limiter of one route: one bucket, or one per client address.
public final class LocalRateLimiter: Sendable {
    public let config: LocalRateLimitConfig
    private let epoch: NIODeadline
    /// Packed `TokenBucketState` (fill index in the high 32 bits, tokens in the low 32) so the
    /// shared bucket is taken with one compare-and-swap, no lock.
    private let shared: ManagedAtomic<UInt64>
    private let perClient: NIOLockedValueBox<[String: TokenBucketState]>

    public init(config: LocalRateLimitConfig, epoch: NIODeadline = .now()) {
        self.config = config
        self.epoch = epoch
        shared = ManagedAtomic(Self.pack(TokenBucketState(tokens: config.maxTokens)))
        perClient = NIOLockedValueBox([:])
    }

    public struct Decision: Sendable, Equatable {
        public var allowed: Bool
        public var remaining: Int
        /// Seconds until the next fill (at least 1), for Retry-After and RateLimit-Reset.
        public var resetSeconds: Int
    }

    @inline(__always) func fillIndex(_ now: NIODeadline) -> Int {
        Int((now - epoch).nanoseconds / max(1, config.fillInterval.nanoseconds))
    }

    public func check(client: String?, now: NIODeadline) -> Decision {
        let index = fillIndex(now)
        var state: TokenBucketState
        var allowed: Bool
        if config.perClient, let client {
            (state, allowed) = perClient.withLockedValue { buckets in
                var s = buckets[client] ?? TokenBucketState(tokens: config.maxTokens, fillIndex: index)
                let ok = s.take(at: index, config)
                buckets[client] = s
                if buckets.count > 10_000 { buckets = buckets.filter { $0.value.tokens < config.maxTokens } }
                return (s, ok)
            }
        } else {
            var packed = shared.load(ordering: .relaxed)
            while true {
                state = Self.unpack(packed)
                allowed = state.take(at: index, config)
                let (done, original) = shared.weakCompareExchange(
                    expected: packed, desired: Self.pack(state), ordering: .relaxed)
                if done { break }
                packed = original
            }
        }
        let nextFill = epoch + .nanoseconds(Int64(index + 1) * config.fillInterval.nanoseconds)
        let reset = max(1, Int(((nextFill - now).nanoseconds + 999_999_999) / 1_000_000_000))
        return Decision(allowed: allowed, remaining: state.tokens, resetSeconds: reset)
    }

    @inline(__always) static func pack(_ s: TokenBucketState) -> UInt64 {
        UInt64(UInt32(truncatingIfNeeded: s.fillIndex)) << 32 | UInt64(UInt32(clamping: s.tokens))
    }
    @inline(__always) static func unpack(_ v: UInt64) -> TokenBucketState {
        TokenBucketState(tokens: Int(v & 0xFFFF_FFFF), fillIndex: Int(v >> 32))
    }
}
