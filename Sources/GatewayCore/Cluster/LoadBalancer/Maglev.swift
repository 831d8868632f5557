/// Envoy's Maglev table (`MaglevTable`): `tableSize` slots (a prime, default 65537) filled by
/// each host's permutation (offset = xxHash64(key) mod M, skip = xxHash64(key, seed 1) mod (M-1) + 1),
/// hosts taking turns in proportion to their weight. A request's hash picks slot hash mod M.
/// Built once per config snapshot, shared read-only by the event loops.
///
/// Ejected hosts: the table keeps every host and a pick walks forward past slots of unusable
/// hosts (Envoy rebuilds over the healthy ones instead, which moves a few keys of healthy hosts).
/// Keys of usable hosts never move; an ejected host's keys spread over the others (its slots sit
/// between slots of pseudo-random hosts) and return when it does.
public struct MaglevTable: Sendable {
    public static let defaultTableSize = 65537

    /// Slot → host index.
    let slots: [Int32]

    init(keys: [String], weights: [Int], tableSize: Int) {
        precondition(keys.count == weights.count && !keys.isEmpty && Self.isPrime(tableSize))
        let m = UInt64(tableSize)
        let total = Double(weights.reduce(0, +))
        let normalized = weights.map { Double($0) / total }
        let maxWeight = normalized.max()!
        struct Build { var offset: UInt64; var skip: UInt64; var weight: Double; var target = 0.0; var next: UInt64 = 0 }
        var builds = keys.enumerated().map { i, key in
            Build(offset: XXHash64.hash(key) % m, skip: XXHash64.hash(key, seed: 1) % (m - 1) + 1, weight: normalized[i])
        }
        var slots = [Int32](repeating: -1, count: tableSize)
        var filled = 0
        var iteration = 1.0
        while filled < tableSize {
            for i in builds.indices where filled < tableSize {
                // A host of the largest weight fills a slot every round; one of a third of it, every third round.
                if iteration * builds[i].weight < builds[i].target { continue }
                builds[i].target += maxWeight
                var c = (builds[i].offset &+ builds[i].skip &* builds[i].next) % m
                while slots[Int(c)] >= 0 {
                    builds[i].next += 1
                    c = (builds[i].offset &+ builds[i].skip &* builds[i].next) % m
                }
                slots[Int(c)] = Int32(i)
                builds[i].next += 1
                filled += 1
            }
            iteration += 1
        }
        self.slots = slots
    }

    /// Envoy's retry step: a retry that must avoid the host before flips most bits of the hash.
    @inline(__always) func pick(_ hash: UInt64, attempt: Int, usable: (Int) -> Bool) -> Int? {
        var h = hash
        if attempt > 0 { h ^= ~UInt64(0) &- UInt64(attempt) &+ 1 }
        let n = slots.count
        var i = Int(h % UInt64(n))
        for _ in 0..<n {
            let owner = Int(slots[i])
            if usable(owner) { return owner }
            i += 1
            if i == n { i = 0 }
        }
        return nil
    }

    public static func isPrime(_ n: Int) -> Bool {
        if n < 2 { return false }
        if n < 4 { return true }
        if n % 2 == 0 { return false }
        var d = 3
        while d * d <= n {
            if n % d == 0 { return false }
            d += 2
        }
        return true
    }
}
