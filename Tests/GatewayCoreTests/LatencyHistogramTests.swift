import Foundation
import XCTest

@testable import GatewayCore

final class LatencyHistogramTests: XCTestCase {
    typealias H = LatencyHistogram

    /// Every one of Envoy's default bounds is a bin edge: the value at the bound opens a bin,
    /// the microsecond below it closes the previous one. So Prometheus buckets are exact.
    func testEnvoysBucketBoundsAreBinEdges() {
        for ms in H.envoyBucketsMs {
            let micros = Int(ms * 1000)
            let at = H.edges(ofBin: H.bin(micros: micros))
            XCTAssertEqual(at.left, Double(micros), "\(ms) ms opens a bin")
            let below = H.edges(ofBin: H.bin(micros: micros - 1))
            XCTAssertEqual(below.left + below.width, Double(micros), "\(ms) ms closes the bin below")
        }
    }

    func testBinsAreTwoSignificantDigitsAndContiguous() {
        XCTAssertEqual(H.bin(micros: 0), 0)
        XCTAssertEqual(H.bin(micros: 9), 0)
        XCTAssertEqual(H.bin(micros: 10), 1)
        XCTAssertEqual(H.bin(micros: 99), 9)
        XCTAssertEqual(H.bin(micros: 100), 10)
        XCTAssertEqual(H.bin(micros: 999), 99)
        XCTAssertEqual(H.bin(micros: 1000), 100)
        XCTAssertEqual(H.edges(ofBin: H.bin(micros: 20_000)).left, 20_000)
        XCTAssertEqual(H.edges(ofBin: H.bin(micros: 20_999)).width, 1000)  // 1 ms wide at 20 ms
        XCTAssertEqual(H.edges(ofBin: H.bin(micros: 80_500)).left, 80_000)
        XCTAssertEqual(H.bin(micros: H.maxMicros - 1), H.bins - 1)
        XCTAssertEqual(H.bin(micros: H.maxMicros), H.overflowSlot)
        XCTAssertEqual(H.bin(micros: Int.max), H.overflowSlot)
        XCTAssertEqual(H.bin(micros: -5), 0)
        // Each bin starts where the one before ends.
        for b in 1..<H.bins {
            let prev = H.edges(ofBin: b - 1), this = H.edges(ofBin: b)
            XCTAssertEqual(prev.left + prev.width, this.left, "bin \(b)")
            XCTAssertEqual(H.bin(micros: Int(this.left)), b)
        }
    }

