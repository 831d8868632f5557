import Foundation
import GatewayCore
import NIOCore
import NIOPosix
import XCTest

class OutlierDetectionTests: XCTestCase {
    /// What the client speaks; the subclasses below run every scenario over HTTP/2 (h2c), TLS and HTTP/2 over TLS.
    class var clientProtocol: ClientProtocol { .http1 }

    func testFailingEndpointIsEjectedThenReturns() async throws {
        let good = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        let bad = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(status: 500))
        defer { good.close(); bad.close() }
        let od = OutlierDetectionSettings(consecutive5xxErrors: 2, interval: .milliseconds(200),
                                          baseEjectionTime: .seconds(1), maxEjectionPercent: 100)
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("order", ports: [good.port, bad.port], policy: TrafficPolicy(outlierDetection: od))],
            routes: [TestConfig.route("/orders", to: "order")]), over: Self.clientProtocol)

        var fiveHundreds = 0
        for _ in 0..<20 {
            let r = gw.request(path: "/orders")
            XCTAssertNotNil(r)
            if r?.status == 500 { fiveHundreds += 1 } else { XCTAssertEqual(r?.status, 200) }
        }
        XCTAssertLessThanOrEqual(fiveHundreds, 2, "at most consecutive5xxErrors failures reach clients")
        XCTAssertGreaterThan(fiveHundreds, 0)
        XCTAssertTrue(gw.admin("/clusters").contains("order::127.0.0.1:\(bad.port)::health_flags::/failed_outlier_check"))
        XCTAssertEqual(gw.stat("cluster.order.outlier_detection.ejections_active"), 1)
        XCTAssertEqual(gw.stat("cluster.order.outlier_detection.ejections_enforced_total"), 1)

        // baseEjectionTime 1s × 1 ejection, swept every 200 ms.
        try await Task.sleep(nanoseconds: 1_500_000_000)
        XCTAssertTrue(gw.admin("/clusters").contains("order::127.0.0.1:\(bad.port)::health_flags::healthy"))
        XCTAssertEqual(gw.stat("cluster.order.outlier_detection.ejections_active"), 0)
        await gw.stop()
    }

    func testAllEjectedAnswersNoHealthyUpstream() async throws {
        let bad = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(status: 503))
        defer { bad.close() }
        let od = OutlierDetectionSettings(consecutive5xxErrors: 1, interval: .seconds(1), baseEjectionTime: .seconds(30),
                                          maxEjectionPercent: 100)
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("delivery", ports: [bad.port], policy: TrafficPolicy(outlierDetection: od))],
            routes: [TestConfig.route("/deliveries", to: "delivery")]), over: Self.clientProtocol)
        XCTAssertEqual(gw.request(path: "/deliveries")?.status, 503)
        let r = gw.request(path: "/deliveries")
        XCTAssertEqual(r?.status, 503)
        XCTAssertEqual(r?.body, "no healthy upstream")
        XCTAssertEqual(bad.requests.load(ordering: .relaxed), 1)
        await gw.stop()
    }
}

class RetryAndTimeoutTests: XCTestCase {
    /// What the client speaks; the subclasses below run every scenario over HTTP/2 (h2c), TLS and HTTP/2 over TLS.
    class var clientProtocol: ClientProtocol { .http1 }

