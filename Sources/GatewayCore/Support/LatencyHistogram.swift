import Atomics

/// How many rows a histogram keeps, and whether each row has one writer. Histograms are much
/// wider than the counter rows (`LatencyHistogram.slots` counters each), so the runtime gives
/// them one row per event loop that exists plus the shared row, not `ShardedCounters.rows`.
public struct HistogramRows: Sendable {
    public let count: Int
    /// Each loop row has exactly one writer (its event loop): a record is a load and a store.
    /// Otherwise (more loops than rows, or tests writing from any thread), and always in the
    /// shared row, atomic adds keep it exact.
    public let exclusive: Bool

    /// For a gateway with `loops` event loops, whose rows are `ShardedCounters.row(forLoop:)`.
    public static func forLoops(_ loops: Int) -> HistogramRows {
        HistogramRows(count: min(max(loops, 1), ShardedCounters.rows - 1) + 1,
                      exclusive: loops <= ShardedCounters.rows - 1)
    }

    /// Any writer, any row: all `ShardedCounters.rows`, atomic adds.
    public static let any = HistogramRows(count: ShardedCounters.rows, exclusive: false)
}

/// A latency histogram in Envoy's manner: recorded per event loop, merged when read, shown
/// with Envoy's quantiles (`hist_approx_quantile` of libcircllhist) and default buckets.
///
/// Values are microseconds in log-linear bins of two significant digits, as circllhist's
/// (10..99 × 10^d µs for 100 µs and up; ten 10 µs bins below): every one of Envoy's default
/// bucket bounds (0.5 ms .. 3 600 000 ms) is a bin edge, so the Prometheus buckets are exact,
/// and a quantile is off by at most one bin, under 10% of its value (a 1 ms bin at 20 ms).
/// Envoy's buckets alone would put 20 ms and 80 ms in bins 15 ms and 50 ms wide.
///
/// Recording is a short loop over the decades, then two updates (bin and sum) in this loop's
/// row, whose slots no other loop writes and whose start is cache-line aligned: no lock, no
/// allocation, no shared line.
public final class LatencyHistogram: @unchecked Sendable {
    // @unchecked: the storage is only ever touched through atomic operations.

    /// Ten 10 µs bins under 100 µs, then 90 bins a decade from 100 µs to 10^10 µs (2.8 hours).
    static let linearBins = 10
    static let decades = 8
    static let bins = linearBins + decades * 90
    /// Bins, then the overflow bin (≥ 10^10 µs), then the sum of the recorded microseconds.
    static let overflowSlot = bins
    static let sumSlot = bins + 1
    static let slots = bins + 2
    static let maxMicros = 10_000_000_000

    /// Envoy's default bucket bounds (ms), `HistogramOptionsImpl::defaultBuckets`.
    public static let envoyBucketsMs: [Double] = [
        0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
    ]
    /// Envoy's default quantiles, `HistogramOptionsImpl::defaultQuantiles`.
    public static let envoyQuantiles: [Double] = [0, 0.25, 0.5, 0.75, 0.90, 0.95, 0.99, 0.995, 0.999, 1]

    private let rows: HistogramRows
    private let stride: Int
    private let storage: UnsafeMutablePointer<UnsafeAtomic<Int>.Storage>

    public init(rows: HistogramRows = .any) {
        self.rows = rows
        stride = (Self.slots + 7) / 8 * 8  // whole 64-byte lines per row
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: stride * rows.count * 8, alignment: 64)
        storage = bytes.bindMemory(to: UnsafeAtomic<Int>.Storage.self, capacity: stride * rows.count)
        storage.initialize(repeating: UnsafeAtomic<Int>.Storage(0), count: stride * rows.count)
    }

    deinit { storage.deallocate() }

    /// The bin of a value in microseconds.
    @inline(__always) static func bin(micros v: Int) -> Int {
        if v < 100 { return v < 0 ? 0 : v / 10 }
        var unit = 10
        var d = 0
        // v in [100·unit, 1000·unit): its two leading digits are v / unit.
        while v >= unit &* 100 {
            d &+= 1
            if d == decades { return overflowSlot }
            unit &*= 10
        }
        return linearBins &+ d &* 90 &+ (v / unit &- 10)
    }

    /// The bin's lower edge and width, in microseconds.
    static func edges(ofBin b: Int) -> (left: Double, width: Double) {
        if b < linearBins { return (Double(b * 10), 10) }
        if b >= bins { return (Double(maxMicros), 0) }
        let d = (b - linearBins) / 90
        let m = (b - linearBins) % 90 + 10
        var unit = 10.0
        for _ in 0..<d { unit *= 10 }
        return (Double(m) * unit, unit)
    }

    /// Records one value on the request path. `row`: the event loop's row (`Worker.row`).
    @inline(__always) public func record(micros: Int, row: Int) {
        let r = row < rows.count ? row : rows.count - 1
        let base = storage + r * stride
        let b = Self.bin(micros: micros)
        // A loop's own row: nobody else writes it, so a plain load and store are exact. The last
        // row (the shared one) may have several writers at once, hence atomic adds there.
        if rows.exclusive && r < rows.count - 1 {
            let bin = UnsafeAtomic<Int>(at: base + b)
            bin.store(bin.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
            let sum = UnsafeAtomic<Int>(at: base + Self.sumSlot)
            sum.store(sum.load(ordering: .relaxed) &+ micros, ordering: .relaxed)
        } else {
            UnsafeAtomic<Int>(at: base + b).wrappingIncrement(ordering: .relaxed)
            UnsafeAtomic<Int>(at: base + Self.sumSlot).wrappingIncrement(by: micros, ordering: .relaxed)
        }
    }

    /// Records the time from `start` to `end`.
    @inline(__always) public func record(from startNanos: UInt64, to endNanos: UInt64, row: Int) {
        let micros = endNanos > startNanos ? Int((endNanos &- startNanos) / 1000) : 0
        record(micros: micros, row: row)
    }

    /// All rows merged (each row read with relaxed loads: a value being recorded may show in
    /// its bin and not yet in the sum).
    public func snapshot() -> HistogramSnapshot {
        var counts = [Int](repeating: 0, count: Self.bins + 1)
        var sum = 0
        for r in 0..<rows.count {
            let base = storage + r * stride
            for b in 0...Self.bins { counts[b] &+= UnsafeAtomic<Int>(at: base + b).load(ordering: .relaxed) }
            sum &+= UnsafeAtomic<Int>(at: base + Self.sumSlot).load(ordering: .relaxed)
        }
        return HistogramSnapshot(counts: counts, sumMicros: sum)
    }
}

