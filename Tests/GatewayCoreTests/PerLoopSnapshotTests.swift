import Logging
import NIOCore
import NIOPosix
import XCTest
@testable import GatewayCore

/// Every event loop serves from its own copy of the config's routes and cluster snapshots (a
/// request's reference counts then stay on its core), over one shared set of clusters, hosts,
/// stats and rate limiters (so counters, ejections and tokens are the gateway's, not a loop's).
final class PerLoopSnapshotTests: XCTestCase {
    static let json = """
    {"listener": {"address": "127.0.0.1", "port": 0}, "admin": {"address": "127.0.0.1", "port": 0},
     "serviceEntries": [{"host": "svc", "endpoints": [{"address": "127.0.0.1", "port": 1}, {"address": "127.0.0.1", "port": 2}]}],
     "virtualServices": [{"http": [{"name": "r", "route": [{"destination": {"host": "svc"}}],
       "localRateLimit": {"tokenBucket": {"maxTokens": 5, "tokensPerFill": 5, "fillInterval": "1s"}}}]}],
     "destinationRules": [{"host": "svc", "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}}]}
    """

    func testEachLoopHasItsOwnRoutesAndClustersOverSharedState() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        defer { try? group.syncShutdownGracefully() }
        let config = try ConfigLoader.decode(Array(Self.json.utf8))
        let runtime = try GatewayRuntime(config: config, configPath: nil, loadConfig: { _ in throw ReloadError("none") },
                                         group: group, accessLogFD: nil, logger: Logger(label: "per-loop-test"))
        try check(runtime, version: 1)
        // A reload (the same config, so every shared part is kept) hands each loop a new copy.
        let shared = runtime.snapshot
        guard case .success(let version) = runtime.apply(config) else { return XCTFail("the reload is refused") }
        XCTAssertEqual(version, 2)
        try check(runtime, version: 2)
        XCTAssertTrue(runtime.snapshot.clusters["svc"]!.cluster === shared.clusters["svc"]!.cluster, "a reload keeps the cluster")
        XCTAssertTrue(runtime.snapshot.routes.routes[0].stats === shared.routes.routes[0].stats, "and the route's stats")
    }

    private func check(_ runtime: GatewayRuntime, version: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        // Each loop's own copy, read on its loop (after the install a reload queued there).
        let perLoop = try runtime.workers.map { w in try w.eventLoop.submit { w.snapshot }.wait() }
        XCTAssertEqual(perLoop.count, 3, file: file, line: line)
        let views = [runtime.snapshot] + perLoop
        for v in views {
            XCTAssertEqual(v.version, version, file: file, line: line)
            let route = v.routes.routes[0]
            XCTAssertTrue(route.destinations[0].cluster === v.clusters["svc"]!, "a route points at its own snapshot's cluster",
                          file: file, line: line)
        }
        for (i, a) in views.enumerated() {
            for b in views[(i + 1)...] {
                let (ra, rb) = (a.routes.routes[0], b.routes.routes[0])
                let (ca, cb) = (a.clusters["svc"]!, b.clusters["svc"]!)
                XCTAssertFalse(ra === rb, "no two loops share a route object", file: file, line: line)
                XCTAssertFalse(ca === cb, "nor a cluster snapshot", file: file, line: line)
                XCTAssertTrue(ra.stats === rb.stats, "one set of route stats", file: file, line: line)
                XCTAssertTrue(ra.rateLimiter! === rb.rateLimiter!, "one token bucket", file: file, line: line)
                XCTAssertTrue(ca.cluster === cb.cluster, "one cluster: breakers, stats, outlier detection", file: file, line: line)
                XCTAssertNotNil(ca.hashBalancer, file: file, line: line)
                XCTAssertTrue(ca.hashBalancer === cb.hashBalancer, "one hash ring per config, however many loops", file: file, line: line)
                XCTAssertEqual(ca.hosts.count, 2, file: file, line: line)
                for (ha, hb) in zip(ca.hosts, cb.hosts) {
                    XCTAssertTrue(ha === hb, "one host per endpoint: its counters and ejection", file: file, line: line)
                }
            }
        }
    }
}
