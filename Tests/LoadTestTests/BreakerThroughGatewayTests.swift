import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

/// The seed's siege test with the real binaries: loadtest against the gateway running the
/// seed's DestinationRule (maxConnections 1, http1MaxPendingRequests 1, maxRequestsPerConnection 1).
final class BreakerThroughGatewayTests: XCTestCase {
    func executable(_ name: String) throws -> URL { try builtExecutable(name) }

    func run(_ exe: URL, _ args: [String]) throws -> String { try runToEnd(exe, args).out }

    func testFailedTransactionsEqualTheGatewaysOverflowCounter() throws {
        let upstream = try CountingServer(delay: .milliseconds(50))
        defer { upstream.close() }
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("cb-\(UUID().uuidString).json")
        try """
            {"serviceEntries":[{"host":"delivery","endpoints":[{"address":"127.0.0.1","port":\(upstream.port)}]}],
             "virtualServices":[{"http":[{"match":[{"uri":{"prefix":"/deliveries"}}],"route":[{"destination":{"host":"delivery"}}]}]}],
             "destinationRules":[{"host":"delivery","trafficPolicy":{"connectionPool":{"tcp":{"maxConnections":1},
               "http":{"http1MaxPendingRequests":1,"maxRequestsPerConnection":1}}}}]}
            """.write(to: config, atomically: true, encoding: .utf8)
        let gw = try OneLoopGateway(config: config)
        // Killed when released: kept to the end of the test.
        defer { withExtendedLifetime(gw) {} }
        let ports = [gw.port, gw.adminPort]
        let url = "http://127.0.0.1:\(ports[0])/deliveries"
        let loadtest = try executable("loadtest")

        func overflow() -> Int {
            let stats = try? String(contentsOf: URL(string: "http://127.0.0.1:\(ports[1])/stats")!, encoding: .utf8)
            let line = stats?.split(separator: "\n").first { $0.hasPrefix("cluster.delivery.upstream_rq_pending_overflow:") }
            return Int(line?.split(separator: " ").last ?? "") ?? -1
        }

        let one = try JSONSerialization.jsonObject(with: Data(try run(loadtest, ["-c", "1", "-t", "2S", "-q", "--json", url]).utf8)) as? [String: Any]
        XCTAssertEqual(one?["failed_transactions"] as? Int, 0, "one user at a time is never shed")
        XCTAssertGreaterThan(one?["transactions"] as? Int ?? 0, 5)
        XCTAssertEqual(overflow(), 0)

        // A fixed number of requests, not -t: at a deadline the requests still in flight are not
        // counted (as in siege), though the gateway may already have shed and counted them.
        let four = try JSONSerialization.jsonObject(with: Data(try run(loadtest, ["-c", "4", "-r", "300", "-q", "--json", url]).utf8)) as? [String: Any]
        XCTAssertEqual(four?["responses"] as? Int, 1200)
        let failed = four?["failed_transactions"] as? Int ?? 0
        XCTAssertGreaterThan(failed, 0)
        // siege's counting: a 503 is a failed transaction, not a hit.
        XCTAssertEqual((four?["transactions"] as? Int ?? 0) + failed, 1200)
        XCTAssertEqual(failed, overflow(), "every failure is a 503 UO the gateway counted")
        XCTAssertEqual((four?["status_codes"] as? [String: Int])?["503"], failed)
    }
}