/// A histogram's merged counts, read for `/stats`.
public struct HistogramSnapshot: Sendable {
    /// Per bin (`LatencyHistogram.bin`), the last the overflow bin.
    public let counts: [Int]
    public let sumMicros: Int

    public var count: Int { counts.reduce(0, &+) }
    public var sumMs: Double { Double(sumMicros) / 1000 }

    /// What was recorded after `earlier`, a snapshot of the same histogram (Envoy's interval
    /// histogram: the values since the last stats flush).
    public func subtracting(_ earlier: HistogramSnapshot) -> HistogramSnapshot {
        precondition(earlier.counts.count == counts.count, "snapshots of one histogram")
        // Relaxed reads may see a bin before its sum or the other way round: never below zero.
        return HistogramSnapshot(counts: zip(counts, earlier.counts).map { max(0, $0 &- $1) },
                                 sumMicros: max(0, sumMicros &- earlier.sumMicros))
    }

    /// Quantiles in milliseconds, as libcircllhist's `hist_approx_quantile` computes them over
    /// the non-empty bins: a quantile that falls on a bin's lower or upper count is that edge,
    /// one inside a bin is interpolated linearly within it (to the microsecond). NaN when
    /// nothing was recorded.
    /// `qs` must be ascending, each in 0...1.
    public func quantiles(_ qs: [Double]) -> [Double] {
        precondition(zip(qs, qs.dropFirst()).allSatisfy { $0 <= $1 } && qs.allSatisfy { (0...1).contains($0) },
                     "quantiles ascending, in 0...1")
        let used = counts.indices.filter { counts[$0] > 0 }
        let total = Double(count)
        guard total > 0 else { return qs.map { _ in .nan } }
        var out: [Double] = []
        out.reserveCapacity(qs.count)
        var i = 0
        var (left, width) = LatencyHistogram.edges(ofBin: used[0])
        var lower = 0.0
        var upper = Double(counts[used[0]])
        for q in qs {
            let target = total * q
            while i < used.count - 1 && upper < target {
                i += 1
                (left, width) = LatencyHistogram.edges(ofBin: used[i])
                lower = upper
                upper = lower + Double(counts[used[i]])
            }
            let value: Double
            if lower == target {
                value = left
            } else if upper == target {
                value = left + width
            } else if width == 0 {
                value = left
            } else {
                value = left + (target - lower) / (upper - lower) * width
            }
            // Rounded to the microsecond values are recorded in, so 20.995 prints as such.
            out.append(value.rounded() / 1000)
        }
        return out
    }

    /// The non-empty bins as Envoy's `histogram_buckets=detailed` lists them: lower edge and
    /// width in milliseconds, and the count, in ascending order.
    public func detailedBuckets() -> [(lowerBoundMs: Double, widthMs: Double, count: Int)] {
        counts.indices.compactMap { b in
            guard counts[b] > 0 else { return nil }
            let (left, width) = LatencyHistogram.edges(ofBin: b)
            return (left / 1000, width / 1000, counts[b])
        }
    }

    /// Prometheus' cumulative bucket counts for bounds in ms: the values in bins that end at or
    /// below each bound (as Envoy counts circllhist bins below a bound). Bounds must be ascending.
    public func cumulativeCounts(boundsMs: [Double]) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(boundsMs.count)
        var b = 0
        var running = 0
        for bound in boundsMs {
            let limit = bound * 1000
            while b < LatencyHistogram.bins {
                let (left, width) = LatencyHistogram.edges(ofBin: b)
                guard left + width <= limit else { break }
                running &+= counts[b]
                b += 1
            }
            out.append(running)
        }
        return out
    }
}
