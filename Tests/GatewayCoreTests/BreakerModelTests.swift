import Foundation
import XCTest
@testable import GatewayCore

/// The arithmetic of `gateway validate --explain` (the measurement it predicts is checked through
/// the real gateway in LoadTestTests.SweepThroughGatewayTests).
final class BreakerModelTests: XCTestCase {
    let unlimited = ConnectionPoolSettings.unlimited

    /// The seed's breaker (config/circuit-breaker.json): one connection, one pending, a
    /// connection per request. Every request is pending while its own connection opens, so two
    /// clients sending together already need two pending slots: the knee is at 2.
    func testSeedBreakerOneLoop() {
        let m = BreakerModel(maxConnections: 1, http1MaxPendingRequests: 1, maxRequestsPerConnection: 1, endpoints: 1, eventLoops: 1)
        XCTAssertTrue(m.exact)
        XCTAssertEqual(m.least, .init(served: 1, queueFrom: 2, shedFrom: 2))
        XCTAssertEqual(m.ceiling(latency: 0.05), 20...20)
        XCTAssertEqual(m.regime(concurrency: 1), .served)
        XCTAssertEqual(m.regime(concurrency: 2), .shed)
        XCTAssertEqual(m.rate(concurrency: 1, latency: 0.05), 20...20)
        XCTAssertEqual(m.rate(concurrency: 8, latency: 0.05), 20...20)
    }

    /// With keep-alive a freed connection goes straight to the first waiting request, so the
    /// queue overflows only with one client more than served + pending.
    func testKeepAliveQueuesThenSheds() {
        let m = BreakerModel(maxConnections: 4, http1MaxPendingRequests: 2, maxRequestsPerConnection: 0, endpoints: 1, eventLoops: 1)
        XCTAssertEqual(m.least, .init(served: 4, queueFrom: 5, shedFrom: 7))
        XCTAssertEqual(m.regime(concurrency: 4), .served)
        XCTAssertEqual(m.regime(concurrency: 5), .queued)
        XCTAssertEqual(m.regime(concurrency: 6), .queued)
        XCTAssertEqual(m.regime(concurrency: 7), .shed)
        // Little's law: 4 in service, 100 ms each.
        XCTAssertEqual(m.ceiling(latency: 0.1).lowerBound, 40, accuracy: 1e-9)
        XCTAssertEqual(m.rate(concurrency: 3, latency: 0.1).upperBound, 30, accuracy: 1e-9)
    }

    /// A connection per request with more connections than pending slots: clients in step need a
    /// pending slot each while their connections open, so the pending limit is the knee.
    func testConnectionPerRequestPendingBindsBeforeConnections() {
        let m = BreakerModel(maxConnections: 10, http1MaxPendingRequests: 3, maxRequestsPerConnection: 1, endpoints: 1, eventLoops: 1)
        XCTAssertEqual(m.least, .init(served: 10, queueFrom: 11, shedFrom: 4))
    }

    /// http2MaxRequests below maxConnections: active requests bind; the one past them is shed, not queued.
    func testActiveRequestLimitSheds() {
        let m = BreakerModel(maxConnections: 8, http1MaxPendingRequests: 100, http2MaxRequests: 3, endpoints: 1, eventLoops: 1)
        XCTAssertEqual(m.least, .init(served: 3, queueFrom: nil, shedFrom: 4))
        XCTAssertEqual(m.ceiling(latency: 0.05).upperBound, 60, accuracy: 1e-9)
        XCTAssertTrue(m.explain(latency: 0.05).contains { $0.hasPrefix("queue (pending) from: never") })
    }

    /// Each (event loop, endpoint) pool may open its first connection at the limit: with 2 loops
    /// and 2 endpoints up to maxConnections + 3 connections, so the figures become a range.
    func testFirstConnectionExceptionWidensTheRange() {
        let m = BreakerModel(maxConnections: 2, http1MaxPendingRequests: 1, maxRequestsPerConnection: 0, endpoints: 2, eventLoops: 2)
        XCTAssertFalse(m.exact)
        XCTAssertEqual(m.least, .init(served: 2, queueFrom: 3, shedFrom: 4))
        XCTAssertEqual(m.most, .init(served: 5, queueFrom: 6, shedFrom: 7))
        XCTAssertEqual(m.ceiling(latency: 0.05), 40...100)
        XCTAssertEqual(m.rate(concurrency: 3, latency: 0.05), 40...60)
        XCTAssertTrue(m.explain(latency: 0.05).contains("knee (first 503 UO) at: concurrency 4 to 7"))
    }

    func testUnlimitedNeverSheds() {
        let m = BreakerModel(ConnectionPoolSettings(), endpoints: 1, eventLoops: 4)
        XCTAssertEqual(m.least.shedFrom, unlimited + unlimited + 1)
        XCTAssertEqual(m.regime(concurrency: 10_000), .served)
        XCTAssertEqual(m.explain(latency: 0.05).last, "no limit is set: requests are never queued nor shed by the breaker")
    }

    func testLatencySpellings() {
        XCTAssertEqual(BreakerModel.parseLatency("50ms"), 0.05)
        XCTAssertEqual(BreakerModel.parseLatency("0.2s"), 0.2)
        XCTAssertEqual(BreakerModel.parseLatency("50"), 0.05)
        XCTAssertNil(BreakerModel.parseLatency("fast"))
        XCTAssertNil(BreakerModel.parseLatency("0ms"))
        XCTAssertNil(BreakerModel.parseLatency("-5"))
    }

    /// `validate --explain` on the shipped breaker config names the knee per cluster.
    func testExplainOfTheShippedBreakerConfig() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("config/circuit-breaker.json").path
        let text = ConfigReport.explain(try ConfigLoader.load(contentsOf: path), latency: 0.05, eventLoops: 1)
        let delivery = text.components(separatedBy: "cluster delivery\n")[1].components(separatedBy: "\ncluster ")[0]
        XCTAssertTrue(delivery.contains("knee (first 503 UO) at: concurrency 2\n"), delivery)
        XCTAssertTrue(delivery.contains("throughput ceiling (Little's law, served at once / latency): 20.0 req/s"), delivery)
        XCTAssertTrue(text.contains("cluster inventory\n  limits: maxConnections unlimited"), text)
    }
}
