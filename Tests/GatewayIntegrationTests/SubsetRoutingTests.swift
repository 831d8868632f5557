import Foundation
import NIOPosix
import XCTest

/// DestinationRule subsets over real sockets: upstreams labelled v1/v2/v3 behind one host, the
/// gateway process loading Istio's own bookinfo objects as `kubectl get -o json` prints them.
final class SubsetRoutingTests: XCTestCase {
    /// config/examples/<name> with only the ServiceEntry's endpoint ports pointed at this test's
    /// upstreams: the DestinationRule and VirtualService go in byte for byte as Istio ships them.
    func example(_ name: String, ports: [String: Int]) throws -> String {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("config/examples/\(name)")
        var text = try String(contentsOf: url, encoding: .utf8)
        for (version, port) in ports {
            let fixed = ["v1": 9081, "v2": 9082, "v3": 9083][version]!
            text = text.replacingOccurrences(of: "\"http\": \(fixed)", with: "\"http\": \(port)")
        }
        return text
    }

    func upstreams() throws -> [String: TestUpstream] {
        var out: [String: TestUpstream] = [:]
        for v in ["v1", "v2", "v3"] {
            out[v] = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "reviews-\(v)"))
        }
        return out
    }

    /// bookinfo's virtual-service-reviews-90-10: 10,000 requests split 90/10 between v1 and v2
    /// within ±2 %, none to v3; stats carry Envoy's subset cluster names.
    func testCanarySplitNinetyTenOverTenThousandRequests() throws {
        let up = try upstreams()
        defer { up.values.forEach { $0.close() } }
        let gw = try GatewayProcess(config: example("bookinfo-reviews-90-10.json", ports: up.mapValues(\.port)),
                                    extraArguments: ["--access-log", "off"])

        let total = 10_000
        let c = try RawConnection(port: gw.port, timeout: 10)
        var bodies: [String: Int] = [:]
        // 100 requests per write: one keep-alive connection, pipelined, to keep the run short.
        for _ in 0..<(total / 100) {
            c.send(String(repeating: "GET /reviews/0 HTTP/1.1\r\nHost: reviews\r\n\r\n", count: 100))
            for _ in 0..<100 {
                guard let r = c.readResponse() else { return XCTFail("connection ended early") }
                XCTAssertEqual(r.status, 200)
                bodies[r.body, default: 0] += 1
            }
        }
        let v1 = up["v1"]!.requests.load(ordering: .relaxed), v2 = up["v2"]!.requests.load(ordering: .relaxed)
        XCTAssertEqual(v1 + v2, total)
        XCTAssertEqual(up["v3"]!.requests.load(ordering: .relaxed), 0)
        XCTAssertEqual(bodies["reviews-v1"], v1, "each answer came from the upstream that counted it")
        let share = Double(v2) / Double(total)
        XCTAssertEqual(share, 0.10, accuracy: 0.02, "v2 got \(v2) of \(total)")

        let stats = gw.admin("/stats")?.body ?? ""
        XCTAssertTrue(stats.contains("cluster.outbound|9080|v1|reviews.upstream_rq_total: \(v1)\n"), stats)
        XCTAssertTrue(stats.contains("cluster.outbound|9080|v2|reviews.upstream_rq_total: \(v2)\n"), stats)
        XCTAssertTrue(stats.contains("cluster.outbound|9080|v3|reviews.upstream_rq_total: 0\n"), stats)
        let clusters = gw.admin("/clusters")?.body ?? ""
        XCTAssertTrue(clusters.contains("outbound|9080|v2|reviews::127.0.0.1:\(up["v2"]!.port)::rq_total::\(v2)\n"), clusters)
        XCTAssertFalse(clusters.contains("outbound|9080|v2|reviews::127.0.0.1:\(up["v1"]!.port)::"),
                       "a subset cluster holds only the endpoints its labels select")
    }

    /// bookinfo's virtual-service-reviews-jason-v2-v3: `end-user: jason` goes to v2, everyone
    /// else to v3, as Istio's request-routing task describes; v1 sees nothing.
    func testHeaderBasedRoutingToSubsets() throws {
        let up = try upstreams()
        defer { up.values.forEach { $0.close() } }
        let gw = try GatewayProcess(config: example("bookinfo-reviews-jason-v2-v3.json", ports: up.mapValues(\.port)))
        for _ in 0..<20 {
            XCTAssertEqual(httpRequest(port: gw.port, path: "/reviews/0", headers: ["end-user": "jason"])?.body, "reviews-v2")
            XCTAssertEqual(httpRequest(port: gw.port, path: "/reviews/0", headers: ["end-user": "json"])?.body, "reviews-v3")
            XCTAssertEqual(httpRequest(port: gw.port, path: "/reviews/0")?.body, "reviews-v3")
        }
        XCTAssertEqual(up["v1"]!.requests.load(ordering: .relaxed), 0)
        XCTAssertEqual(up["v2"]!.requests.load(ordering: .relaxed), 20)
        XCTAssertEqual(up["v3"]!.requests.load(ordering: .relaxed), 40)
        // An HTTP/1.0 request without Host reaches the upstream with the service's name as its
        // Host, not the subset cluster's.
        let c = try RawConnection(port: gw.port, timeout: 10)
        c.send("GET /reviews/1 HTTP/1.0\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.body, "reviews-v3")
        let last = up["v3"]!.seenRequests.last { $0.uri == "/reviews/1" }
        XCTAssertEqual(last?.headers.first { $0.0.lowercased() == "host" }?.1, "reviews")
    }

    /// A subset's trafficPolicy replaces the rule's connection pool for that subset only: v1
    /// keeps one connection per request (maxRequestsPerConnection 1), v2 reuses one.
    func testSubsetTrafficPolicyOverridesTheRulesPolicy() throws {
        let up = try upstreams()
        defer { up.values.forEach { $0.close() } }
        let config = """
            {"serviceEntries":[{"hosts":["reviews"],"ports":[{"name":"http","number":9080}],"endpoints":[
              {"address":"127.0.0.1","ports":{"http":\(up["v1"]!.port)},"labels":{"version":"v1"}},
              {"address":"127.0.0.1","ports":{"http":\(up["v2"]!.port)},"labels":{"version":"v2"}}]}],
             "destinationRules":[{"host":"reviews",
               "trafficPolicy":{"connectionPool":{"http":{"maxRequestsPerConnection":1}}},
               "subsets":[{"name":"v1","labels":{"version":"v1"}},
                          {"name":"v2","labels":{"version":"v2"},
                           "trafficPolicy":{"connectionPool":{"http":{"maxRequestsPerConnection":0}}}}]}],
             "virtualServices":[{"http":[
               {"match":[{"uri":{"prefix":"/v1"}}],"route":[{"destination":{"host":"reviews","subset":"v1"}}]},
               {"match":[{"uri":{"prefix":"/v2"}}],"route":[{"destination":{"host":"reviews","subset":"v2"}}]}]}]}
            """
        let gw = try GatewayProcess(config: config)
        let c = try RawConnection(port: gw.port, timeout: 10)
        for path in ["/v1", "/v2"] {
            for _ in 0..<10 {
                c.send("GET \(path) HTTP/1.1\r\nHost: reviews\r\n\r\n")
                XCTAssertEqual(c.readResponse()?.status, 200)
            }
        }
        XCTAssertEqual(up["v1"]!.connections.load(ordering: .relaxed), 10, "the rule's maxRequestsPerConnection 1")
        XCTAssertLessThanOrEqual(up["v2"]!.connections.load(ordering: .relaxed), 2, "the subset's own pool keeps connections")
    }
}
