import NIOCore
import XCTest
@testable import GatewayCore

final class TokenBucketTests: XCTestCase {
    let config = LocalRateLimitConfig(maxTokens: 5, tokensPerFill: 2, fillInterval: .seconds(1))

    func testStartsFullAndRefillsPerInterval() {
        var b = TokenBucketState(tokens: 5)
        XCTAssertEqual((0..<7).map { _ in b.take(at: 0, config) }.filter { $0 }.count, 5)
        XCTAssertTrue(b.take(at: 1, config))
        XCTAssertTrue(b.take(at: 1, config))
        XCTAssertFalse(b.take(at: 1, config), "two tokens per fill")
        b.refill(to: 100, config)
        XCTAssertEqual(b.tokens, 5, "never above maxTokens")
    }

    func testLimiterSharedAndPerClient() {
        let epoch = NIODeadline.now()
        let shared = LocalRateLimiter(config: config, epoch: epoch)
        let decisions = (0..<8).map { _ in shared.check(client: nil, now: epoch) }
        XCTAssertEqual(decisions.filter(\.allowed).count, 5)
        XCTAssertEqual(decisions.last?.remaining, 0)
        XCTAssertEqual(decisions.last?.resetSeconds, 1)
        XCTAssertTrue(shared.check(client: nil, now: epoch + .milliseconds(1001)).allowed)

        var perClient = config
        perClient.perClient = true
        let limiter = LocalRateLimiter(config: perClient, epoch: epoch)
        XCTAssertEqual((0..<6).map { _ in limiter.check(client: "a", now: epoch) }.filter(\.allowed).count, 5)
        XCTAssertTrue(limiter.check(client: "b", now: epoch).allowed, "another client has its own bucket")
    }
}

final class RetryStateTests: XCTestCase {
    func testRetryOnConditionsFollowEnvoy() {
        let gateway = RetryState(policy: RetryPolicyConfig(attempts: 2, retryOn: [.gatewayError]))
        XCTAssertTrue(gateway.wouldRetry(.response(status: 503)))
        XCTAssertFalse(gateway.wouldRetry(.response(status: 500)))
        XCTAssertTrue(gateway.wouldRetry(.connectFailure))
        XCTAssertTrue(gateway.wouldRetry(.reset))
        XCTAssertFalse(gateway.wouldRetry(.overflow), "Envoy never retries an overflow")

        let connectOnly = RetryState(policy: RetryPolicyConfig(attempts: 2, retryOn: [.connectFailure]))
        XCTAssertTrue(connectOnly.wouldRetry(.connectFailure))
        XCTAssertFalse(connectOnly.wouldRetry(.reset))
        XCTAssertFalse(connectOnly.wouldRetry(.response(status: 503)))

        let istio = RetryState(policy: .istioDefault)
        XCTAssertTrue(istio.wouldRetry(.response(status: 503)), "retriable-status-codes 503")
        XCTAssertFalse(istio.wouldRetry(.response(status: 502)))
        XCTAssertTrue(RetryState(policy: RetryPolicyConfig(attempts: 1, retryOn: [.retriable4xx])).wouldRetry(.response(status: 409)))
        XCTAssertFalse(RetryState(policy: .disabled).wouldRetry(.connectFailure))
    }

    func testGRPCConditionsRetryATrailersOnlyStatus() {
        let istio = RetryState(policy: .istioDefault)
        XCTAssertTrue(istio.isRetriable(.response(status: 200), grpcStatus: 14), "unavailable is in Istio's default")
        XCTAssertTrue(istio.isRetriable(.response(status: 200), grpcStatus: 1), "cancelled too")
        XCTAssertFalse(istio.isRetriable(.response(status: 200), grpcStatus: 4))
        XCTAssertFalse(istio.isRetriable(.response(status: 200)), "no grpc-status, nothing to retry")
        let all = RetryState(policy: RetryPolicyConfig(attempts: 1, retryOn: RetryOn.grpcConditions))
        XCTAssertEqual([0, 1, 2, 4, 5, 8, 13, 14, 16].filter { all.isRetriable(.response(status: 200), grpcStatus: $0) }, [1, 4, 8, 13, 14])
        XCTAssertFalse(RetryOn([.fiveXX, .gatewayError]).hasGRPCConditions)
        XCTAssertTrue(RetryOn([.fiveXX, .internal]).hasGRPCConditions)
    }

