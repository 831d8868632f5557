import Foundation
import NIOCore
import XCTest
@testable import GatewayCore

/// The per-client buckets against a client population the gateway does not choose: many
/// addresses, churn, and one client on two event loops at once.
final class PerClientRateLimiterTests: XCTestCase {
    func address(_ i: Int) -> String { Self.address(i) }
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func config(max: Int, perFill: Int, every: TimeAmount, tracked: Int) -> LocalRateLimitConfig {
        LocalRateLimitConfig(maxTokens: max, tokensPerFill: perFill, fillInterval: every, perClient: true,
                             maxTrackedClients: tracked)
    }

    static func address(_ i: Int) -> String { "10.\((i >> 16) & 255).\((i >> 8) & 255).\(i & 255)" }

    func testTrackedClientsStayBoundedAfter100kDistinctClients() {
        let limiter = LocalRateLimiter(config: config(max: 5, perFill: 5, every: .seconds(1), tracked: 1000), epoch: t0)
        for i in 0..<100_000 {
            XCTAssertTrue(limiter.check(client: address(i), now: t0).allowed, "a new client starts with a full bucket")
            if i % 1000 == 999, limiter.trackedClients > 1000 {
                XCTFail("\(limiter.trackedClients) clients tracked after \(i + 1), more than maxTrackedClients 1000")
                return
            }
        }
        XCTAssertLessThanOrEqual(limiter.trackedClients, 1000)
        XCTAssertGreaterThanOrEqual(limiter.trackedClients, 900, "the bound is used, not a much smaller one")
        // Every client took a token in the same fill interval: no bucket was full, so each
        // eviction dropped state and was counted.
        XCTAssertEqual(limiter.clientsEvicted, 100_000 - limiter.trackedClients)
    }

    func testFullBucketsAreEvictedBeforeTheLeastRecentlyUsed() {
        // Below 128 tracked clients the limiter has one shard, so the order is exact.
        let limiter = LocalRateLimiter(config: config(max: 3, perFill: 1, every: .seconds(1), tracked: 100), epoch: t0)
        let limited = "192.0.2.66"
        XCTAssertEqual((0..<4).map { _ in limiter.check(client: limited, now: t0) }.filter(\.allowed).count, 3)
        for i in 0..<99 { XCTAssertTrue(limiter.check(client: address(i), now: t0).allowed) }
        XCTAssertEqual(limiter.trackedClients, 100)

        // One interval later the 99 clients that took one token are full again; `limited` (the
        // least recently used) has 1 of 3. Newcomers must take the full buckets' places.
        let t1 = t0 + .seconds(1)
        for i in 1000..<1099 { XCTAssertTrue(limiter.check(client: address(i), now: t1).allowed) }
        XCTAssertEqual(limiter.trackedClients, 100)
        XCTAssertEqual(limiter.clientsEvicted, 0, "only full buckets were dropped, which loses nothing")
        let first = limiter.check(client: limited, now: t1)
        XCTAssertTrue(first.allowed, "one token came back in one interval")
        XCTAssertEqual(first.remaining, 0, "its bucket was kept: a fresh one would have 2 left")
        XCTAssertFalse(limiter.check(client: limited, now: t1).allowed)

        // No bucket is full now: a newcomer evicts the least recently used (not `limited`,
        // just touched) and the eviction is counted.
        XCTAssertTrue(limiter.check(client: "198.51.100.1", now: t1).allowed)
        XCTAssertEqual(limiter.clientsEvicted, 1)
        XCTAssertEqual(limiter.trackedClients, 100)
        XCTAssertFalse(limiter.check(client: limited, now: t1).allowed, "still limited")
    }

    func testLimitedClientStaysLimitedWhileOthersChurnBelowTheBound() {
        let limiter = LocalRateLimiter(config: config(max: 2, perFill: 1, every: .hours(1), tracked: 100), epoch: t0)
        let attacker = "203.0.113.9"
        XCTAssertTrue(limiter.check(client: attacker, now: t0).allowed)
        XCTAssertTrue(limiter.check(client: attacker, now: t0).allowed)
        var attackerAllowed = 0
        for i in 0..<10_000 {
            let now = t0 + .milliseconds(Int64(i))
            XCTAssertTrue(limiter.check(client: address(i), now: now).allowed)
            // 50 other clients between two of its requests: fewer than the 100 tracked.
            if i % 50 == 49, limiter.check(client: attacker, now: now).allowed { attackerAllowed += 1 }
        }
        XCTAssertEqual(attackerAllowed, 0, "the attacker's empty bucket was never replaced by a fresh one")
        XCTAssertLessThanOrEqual(limiter.trackedClients, 100)
        XCTAssertEqual(limiter.clientsEvicted, 10_000 + 1 - limiter.trackedClients,
                       "within the hour no bucket refills, so every eviction is counted")
    }

