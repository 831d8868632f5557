import Foundation
import XCTest

@testable import GatewayCore

final class ShardedCountersTests: XCTestCase {
    /// Rows written by several threads at once, one row shared by two of them, sum exactly.
    func testConcurrentUpdatesSumExactly() {
        let counters = ShardedCounters(count: 3)
        let threads = 4, perThread = 100_000
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            // Threads 2 and 3 share the shared row: still exact, only contended.
            let row = t < 2 ? ShardedCounters.row(forLoop: t) : ShardedCounters.shared
            for _ in 0..<perThread {
                counters.increment(1, row: row)
                counters.add(2, -1, row: row)
            }
        }
        XCTAssertEqual(counters[0], 0)
        XCTAssertEqual(counters[1], threads * perThread)
        XCTAssertEqual(counters[2], -threads * perThread)
    }

    func testLoopsBeyondTheRowCountWrapWithoutTouchingTheSharedRow() {
        for i in 0..<100 { XCTAssertNotEqual(ShardedCounters.row(forLoop: i), ShardedCounters.shared) }
    }

    /// The one mapping of a status to Envoy's 1xx…5xx counters, edges included.
    func testResponseCodeClassEdges() {
        XCTAssertNil(responseCodeClass(0))
        XCTAssertNil(responseCodeClass(99))
        XCTAssertEqual([100, 199, 200, 299, 300, 399, 400, 499, 500, 599, 999].map { responseCodeClass($0) },
                       [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4])
    }
}