    func testGRPCHelpersFollowTheProtocolAndEnvoy() {
        XCTAssertTrue(GRPC.isGRPC(contentType: "application/grpc"))
        XCTAssertTrue(GRPC.isGRPC(contentType: "application/grpc+proto"))
        XCTAssertTrue(GRPC.isGRPC(contentType: "application/grpc;charset=utf-8"))
        XCTAssertFalse(GRPC.isGRPC(contentType: "application/grpc-web"))
        XCTAssertFalse(GRPC.isGRPC(contentType: "application/json"))
        XCTAssertEqual([400, 401, 403, 404, 429, 502, 503, 504, 500, 408].map(GRPC.status(forHTTP:)), [13, 16, 7, 12, 14, 14, 14, 14, 2, 2])
        XCTAssertEqual(GRPC.timeout("300m"), .milliseconds(300))
        XCTAssertEqual(GRPC.timeout("2S"), .seconds(2))
        XCTAssertEqual(GRPC.timeout("1H"), .hours(1))
        XCTAssertEqual(GRPC.timeout("99999999n"), .nanoseconds(99_999_999))
        XCTAssertNil(GRPC.timeout("123456789S"), "at most 8 digits")
        XCTAssertNil(GRPC.timeout("0S"), "zero is no deadline (the route's applies)")
        XCTAssertNil(GRPC.timeout("5s"))
        XCTAssertNil(GRPC.timeout("S"))
        XCTAssertEqual(GRPC.parseStatus("14".utf8), 14)
        XCTAssertNil(GRPC.parseStatus("1x".utf8))
        XCTAssertNil(GRPC.parseStatus("9999999999".utf8))
        XCTAssertEqual(GRPC.percentEncoded("upstream 100% down\n é"), "upstream 100%25 down%0A %C3%A9")
        let (headers, status) = GRPC.localReply(httpStatus: 503, message: "overflow", headers: [("x-envoy-overloaded", "true")])
        XCTAssertEqual(status, 14)
        XCTAssertEqual(headers.first(name: ":status"), "200")
        XCTAssertEqual(headers.first(name: "grpc-status"), "14")
        XCTAssertEqual(headers.first(name: "x-envoy-overloaded"), "true")
        XCTAssertEqual(GRPC.localReply(httpStatus: 504, message: "", headers: [("grpc-status", "4")]).1, 4, "a caller's status wins")
    }

    func testAttemptsAndJitteredBackoff() {
        var state = RetryState(policy: RetryPolicyConfig(attempts: 3, retryOn: [.fiveXX]))
        var random = FastRandom(seed: 7)
        var ceilings: [Int64] = []
        while state.wouldRetry(.response(status: 500)) {
            let n = state.retriesDone + 1
            let backoff = state.nextBackoff(random: &random)
            // Envoy's JitteredBackOffStrategy: the n-th retry draws below (2^n - 1) × base.
            let ceiling: Int64 = ((Int64(1) << Int64(n)) - 1) * 25_000_000
            XCTAssertGreaterThanOrEqual(backoff.nanoseconds, 0)
            XCTAssertLessThan(backoff.nanoseconds, ceiling)
            ceilings.append(ceiling)
        }
        XCTAssertEqual(state.retriesDone, 3)
        XCTAssertEqual(ceilings, [25_000_000, 75_000_000, 175_000_000])
    }
}

final class LimitsAndOutlierTests: XCTestCase {
    func testResourceLimitAndReload() {
        let m = ResourceManager(ConnectionPoolSettings(maxConnections: 1, http1MaxPendingRequests: 2))
        XCTAssertTrue(m.connections.canCreate())
        m.connections.inc()
        XCTAssertFalse(m.connections.canCreate())
        XCTAssertTrue(m.pendingRequests.tryAcquire())
        XCTAssertTrue(m.pendingRequests.tryAcquire())
        XCTAssertFalse(m.pendingRequests.tryAcquire())
        m.update(ConnectionPoolSettings(maxConnections: 2, http1MaxPendingRequests: 2))
        XCTAssertTrue(m.connections.canCreate(), "a reload raises the limit in place")
        m.connections.dec()
        XCTAssertEqual(m.connections.current, 0)
    }

