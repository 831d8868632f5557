import Atomics
import Foundation
import GatewayCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

/// An upstream for retry tests: `/hang` is never answered until `release()`; on `/flaky` the
/// first try of a request (by its x-request-id, the same on every try) gets 503 and its retry
/// hangs; on `/fail` every try gets 503. It notes when each try of a request arrived.
final class RetryProbeUpstream: @unchecked Sendable {
    let released = ManagedAtomic(false)
    let hanging = ManagedAtomic(0)
    let retriesSeen = ManagedAtomic(0)
    private let arrivals = NIOLockedValueBox<[String: [Date]]>([:])
    private(set) var upstream: ScriptedUpstream!

    init() throws {
        upstream = try ScriptedUpstream { [unowned self] head, _ in self.answer(head) }
    }

    var port: Int { upstream.port }
    func release() { released.store(true, ordering: .relaxed) }
    func tries(of id: String) -> [Date] { arrivals.withLockedValue { $0[id] ?? [] } }
    var allTries: [[Date]] { arrivals.withLockedValue { Array($0.values) } }

    private func hang() -> [[UInt8]] {
        hanging.wrappingIncrement(ordering: .relaxed)
        while !released.load(ordering: .relaxed) { usleep(5_000) }
        return [Array("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".utf8)]
    }

    private func answer(_ head: String) -> [[UInt8]] {
        let unavailable = [Array("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".utf8)]
        let id = head.components(separatedBy: "\r\n").first { $0.lowercased().hasPrefix("x-request-id:") }
            .map { String($0.dropFirst("x-request-id:".count)).trimmingCharacters(in: .whitespaces) } ?? ""
        let n = arrivals.withLockedValue { a -> Int in
            a[id, default: []].append(Date())
            return a[id]!.count
        }
        switch ScriptedUpstream.target(head) {
        case "/hang": return hang()
        case "/flaky":
            guard n > 1 else { return unavailable }
            retriesSeen.wrappingIncrement(ordering: .relaxed)
            return hang()
        default: return unavailable
        }
    }
}

final class RetryBudgetTests: XCTestCase {
    let retryOn503 = RetryPolicyConfig(attempts: 1, retryOn: [.retriableStatusCodes], retriableStatusCodes: [503],
                                       backoffBase: .milliseconds(1))