    /// Rows written by several threads (two sharing one row) merge exactly when read.
    func testRowsMergeExactly() {
        let h = LatencyHistogram(rows: .any)
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            let row = t < 2 ? ShardedCounters.row(forLoop: t) : ShardedCounters.shared
            for i in 0..<10_000 { h.record(micros: i % 2 == 0 ? 20_000 : 80_000, row: row) }
        }
        let s = h.snapshot()
        XCTAssertEqual(s.count, 40_000)
        XCTAssertEqual(s.counts[H.bin(micros: 20_000)], 20_000)
        XCTAssertEqual(s.counts[H.bin(micros: 80_000)], 20_000)
        XCTAssertEqual(s.sumMicros, 20_000 * 20_000 + 20_000 * 80_000)
        XCTAssertEqual(s.sumMs, 2_000_000)
    }

    /// The runtime's rows: one per event loop plus the shared one; a row index beyond them
    /// (the shared row, 15) lands in the last.
    func testRowsForLoops() {
        let two = HistogramRows.forLoops(2)
        XCTAssertEqual(two.count, 3)
        XCTAssertTrue(two.exclusive)
        let many = HistogramRows.forLoops(64)
        XCTAssertEqual(many.count, ShardedCounters.rows)
        XCTAssertFalse(many.exclusive)
        let h = LatencyHistogram(rows: two)
        h.record(micros: 1_000, row: 0)
        h.record(micros: 1_000, row: 1)
        h.record(micros: 1_000, row: ShardedCounters.shared)
        XCTAssertEqual(h.snapshot().count, 3)
        // The shared row stays exact with several writers even when loop rows are exclusive.
        let shared = LatencyHistogram(rows: two)
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<10_000 { shared.record(micros: 500, row: ShardedCounters.shared) }
        }
        XCTAssertEqual(shared.snapshot().count, 40_000)
        XCTAssertEqual(shared.snapshot().sumMicros, 40_000 * 500)
    }

    /// libcircllhist's `hist_approx_quantile`: a quantile on a bin's lower count is its left
    /// edge, on its upper count its right edge, inside it linear; empty bins are skipped.
    func testQuantilesInterpolateAsHistApproxQuantile() {
        let h = LatencyHistogram()
        for _ in 0..<10 { h.record(micros: 20_300, row: 0) }  // bin [20, 21) ms
        var q = h.snapshot().quantiles([0, 0.5, 1])
        XCTAssertEqual(q[0], 20, accuracy: 1e-9)
        XCTAssertEqual(q[1], 20.5, accuracy: 1e-9)
        XCTAssertEqual(q[2], 21, accuracy: 1e-9)

        for _ in 0..<30 { h.record(micros: 80_000, row: 1) }  // bin [80, 81) ms; 40 values in all
        q = h.snapshot().quantiles(H.envoyQuantiles)
        XCTAssertEqual(q[0], 20, accuracy: 1e-9)  // P0
        XCTAssertEqual(q[1], 21, accuracy: 1e-9)  // P25: 10 of 40, the first bin's upper count
        XCTAssertEqual(q[2], 80 + 10.0 / 30, accuracy: 1e-3)  // P50: 20 of 40, 10 into the second bin
        XCTAssertEqual(q[6], 80 + (39.6 - 10) / 30, accuracy: 1e-3)  // P99
        XCTAssertEqual(q[9], 81, accuracy: 1e-9)  // P100

        XCTAssertTrue(LatencyHistogram().snapshot().quantiles([0.5, 0.99]).allSatisfy(\.isNaN))
    }

    /// Prometheus' `le` buckets count the bins that end at or below the bound: 25 ms exactly
    /// is above `le="25"`, as Envoy counts circllhist's bins below a bound.
    func testCumulativeBucketCounts() {
        let h = LatencyHistogram()
        h.record(micros: 300, row: 0)  // 0.3 ms
        h.record(micros: 20_000, row: 0)
        h.record(micros: 24_999, row: 0)
        h.record(micros: 25_000, row: 0)
        h.record(micros: 4_000_000_000, row: 0)  // 4 000 000 ms: above every bound
        let counts = h.snapshot().cumulativeCounts(boundsMs: H.envoyBucketsMs)
        XCTAssertEqual(counts.count, H.envoyBucketsMs.count)
        XCTAssertEqual(counts[0], 1)  // le 0.5
        XCTAssertEqual(counts[3], 1)  // le 10
        XCTAssertEqual(counts[4], 3)  // le 25
        XCTAssertEqual(counts[5], 4)  // le 50
        XCTAssertEqual(counts.last, 4)  // le 3600000
        XCTAssertEqual(h.snapshot().count, 5)
    }

    /// Envoy's `/stats` line and its number format (`{}` of fmt: 20, 20.5, nan).
    func testSummaryLineInEnvoysFormat() {
        let h = LatencyHistogram()
        XCTAssertEqual(AdminView.summary(h.snapshot(), interval: nil), "No recorded values")
        for _ in 0..<10 { h.record(micros: 20_300, row: 0) }
        XCTAssertEqual(AdminView.summary(h.snapshot(), interval: nil),
                       "P0(nan,20) P25(nan,20.25) P50(nan,20.5) P75(nan,20.75) P90(nan,20.9) P95(nan,20.95) "
                           + "P99(nan,20.99) P99.5(nan,20.995) P99.9(nan,20.999) P100(nan,21)")
        XCTAssertEqual(AdminView.quantileLabels, ["0", "25", "50", "75", "90", "95", "99", "99.5", "99.9", "100"])
    }

    /// Envoy's interval values: what was recorded between the last two stats flushes.
    func testIntervalsAreTheValuesBetweenTwoFlushes() {
        let h = LatencyHistogram()
        let intervals = HistogramIntervals()
        XCTAssertNil(intervals.interval(of: "h"), "nothing before the first flush")
        for _ in 0..<10 { h.record(micros: 20_300, row: 0) }
        intervals.flush([("h", h.snapshot())])
        XCTAssertEqual(intervals.interval(of: "h")?.count, 10, "a new histogram's first interval is all it holds")
        for _ in 0..<4 { h.record(micros: 80_500, row: 1) }
        intervals.flush([("h", h.snapshot())])
        let interval = try! XCTUnwrap(intervals.interval(of: "h"))
        XCTAssertEqual(interval.count, 4)
        XCTAssertEqual(interval.sumMicros, 4 * 80_500)
        XCTAssertEqual(AdminView.summary(h.snapshot(), interval: interval),
                       "P0(80,20) P25(80.25,20.35) P50(80.5,20.7) P75(80.75,80.125) P90(80.9,80.65) P95(80.95,80.825) "
                           + "P99(80.99,80.965) P99.5(80.995,80.983) P99.9(80.999,80.997) P100(81,81)",
                       "the interval holds the four 80 ms values alone; the cumulative all fourteen")
        // A flush without it (a reload removed it) forgets it.
        intervals.flush([])
        XCTAssertNil(intervals.interval(of: "h"))
        // Nothing recorded in an interval: nan, as Envoy prints it.
        intervals.flush([("h", h.snapshot())])
        intervals.flush([("h", h.snapshot())])
        XCTAssertTrue(AdminView.summary(h.snapshot(), interval: intervals.interval(of: "h")).hasPrefix("P0(nan,20) "))
    }

    /// Envoy's `histogram_buckets=detailed` bins: the non-empty ones, lower edge and width in ms.
    func testDetailedBucketsAreTheNonEmptyBinsInMilliseconds() {
        let h = LatencyHistogram()
        XCTAssertTrue(h.snapshot().detailedBuckets().isEmpty)
        for micros in [55, 20_300, 20_999, 80_000, 1_500_000] { h.record(micros: micros, row: 0) }
        let bins = h.snapshot().detailedBuckets()
        XCTAssertEqual(bins.map(\.lowerBoundMs), [0.05, 20, 80, 1500])
        XCTAssertEqual(bins.map(\.widthMs), [0.01, 1, 1, 100])
        XCTAssertEqual(bins.map(\.count), [1, 2, 1, 1])
    }
}
