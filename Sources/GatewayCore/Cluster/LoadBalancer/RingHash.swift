/// Envoy's ring hash (`RingHashLoadBalancer::Ring`), built once per config and shared, read-only,
/// by its per-loop snapshots.
///
/// Every host gets ring entries in proportion to its weight, each at xxHash64("<address>:<port>_<i>");
/// the number of entries is scaled so the least-weighted host gets at least
/// `minimumRingSize × its share` (capped at Envoy's 8M). A request's hash picks the first entry at
/// or after it, wrapping around.
///
/// Ejected hosts: unlike Envoy, which rebuilds the ring over the healthy hosts (and so may move a
/// few keys between hosts that stayed healthy, as the scale changes), the ring always holds every
/// host and a pick walks forward past entries of unusable hosts. A key whose host is usable maps
/// exactly where it did; only the ejected host's keys move, each to the next host on the ring, and
/// they come back when it returns.
public struct RingHashTable: Sendable {
    public static let defaultMinimumRingSize = 1024
    static let maximumRingSize = 8_388_608

    /// Sorted entry hashes, and the index (into the balancer's hosts) each entry belongs to.
    let hashes: [UInt64]
    let owners: [Int32]

    /// `keys`: each host's hash key; `weights`: each host's weight (> 0).
    init(keys: [String], weights: [Int], minimumRingSize: Int) {
        precondition(keys.count == weights.count && !keys.isEmpty && keys.count <= Int(Int32.max))
        let total = Double(weights.reduce(0, +))
        let normalized = weights.map { Double($0) / total }
        let minWeight = normalized.min()!
        let scale = min((minWeight * Double(minimumRingSize)).rounded(.up) / minWeight, Double(Self.maximumRingSize))
        var entries: [(UInt64, Int32)] = []
        entries.reserveCapacity(Int(scale.rounded(.up)) + keys.count)
        var current = 0.0, target = 0.0
        for (index, key) in keys.enumerated() {
            target += scale * normalized[index]
            var i = 0
            while current < target {
                entries.append((XXHash64.hash("\(key)_\(i)"), Int32(index)))
                i += 1
                current += 1
            }
        }
        // Ties (astronomically rare) are broken by host order so every build is the same ring.
        entries.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        hashes = entries.map(\.0)
        owners = entries.map(\.1)
    }

    var count: Int { hashes.count }

    /// The first entry whose hash is >= `hash` (0 past the end: the ring wraps).
    @inline(__always) func entryIndex(for hash: UInt64) -> Int {
        var lo = 0, hi = hashes.count
        while lo < hi {
            let mid = (lo &+ hi) >> 1
            if hashes[mid] < hash { lo = mid + 1 } else { hi = mid }
        }
        return lo == hashes.count ? 0 : lo
    }

    /// The host index for `hash`. `attempt` > 0 (a retry that must avoid the host before) moves
    /// that many entries on, as Envoy's ring does; then entries of unusable hosts are skipped.
    @inline(__always) func pick(_ hash: UInt64, attempt: Int, usable: (Int) -> Bool) -> Int? {
        let n = hashes.count
        var i = entryIndex(for: hash)
        if attempt > 0 { i = (i + attempt) % n }
        for _ in 0..<n {
            let owner = Int(owners[i])
            if usable(owner) { return owner }
            i += 1
            if i == n { i = 0 }
        }
        return nil
    }
}