    /// Sends `/flaky` requests one at a time while `holding` requests hang on the cluster, and
    /// returns how many got a retry (their retry now hangs too) and how many were answered 503
    /// at once (the budget refused: `upstream_rq_retry_overflow`).
    func measure(budget: RetryBudgetSettings?, holding: Int, flaky: Int) async throws -> (granted: Int, refused: Int, stats: (Int, Int)) {
        let up = try RetryProbeUpstream()
        let policy = TrafficPolicy(retryBudget: budget)
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("shop", ports: [up.port], policy: policy)],
            routes: [TestConfig.route("/", to: "shop", retries: retryOn503)]))
        var open: [RawConnection] = []
        for _ in 0..<holding {
            let c = try RawConnection(port: gw.port, timeout: 0.5)
            c.send("GET /hang HTTP/1.1\r\nHost: shop\r\n\r\n")
            open.append(c)
        }
        let deadline = Date().addingTimeInterval(10)
        while up.hanging.load(ordering: .relaxed) < holding && Date() < deadline { usleep(5_000) }
        XCTAssertEqual(up.hanging.load(ordering: .relaxed), holding, "the cluster's active requests")
        var granted = 0, refused = 0
        for _ in 0..<flaky {
            let c = try RawConnection(port: gw.port, timeout: 0.4)
            c.send("GET /flaky HTTP/1.1\r\nHost: shop\r\n\r\n")
            open.append(c)
            let before = up.retriesSeen.load(ordering: .relaxed)
            if let r = c.readResponse() {
                XCTAssertEqual(r.status, 503)
                refused += 1
            } else {
                // No answer: the retry is hanging on the upstream.
                XCTAssertEqual(up.retriesSeen.load(ordering: .relaxed), before + 1)
                granted += 1
            }
        }
        let stats = (gw.stat("cluster.shop.upstream_rq_retry") ?? -1, gw.stat("cluster.shop.upstream_rq_retry_overflow") ?? -1)
        up.release()
        open.removeAll()
        await gw.stop()
        return (granted, refused, stats)
    }

    /// No other traffic: Envoy's formula gives max(20% of (r + 1 active), 3) = 3 retries at once.
    func testBudgetFloorIsMinRetryConcurrency() async throws {
        let m = try await measure(budget: RetryBudgetSettings(percent: 20, minRetryConcurrency: 3), holding: 0, flaky: 6)
        XCTAssertEqual(m.granted, 3)
        XCTAssertEqual(m.refused, 3)
        XCTAssertEqual(m.stats.0, 3)
        XCTAssertEqual(m.stats.1, 3)
    }

    /// 30 requests hanging: with r retries outstanding, a decision sees 30 + r + 1 active
    /// requests (its own first try is still on its connection) and allows
    /// max(trunc(0.2 × (31 + r)), 3): r = 0...3 → 6, r = 4...8 → 7. So the 8th retry is refused.
    func testBudgetFollowsActiveRequests() async throws {
        let m = try await measure(budget: RetryBudgetSettings(percent: 20, minRetryConcurrency: 3), holding: 30, flaky: 10)
        XCTAssertEqual(m.granted, 7)
        XCTAssertEqual(m.refused, 3)
        XCTAssertEqual(m.stats.1, 3)
    }

    /// Without a budget the static maxRetries (unlimited by default) lets every retry through.
    func testWithoutBudgetEveryRetryGoes() async throws {
        let m = try await measure(budget: nil, holding: 0, flaky: 6)
        XCTAssertEqual(m.granted, 6)
        XCTAssertEqual(m.refused, 0)
    }

    /// `retries.backoff` 200ms: Envoy's first retry waits a uniform draw below the base
    /// interval; the second below 3 × base (and never past 10 × base).
    func testBackoffTimingMeasured() async throws {
        let up = try RetryProbeUpstream()
        defer { up.release() }
        var retries = RetryPolicyConfig(attempts: 2, retryOn: [.retriableStatusCodes], retriableStatusCodes: [503])
        retries.backoffBase = .milliseconds(200)
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("shop", ports: [up.port])],
            routes: [TestConfig.route("/", to: "shop", retries: retries)]))
        for _ in 0..<16 { XCTAssertEqual(httpRequest(port: gw.port, path: "/fail")?.status, 503) }
        await gw.stop()
        let tries = up.allTries.map { $0.sorted() }
        XCTAssertEqual(tries.count, 16)
        var firstGaps: [Double] = [], secondGaps: [Double] = []
        for t in tries {
            XCTAssertEqual(t.count, 3)
            firstGaps.append(t[1].timeIntervalSince(t[0]))
            secondGaps.append(t[2].timeIntervalSince(t[1]))
        }
        let mean1 = firstGaps.reduce(0, +) / Double(firstGaps.count)
        let mean2 = secondGaps.reduce(0, +) / Double(secondGaps.count)
        print("backoff 200ms: first retry gaps mean \(Int(mean1 * 1000)) ms (max \(Int(firstGaps.max()! * 1000))), "
            + "second mean \(Int(mean2 * 1000)) ms (max \(Int(secondGaps.max()! * 1000)))")
        XCTAssertLessThan(firstGaps.max()!, 0.2 + 0.08, "the first retry waits less than the base interval")
        XCTAssertLessThan(secondGaps.max()!, 0.6 + 0.08, "the second less than 3 × base")
        // Uniform draws: means of about 100 ms and 300 ms (the default 25 ms base would give 12 and 37).
        XCTAssertGreaterThan(mean1, 0.04)
        XCTAssertLessThan(mean1, 0.17)
        XCTAssertGreaterThan(mean2, 0.15)
        XCTAssertGreaterThan(mean2, mean1)
    }
}

/// `splitExternalLocalOriginErrors`: connect failures count toward `consecutiveLocalOriginFailures`
/// and not toward `consecutive5xxErrors`.
final class LocalOriginSplitTests: XCTestCase {
    func testConnectFailuresEjectByTheirOwnCount() async throws {
        let good = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { good.close() }
        let dead = try refusedPort()
        let od = OutlierDetectionSettings(consecutive5xxErrors: 2, interval: .seconds(10), baseEjectionTime: .seconds(30),
                                          maxEjectionPercent: 100, splitExternalLocalOriginErrors: true,
                                          consecutiveLocalOriginFailures: 3)
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("shop", ports: [dead, good.port], policy: TrafficPolicy(outlierDetection: od))],
            routes: [TestConfig.route("/", to: "shop")]))
        var failures = 0
        var sent = 0
        while failures < 2 && sent < 20 {
            if httpRequest(port: gw.port, path: "/")?.status == 503 { failures += 1 }
            sent += 1
        }
        XCTAssertEqual(failures, 2)
        XCTAssertEqual(gw.stat("cluster.shop.outlier_detection.ejections_enforced_total"), 0,
                       "two connect failures: consecutive5xxErrors 2 would have ejected without the split")
        while failures < 3 && sent < 20 {
            if httpRequest(port: gw.port, path: "/")?.status == 503 { failures += 1 }
            sent += 1
        }
        XCTAssertEqual(gw.stat("cluster.shop.outlier_detection.ejections_enforced_consecutive_local_origin_failure"), 1)
        XCTAssertEqual(gw.stat("cluster.shop.outlier_detection.ejections_enforced_consecutive_5xx"), 0)
        XCTAssertTrue(gw.admin("/clusters").contains("shop::127.0.0.1:\(dead)::health_flags::/failed_outlier_check"))
        for _ in 0..<10 { XCTAssertEqual(httpRequest(port: gw.port, path: "/")?.status, 200) }
        await gw.stop()
    }
}