    func testRetriesRouteAroundARefusingEndpoint() async throws {
        let good = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { good.close() }
        let dead = try refusedPort()
        let retries = RetryPolicyConfig(attempts: 3, retryOn: [.connectFailure, .gatewayError])
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("delivery", ports: [dead, good.port])],
            routes: [TestConfig.route("/deliveries", to: "delivery", retries: retries)]), over: Self.clientProtocol)
        for _ in 0..<20 {
            XCTAssertEqual(gw.request(path: "/deliveries")?.status, 200)
        }
        XCTAssertGreaterThan(gw.stat("cluster.delivery.upstream_rq_retry") ?? 0, 0)
        XCTAssertGreaterThan(gw.stat("cluster.delivery.upstream_cx_connect_fail") ?? 0, 0)
        XCTAssertEqual(good.requests.load(ordering: .relaxed), 20)
        await gw.stop()
    }

    func testRetriedPostReplaysItsBody() async throws {
        let flaky = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(status: 503))
        let good = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(status: 201))
        defer { flaky.close(); good.close() }
        let retries = RetryPolicyConfig(attempts: 2, retryOn: [.gatewayError])
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("order", ports: [flaky.port, good.port])],
            routes: [TestConfig.route("/orders", to: "order", retries: retries)]), over: Self.clientProtocol)
        for i in 0..<4 {
            let r = gw.request(method: "POST", path: "/orders", body: "{\"qty\":\(i)}")
            XCTAssertEqual(r?.status, 201)
        }
        XCTAssertEqual(good.seenRequests.map(\.body), (0..<4).map { "{\"qty\":\($0)}" })
        await gw.stop()
    }

    func testRouteTimeoutAnswers504Promptly() async throws {
        let slow = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(delay: .milliseconds(1500)))
        defer { slow.close() }
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("delivery", ports: [slow.port])],
            routes: [TestConfig.route("/deliveries", to: "delivery", timeout: .milliseconds(300))]), over: Self.clientProtocol)
        let started = Date()
        let r = gw.request(path: "/deliveries")
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertEqual(r?.status, 504)
        XCTAssertEqual(r?.body, "upstream request timeout")
        XCTAssertGreaterThanOrEqual(elapsed, 0.29)
        XCTAssertLessThan(elapsed, 0.8, "answers at the route timeout, not when the upstream does")
        XCTAssertEqual(gw.stat("cluster.delivery.upstream_rq_timeout"), 1)
        await gw.stop()
    }

    func testPerTryTimeoutRetriesElsewhere() async throws {
        let slow = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(delay: .seconds(2)))
        let fast = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { slow.close(); fast.close() }
        let retries = RetryPolicyConfig(attempts: 2, perTryTimeout: .milliseconds(200), retryOn: [.gatewayError])
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("delivery", ports: [slow.port, fast.port])],
            routes: [TestConfig.route("/deliveries", to: "delivery", timeout: .seconds(3), retries: retries)]), over: Self.clientProtocol)
        for _ in 0..<4 { XCTAssertEqual(gw.request(path: "/deliveries")?.status, 200) }
        XCTAssertGreaterThan(gw.stat("cluster.delivery.upstream_rq_per_try_timeout") ?? 0, 0)
        await gw.stop()
    }
}

class LocalRateLimitTests: XCTestCase {
    /// What the client speaks; the subclasses below run every scenario over HTTP/2 (h2c), TLS and HTTP/2 over TLS.
    class var clientProtocol: ClientProtocol { .http1 }

    func testBucketOfFiveLetsFiveThrough() async throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let rl = LocalRateLimitConfig(maxTokens: 5, tokensPerFill: 5, fillInterval: .seconds(60))
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("inventory", ports: [up.port])],
            routes: [TestConfig.route("/inventories", to: "inventory", name: "inv", rateLimit: rl)]), over: Self.clientProtocol)
        let results = (0..<20).map { _ in gw.request(path: "/inventories") }
        XCTAssertEqual(results.filter { $0?.status == 200 }.count, 5)
        let limited = results.compactMap { $0 }.filter { $0.status == 429 }
        XCTAssertEqual(limited.count, 15)
        for r in limited {
            XCTAssertNotNil(r.header("retry-after"))
            XCTAssertEqual(r.header("ratelimit-limit"), "5")
            XCTAssertEqual(r.header("ratelimit-remaining"), "0")
            XCTAssertNotNil(r.header("ratelimit-reset"))
        }
        XCTAssertEqual(gw.stat("route.inv.local_rate_limit.rate_limited"), 15)
        XCTAssertEqual(up.requests.load(ordering: .relaxed), 5)
        await gw.stop()
    }
}

class FaultInjectionTests: XCTestCase {
    /// What the client speaks; the subclasses below run every scenario over HTTP/2 (h2c), TLS and HTTP/2 over TLS.
    class var clientProtocol: ClientProtocol { .http1 }

    func testAbortAndDelay() async throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let fault = FaultConfig(delay: .init(fixedDelay: .milliseconds(200), percentage: 100),
                                abort: .init(httpStatus: 418, percentage: 100))
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("mypage", ports: [up.port])],
            routes: [TestConfig.route("/mypages", to: "mypage", fault: fault)]), over: Self.clientProtocol)
        let started = Date()
        let r = gw.request(path: "/mypages")
        XCTAssertEqual(r?.status, 418)
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.19)
        XCTAssertEqual(up.requests.load(ordering: .relaxed), 0)
        await gw.stop()
    }
}

final class OutlierDetectionOverHTTP2Tests: OutlierDetectionTests {
    override class var clientProtocol: ClientProtocol { .h2c }
    // Inherited tests are not discovered on Linux: each is named here.
    override func testFailingEndpointIsEjectedThenReturns() async throws { try await super.testFailingEndpointIsEjectedThenReturns() }
    override func testAllEjectedAnswersNoHealthyUpstream() async throws { try await super.testAllEjectedAnswersNoHealthyUpstream() }
}

final class OutlierDetectionOverTLSTests: OutlierDetectionTests {
    override class var clientProtocol: ClientProtocol { .https }
    // Inherited tests are not discovered on Linux: each is named here.
    override func testFailingEndpointIsEjectedThenReturns() async throws { try await super.testFailingEndpointIsEjectedThenReturns() }
    override func testAllEjectedAnswersNoHealthyUpstream() async throws { try await super.testAllEjectedAnswersNoHealthyUpstream() }
}

