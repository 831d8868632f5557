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

    /// Full at `index`: indistinguishable from the bucket a new client gets.
    @inline(__always)
    func isFull(at index: Int, _ config: LocalRateLimitConfig) -> Bool {
        if tokens >= config.maxTokens { return true }
        guard index > fillIndex else { return false }
        let owed = (index - fillIndex).multipliedReportingOverflow(by: config.tokensPerFill)
        return owed.overflow || tokens + owed.partialValue >= config.maxTokens
    }
}

/// The rate limiter of one route: one bucket, or one per client address.
public final class LocalRateLimiter: Sendable {
    public let config: LocalRateLimitConfig
    private let epoch: NIODeadline
    /// Packed `TokenBucketState` (fill index in the high 32 bits, tokens in the low 32) so the
    /// shared bucket is taken with one compare-and-swap, no lock.
    private let shared: ManagedAtomic<UInt64>
    /// Per-client buckets, striped by a hash of the address: a client always lands in the same
    /// shard (so one client on several event loops shares one bucket), and loops serving
    /// different clients rarely wait for the same lock.
    private let shards: [ClientBuckets]
    private let hashSalt: UInt64
    /// Buckets dropped while still holding state (none was full): `local_rate_limit.clients_evicted`.
    let evictions: ManagedAtomic<Int>

    /// Buckets a newcomer may look at, least recently used first, for one that is full.
    static let evictionScan = 8
    /// A shard keeps at least this many clients, so its LRU order stays a fair sample of the
    /// whole; small bounds get fewer shards (below 128 clients, one).
    static let minClientsPerShard = 64
    static let maxShards = 16

    public init(config: LocalRateLimitConfig, epoch: NIODeadline = .now(), evictions: ManagedAtomic<Int> = ManagedAtomic(0)) {
        self.config = config
        self.epoch = epoch
        self.evictions = evictions
        shared = ManagedAtomic(Self.pack(TokenBucketState(tokens: config.maxTokens)))
        hashSalt = UInt64.random(in: .min ... .max)
        if config.perClient {
            let total = max(1, config.maxTrackedClients)
            let count = Self.shardCount(forTracked: total)
            // The bound is split exactly: the shards' capacities add up to maxTrackedClients.
            shards = (0..<count).map { i in ClientBuckets(capacity: total / count + (i < total % count ? 1 : 0)) }
        } else {
            shards = []
        }
    }