    func testConsecutive5xxEjectsAndSweepReturns() {
        let stats = ClusterStats()
        let settings = OutlierDetectionSettings(consecutive5xxErrors: 3, interval: .seconds(1), baseEjectionTime: .seconds(10),
                                                maxEjectionPercent: 50)
        let od = OutlierDetector(settings: settings, stats: stats)
        let hosts = (0..<4).map { Host(endpoint: Endpoint(address: "127.0.0.1", port: 1000 + $0)) }
        od.update(settings: settings, hosts: hosts)
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        od.record(.response(status: 500), host: hosts[0], settings: settings, now: t0)
        od.record(.response(status: 500), host: hosts[0], settings: settings, now: t0)
        od.record(.response(status: 200), host: hosts[0], settings: settings, now: t0)
        od.record(.response(status: 500), host: hosts[0], settings: settings, now: t0)
        XCTAssertFalse(hosts[0].isEjected, "a success resets the run")
        od.record(.connectFailure, host: hosts[0], settings: settings, now: t0)
        od.record(.timeout, host: hosts[0], settings: settings, now: t0)
        XCTAssertTrue(hosts[0].isEjected, "local failures count as 5xx")
        XCTAssertEqual(od.ejectionsActive, 1)

        for _ in 0..<3 { od.record(.response(status: 503), host: hosts[1], settings: settings, now: t0) }
        XCTAssertTrue(hosts[1].isEjected)
        for _ in 0..<3 { od.record(.response(status: 503), host: hosts[2], settings: settings, now: t0) }
        XCTAssertFalse(hosts[2].isEjected, "maxEjectionPercent 50 of 4 hosts")
        XCTAssertEqual(stats[.outlier_detection_ejections_overflow], 1)

        od.sweep(now: t0 + .seconds(9))
        XCTAssertTrue(hosts[0].isEjected)
        od.sweep(now: t0 + .seconds(10))
        XCTAssertFalse(hosts[0].isEjected)
        XCTAssertEqual(od.ejectionsActive, 0)

        // Second ejection lasts base × 2.
        let t1 = t0 + .seconds(11)
        for _ in 0..<3 { od.record(.response(status: 500), host: hosts[0], settings: settings, now: t1) }
        XCTAssertTrue(hosts[0].isEjected)
        od.sweep(now: t1 + .seconds(19))
        XCTAssertTrue(hosts[0].isEjected)
        od.sweep(now: t1 + .seconds(20))
        XCTAssertFalse(hosts[0].isEjected)
    }

    func testOneHostMayAlwaysBeEjectedAndGatewayErrorsCountSeparately() {
        let stats = ClusterStats()
        let settings = OutlierDetectionSettings(consecutive5xxErrors: 0, consecutiveGatewayErrors: 2, maxEjectionPercent: 10)
        let od = OutlierDetector(settings: settings, stats: stats)
        let hosts = (0..<2).map { Host(endpoint: Endpoint(address: "127.0.0.1", port: 2000 + $0)) }
        od.update(settings: settings, hosts: hosts)
        od.record(.response(status: 500), host: hosts[0], settings: settings, now: .now())
        od.record(.response(status: 500), host: hosts[0], settings: settings, now: .now())
        XCTAssertFalse(hosts[0].isEjected, "500 is not a gateway error and 5xx detection is off")
        od.record(.response(status: 502), host: hosts[0], settings: settings, now: .now())
        od.record(.response(status: 504), host: hosts[0], settings: settings, now: .now())
        XCTAssertTrue(hosts[0].isEjected, "10% of 2 hosts still allows one ejection, as in Envoy")
        XCTAssertEqual(stats[.outlier_detection_ejections_enforced_consecutive_gateway_failure], 1)
    }
}