    func testOneClientOnTwoThreadsSharesOneBucket() {
        let limiter = LocalRateLimiter(config: config(max: 1000, perFill: 1, every: .hours(1), tracked: 10_000), epoch: t0)
        XCTAssertGreaterThan(LocalRateLimiter.shardCount(forTracked: 10_000), 1, "the client's shard is one of several")
        final class Counts: @unchecked Sendable {
            // @unchecked: each thread writes only its own index, read after `group.wait()`.
            var allowed = [0, 0]
        }
        let counts = Counts()
        let group = DispatchGroup()
        let ready = DispatchGroup()
        let go = DispatchSemaphore(value: 0)
        let t0 = self.t0
        for t in 0..<2 {
            group.enter()
            ready.enter()
            Thread {
                // Both threads start together, so their takes interleave.
                ready.leave()
                go.wait()
                var n = 0
                for i in 0..<5000 {
                    if limiter.check(client: "198.51.100.7", now: t0).allowed { n += 1 }
                    // Other clients land in the same and other shards meanwhile.
                    _ = limiter.check(client: Self.address(t * 100_000 + i), now: t0)
                }
                counts.allowed[t] = n
                group.leave()
            }.start()
        }
        ready.wait()
        go.signal()
        go.signal()
        group.wait()
        let allowed = counts.allowed
        XCTAssertEqual(allowed[0] + allowed[1], 1000, "exactly maxTokens across both threads: none lost, none extra")
    }

    /// Per request the limiter looks at one bucket, plus at most `evictionScan` when a newcomer
    /// needs a place: never a number that grows with the clients it tracks.
    func testPerRequestWorkDoesNotGrowWithTrackedClients() {
        // Room for twice as many, so no shard is full after `tracked` clients (a shard that
        // is full evicts: fine, but then fewer than `tracked` would be tracked).
        func fill(_ tracked: Int) -> LocalRateLimiter {
            let l = LocalRateLimiter(config: config(max: 5, perFill: 5, every: .seconds(1), tracked: 2 * tracked), epoch: t0)
            for i in 0..<tracked { _ = l.check(client: address(i), now: t0) }
            XCTAssertEqual(l.trackedClients, tracked)
            return l
        }
        func mostExamined(_ l: LocalRateLimiter, tracked: Int) -> Int {
            var most = 0
            for i in 0..<500 {
                for client in [address(i * 7 % tracked), address(500_000 + i)] {
                    let before = l.bucketsExamined
                    _ = l.check(client: client, now: t0)
                    most = max(most, l.bucketsExamined - before)
                }
            }
            return most
        }
        let small = fill(200), large = fill(20_000)
        let bound = 1 + LocalRateLimiter.evictionScan
        XCTAssertLessThanOrEqual(mostExamined(small, tracked: 200), bound)
        XCTAssertLessThanOrEqual(mostExamined(large, tracked: 20_000), bound)

        // The same in time, with a generous bound: hits and evicting inserts at 20,000 tracked
        // clients cost about what they cost at 200.
        func seconds(_ l: LocalRateLimiter, tracked: Int, base: Int) -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            for i in 0..<2000 {
                _ = l.check(client: address(i * 13 % tracked), now: t0)
                _ = l.check(client: address(base + i), now: t0)
            }
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        var smallBest = Double.infinity, largeBest = Double.infinity
        for round in 0..<3 {
            smallBest = min(smallBest, seconds(small, tracked: 200, base: 1_000_000 + round * 10_000))
            largeBest = min(largeBest, seconds(large, tracked: 20_000, base: 2_000_000 + round * 10_000))
        }
        XCTAssertLessThan(largeBest, smallBest * 10 + 0.005, "200 tracked: \(smallBest)s, 20,000 tracked: \(largeBest)s")
    }
}