    static func shardCount(forTracked total: Int) -> Int {
        min(Self.maxShards, max(1, total / Self.minClientsPerShard))
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
        if !shards.isEmpty, let client {
            (state, allowed) = shard(for: client).take(client, at: index, config, evictions: evictions)
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

    @inline(__always) private func shard(for client: String) -> ClientBuckets {
        if shards.count == 1 { return shards[0] }
        // Salted per limiter: which addresses share a shard cannot be known from outside.
        var h = Hasher()
        h.combine(hashSalt)
        h.combine(client)
        return shards[Int(UInt(bitPattern: h.finalize()) % UInt(shards.count))]
    }

    /// Clients with a bucket now (takes every shard's lock: for admin and tests).
    var trackedClients: Int { shards.reduce(0) { $0 + $1.count } }
    /// Buckets dropped while not full (their clients start over with a full bucket).
    var clientsEvicted: Int { evictions.load(ordering: .relaxed) }
    /// Buckets looked at by all requests so far: one per request, plus the eviction scan.
    var bucketsExamined: Int { shards.reduce(0) { $0 + $1.examined } }

    @inline(__always) static func pack(_ s: TokenBucketState) -> UInt64 {
        UInt64(UInt32(truncatingIfNeeded: s.fillIndex)) << 32 | UInt64(UInt32(clamping: s.tokens))
    }
    @inline(__always) static func unpack(_ v: UInt64) -> TokenBucketState {
        TokenBucketState(tokens: Int(v & 0xFFFF_FFFF), fillIndex: Int(v >> 32))
    }
}

/// One shard of per-client buckets: at most `capacity` clients in slots linked in recency
/// order (an LRU list kept in arrays, so no node is allocated per request). A request costs a
/// dictionary lookup and a few index writes; a newcomer in a full shard also looks at up to
/// `LocalRateLimiter.evictionScan` buckets. Nothing here walks or copies the whole shard.
final class ClientBuckets: @unchecked Sendable {
    // @unchecked: every field below `lock` is read and written only while holding it. A lock,
    // not loop confinement, because one client's requests arrive on several event loops and
    // must take from one bucket; the critical section is a few hundred nanoseconds.
    private let lock = NIOLock()
    let capacity: Int
    private var slotOf: [String: Int32] = [:]
    private var keys: [String] = []
    private var states: [TokenBucketState] = []
    /// Recency links: `newer[i]` is the slot used just after `i`; -1 ends the list.
    private var newer: [Int32] = []
    private var older: [Int32] = []
    private var newest: Int32 = -1
    private var oldest: Int32 = -1
    private var examinedCount = 0

    init(capacity: Int) {
        self.capacity = capacity
        let initial = min(capacity, 1024)
        slotOf.reserveCapacity(initial)
        keys.reserveCapacity(initial)
        states.reserveCapacity(initial)
        newer.reserveCapacity(initial)
        older.reserveCapacity(initial)
    }

    var count: Int { lock.withLock { keys.count } }
    var examined: Int { lock.withLock { examinedCount } }

    func take(_ client: String, at index: Int, _ config: LocalRateLimitConfig, evictions: ManagedAtomic<Int>)
        -> (TokenBucketState, Bool)
    {
        lock.withLock {
            examinedCount &+= 1
            let slot: Int
            if let s = slotOf[client] {
                slot = Int(s)
                touch(slot)
            } else {
                slot = place(client, fresh: TokenBucketState(tokens: config.maxTokens, fillIndex: index), at: index,
                             config, evictions: evictions)
            }
            let allowed = states[slot].take(at: index, config)
            return (states[slot], allowed)
        }
    }

    /// A slot for a new client: a free one while below capacity; then the first full bucket
    /// among the `evictionScan` least recently used (dropping it loses nothing); then the
    /// least recently used, counted as an eviction because its client starts over with a full
    /// bucket. Buckets are touched in time order, so the least recently used are the likeliest
    /// to be full; when `tokensPerFill == maxTokens` every bucket touched before the current
    /// fill interval is full, and looking at the oldest one alone is exact.
    private func place(_ client: String, fresh: TokenBucketState, at index: Int, _ config: LocalRateLimitConfig,
                       evictions: ManagedAtomic<Int>) -> Int {
        if keys.count < capacity {
            let slot = keys.count
            keys.append(client)
            states.append(fresh)
            newer.append(-1)
            older.append(-1)
            slotOf[client] = Int32(slot)
            linkNewest(slot)
            return slot
        }
        var victim = Int(oldest)
        var candidate = oldest
        var looked = 0
        var full = false
        while candidate >= 0 && looked < LocalRateLimiter.evictionScan {
            looked += 1
            if states[Int(candidate)].isFull(at: index, config) {
                victim = Int(candidate)
                full = true
                break
            }
            candidate = newer[Int(candidate)]
        }
        examinedCount &+= looked
        if !full { evictions.wrappingIncrement(ordering: .relaxed) }
        slotOf.removeValue(forKey: keys[victim])
        keys[victim] = client
        states[victim] = fresh
        slotOf[client] = Int32(victim)
        touch(victim)
        return victim
    }

    @inline(__always) private func touch(_ slot: Int) {
        guard Int32(slot) != newest else { return }
        unlink(slot)
        linkNewest(slot)
    }

    @inline(__always) private func unlink(_ slot: Int) {
        let n = newer[slot], o = older[slot]
        if n >= 0 { older[Int(n)] = o } else { newest = o }
        if o >= 0 { newer[Int(o)] = n } else { oldest = n }
        newer[slot] = -1
        older[slot] = -1
    }

    @inline(__always) private func linkNewest(_ slot: Int) {
        older[slot] = newest
        newer[slot] = -1
        if newest >= 0 { newer[Int(newest)] = Int32(slot) } else { oldest = Int32(slot) }
        newest = Int32(slot)
    }
}