final class OutlierDetectionOverHTTP2TLSTests: OutlierDetectionTests {
    override class var clientProtocol: ClientProtocol { .h2 }
    // Inherited tests are not discovered on Linux: each is named here.
    override func testFailingEndpointIsEjectedThenReturns() async throws { try await super.testFailingEndpointIsEjectedThenReturns() }
    override func testAllEjectedAnswersNoHealthyUpstream() async throws { try await super.testAllEjectedAnswersNoHealthyUpstream() }
}

final class RetryAndTimeoutOverHTTP2Tests: RetryAndTimeoutTests {
    override class var clientProtocol: ClientProtocol { .h2c }
    // Inherited tests are not discovered on Linux: each is named here.
    override func testRetriesRouteAroundARefusingEndpoint() async throws { try await super.testRetriesRouteAroundARefusingEndpoint() }
    override func testRetriedPostReplaysItsBody() async throws { try await super.testRetriedPostReplaysItsBody() }
    override func testRouteTimeoutAnswers504Promptly() async throws { try await super.testRouteTimeoutAnswers504Promptly() }
    override func testPerTryTimeoutRetriesElsewhere() async throws { try await super.testPerTryTimeoutRetriesElsewhere() }
}

final class RetryAndTimeoutOverTLSTests: RetryAndTimeoutTests {
    override class var clientProtocol: ClientProtocol { .https }
    // Inherited tests are not discovered on Linux: each is named here.
    override func testRetriesRouteAroundARefusingEndpoint() async throws { try await super.testRetriesRouteAroundARefusingEndpoint() }
    override func testRetriedPostReplaysItsBody() async throws { try await super.testRetriedPostReplaysItsBody() }
    override func testRouteTimeoutAnswers504Promptly() async throws { try await super.testRouteTimeoutAnswers504Promptly() }
    override func testPerTryTimeoutRetriesElsewhere() async throws { try await super.testPerTryTimeoutRetriesElsewhere() }
}

final class RetryAndTimeoutOverHTTP2TLSTests: RetryAndTimeoutTests {
    override class var clientProtocol: ClientProtocol { .h2 }
    // Inherited tests are not discovered on Linux: each is named here.
    override func testRetriesRouteAroundARefusingEndpoint() async throws { try await super.testRetriesRouteAroundARefusingEndpoint() }
    override func testRetriedPostReplaysItsBody() async throws { try await super.testRetriedPostReplaysItsBody() }
    override func testRouteTimeoutAnswers504Promptly() async throws { try await super.testRouteTimeoutAnswers504Promptly() }
    override func testPerTryTimeoutRetriesElsewhere() async throws { try await super.testPerTryTimeoutRetriesElsewhere() }
}

final class LocalRateLimitOverHTTP2Tests: LocalRateLimitTests {
    override class var clientProtocol: ClientProtocol { .h2c }
    // Inherited tests are not discovered on Linux: each is named here.
    override func testBucketOfFiveLetsFiveThrough() async throws { try await super.testBucketOfFiveLetsFiveThrough() }
}

final class LocalRateLimitOverTLSTests: LocalRateLimitTests {
    override class var clientProtocol: ClientProtocol { .https }
    // Inherited tests are not discovered on Linux: each is named here.
    override func testBucketOfFiveLetsFiveThrough() async throws { try await super.testBucketOfFiveLetsFiveThrough() }
}

final class LocalRateLimitOverHTTP2TLSTests: LocalRateLimitTests {
    override class var clientProtocol: ClientProtocol { .h2 }
    // Inherited tests are not discovered on Linux: each is named here.
    override func testBucketOfFiveLetsFiveThrough() async throws { try await super.testBucketOfFiveLetsFiveThrough() }
}

final class FaultInjectionOverHTTP2Tests: FaultInjectionTests {
    override class var clientProtocol: ClientProtocol { .h2c }
    // Inherited tests are not discovered on Linux: each is named here.
    override func testAbortAndDelay() async throws { try await super.testAbortAndDelay() }
}

final class FaultInjectionOverTLSTests: FaultInjectionTests {
    override class var clientProtocol: ClientProtocol { .https }
    // Inherited tests are not discovered on Linux: each is named here.
    override func testAbortAndDelay() async throws { try await super.testAbortAndDelay() }
}

final class FaultInjectionOverHTTP2TLSTests: FaultInjectionTests {
    override class var clientProtocol: ClientProtocol { .h2 }
    // Inherited tests are not discovered on Linux: each is named here.
    override func testAbortAndDelay() async throws { try await super.testAbortAndDelay() }
}
