import Foundation
import NIOCore
import NIOPosix
import XCTest

/// Latency histograms through the real gateway process: upstreams with known delays, load from
/// the real `loadtest`, and the gateway's `/stats?format=json` quantiles and
/// `/stats/prometheus` buckets checked against what the client measured and the upstreams saw.
final class HistogramThroughGatewayTests: XCTestCase {
    func run(_ exe: URL, _ args: [String]) throws -> String {
        String(decoding: try outputOf(exe, args), as: UTF8.self)
    }

    /// `(cumulative P50, P99)` of a histogram in `/stats?format=json`, Envoy's layout.
    func quantiles(_ json: String, _ name: String) throws -> (p50: Double, p99: Double, supported: [Double]) {
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let stats = try XCTUnwrap(root["stats"] as? [[String: Any]])
        let histograms = try XCTUnwrap(stats.compactMap { $0["histograms"] as? [String: Any] }.first)
        let supported = try XCTUnwrap(histograms["supported_quantiles"] as? [Double])
        let computed = try XCTUnwrap(histograms["computed_quantiles"] as? [[String: Any]])
        let entry = try XCTUnwrap(computed.first { $0["name"] as? String == name }, "\(name) in \(json)")
        let values = try XCTUnwrap(entry["values"] as? [[String: Any]])
        XCTAssertEqual(values.count, supported.count)
        let p50 = try XCTUnwrap(values[supported.firstIndex(of: 50)!]["cumulative"] as? Double)
        let p99 = try XCTUnwrap(values[supported.firstIndex(of: 99)!]["cumulative"] as? Double)
        return (p50, p99, supported)
    }

    /// A Prometheus histogram family's lines for one label set: `le` → count, `_sum`, `_count`.
    func prometheusHistogram(_ text: String, _ family: String, _ label: String)
        -> (buckets: [(le: String, count: Int)], sum: Double?, count: Int?)
    {
        var buckets: [(String, Int)] = []
        var sum: Double?
        var count: Int?
        for line in text.split(separator: "\n") where line.hasPrefix(family) && line.contains(label) {
            let parts = line.split(separator: " ")
            guard parts.count == 2 else { continue }
            let value = String(parts[1])
            if line.hasPrefix(family + "_bucket{"), let r = line.range(of: "le=\"") {
                let le = line[r.upperBound...].prefix { $0 != "\"" }
                buckets.append((String(le), Int(value) ?? -1))
            } else if line.hasPrefix(family + "_sum{") {
                sum = Double(value)
            } else if line.hasPrefix(family + "_count{") {
                count = Int(value)
            }
        }
        return (buckets, sum, count)
    }

    /// The bound of Envoy's default buckets a value falls under (Prometheus' `le`).
    func envoyBucket(_ ms: Double) -> Double {
        [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000].first { ms <= $0 } ?? .infinity
    }

    func testQuantilesAgreeWithTheClientAndBucketsAddUpToTheRequests() throws {
        let group = MultiThreadedEventLoopGroup.singleton
        // Two upstreams at 20 ms and one at 80 ms behind round robin: about 2/3 of the requests
        // take 20 ms, 1/3 take 80 ms, so p50 is in the 20 ms mass and p99 in the 80 ms one.
        let fastA = try TestUpstream(group: group, .init(delay: .milliseconds(20)))
        let fastB = try TestUpstream(group: group, .init(delay: .milliseconds(20)))
        let slow = try TestUpstream(group: group, .init(delay: .milliseconds(80)))
        defer { fastA.close(); fastB.close(); slow.close() }
        let endpoints = [fastA, fastB, slow].map { "{\"address\":\"127.0.0.1\",\"port\":\($0.port)}" }
        let gw = try GatewayProcess(config: """
            {"serviceEntries":[{"host":"svc","endpoints":[\(endpoints.joined(separator: ","))]}],
             "destinationRules":[{"host":"svc","trafficPolicy":{"loadBalancer":{"simple":"ROUND_ROBIN"}}}],
             "virtualServices":[{"http":[{"name":"orders","match":[{"uri":{"prefix":"/orders"}}],
                                          "route":[{"destination":{"host":"svc"}}]}]}]}
            """, extraArguments: ["--access-log", "off"])

        // Nothing recorded yet: Envoy's line for an unused histogram, null quantiles in JSON.
        XCTAssertTrue(gw.admin("/stats")?.body.contains("cluster.svc.upstream_rq_time: No recorded values\n") == true)

        let users = 4, reps = 60
        let n = users * reps
        let loadtest = try builtExecutable("loadtest")
        let report = try run(loadtest, ["-c", "\(users)", "-r", "\(reps)", "-b", "-q", "--json",
                                        "http://127.0.0.1:\(gw.port)/orders"])
        let summary = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(report.utf8)) as? [String: Any], report)
        XCTAssertEqual(summary["transactions"] as? Int, n, report)
        let latency = try XCTUnwrap(summary["latency_ms"] as? [String: Double], report)
        let clientP50 = try XCTUnwrap(latency["p50"]), clientP99 = try XCTUnwrap(latency["p99"])
        let fast = fastA.requests.load(ordering: .relaxed) + fastB.requests.load(ordering: .relaxed)
        let slowCount = slow.requests.load(ordering: .relaxed)
        XCTAssertEqual(fast + slowCount, n)

        // JSON: Envoy's supported quantiles; the gateway's p50/p99 agree with the client's
        // HdrHistogram within the bins' resolution (1 ms at 20 ms and 80 ms, 2 significant
        // digits) plus the loopback hop the gateway does not see.
        let json = try XCTUnwrap(gw.admin("/stats?format=json")?.body)
        let downstream = try quantiles(json, "http.ingress.downstream_rq_time")
        XCTAssertEqual(downstream.supported, [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100])
        let upstream = try quantiles(json, "cluster.svc.upstream_rq_time")
        let route = try quantiles(json, "route.orders.upstream_rq_time")
        let connect = try quantiles(json, "cluster.svc.upstream_cx_connect_ms")
        print("""
            histogram agreement over \(n) requests (\(fast) at 20 ms, \(slowCount) at 80 ms): \
            client p50 \(clientP50) p99 \(clientP99); gateway downstream_rq_time p50 \(downstream.p50) \
            p99 \(downstream.p99); upstream_rq_time p50 \(upstream.p50) p99 \(upstream.p99); \
            route p50 \(route.p50) p99 \(route.p99); connect p50 \(connect.p50)
            """)
        for (gateway, client) in [(downstream.p50, clientP50), (downstream.p99, clientP99)] {
            XCTAssertEqual(envoyBucket(gateway), envoyBucket(client), "gateway \(gateway) ms, client \(client) ms")
            XCTAssertEqual(gateway, client, accuracy: max(2, client * 0.05), "gateway \(gateway) ms, client \(client) ms")
        }
        // What the upstreams' delays make them, give or take a busy machine (which can only add).
        XCTAssertEqual(downstream.p50, 20, accuracy: 5)
        XCTAssertGreaterThanOrEqual(downstream.p99, 70)
        XCTAssertLessThanOrEqual(downstream.p99, 160)
        // The upstream and route times are the same tries, seen from the router.
        XCTAssertEqual(upstream.p50, route.p50, accuracy: 0.001)
        XCTAssertEqual(upstream.p99, route.p99, accuracy: 0.001)
        XCTAssertLessThanOrEqual(upstream.p50, downstream.p50 + 0.001)

        // Prometheus: cumulative buckets over Envoy's bounds, `+Inf` = `_count` = requests. No
        // request is faster than its upstream's delay, so nothing is under 10 ms and only the
        // 20 ms upstreams' answers can be under 50 ms; on a loaded machine some take longer
        // than 25 ms (or 100 ms), hence the 20% allowance there.
        let prom = try XCTUnwrap(gw.admin("/stats/prometheus")?.body)
        XCTAssertTrue(prom.contains("# TYPE envoy_cluster_upstream_rq_time histogram\n"))
        for (family, label) in [
            ("envoy_http_downstream_rq_time", "envoy_http_conn_manager_prefix=\"ingress\""),
            ("envoy_cluster_upstream_rq_time", "envoy_cluster_name=\"svc\""),
            ("envoy_route_upstream_rq_time", "envoy_route_name=\"orders\""),
        ] {
            let h = prometheusHistogram(prom, family, label)
            XCTAssertEqual(h.buckets.map(\.le), ["0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000",
                                                 "10000", "30000", "60000", "300000", "600000", "1.8e+06", "3.6e+06", "+Inf"],
                           family)
            XCTAssertEqual(h.buckets.map(\.count), h.buckets.map(\.count).sorted(), "\(family) cumulative")
            XCTAssertEqual(h.buckets.last?.count, n, family)
            XCTAssertEqual(h.count, n, family)
            let counts = Dictionary(uniqueKeysWithValues: h.buckets.map { ($0.le, $0.count) })
            XCTAssertEqual(counts["10"], 0, family)
            XCTAssertGreaterThanOrEqual(counts["25"] ?? 0, fast * 8 / 10, family)
            XCTAssertLessThanOrEqual(counts["25"] ?? 0, counts["50"] ?? 0, family)
            XCTAssertLessThanOrEqual(counts["50"] ?? 0, fast, family)
            XCTAssertGreaterThanOrEqual(counts["100"] ?? 0, n * 8 / 10, family)
            let sum = try XCTUnwrap(h.sum, family)
            XCTAssertGreaterThanOrEqual(sum, Double(fast * 20 + slowCount * 80), family)
            XCTAssertLessThan(sum, Double(fast * 30 + slowCount * 100), family)
        }
        // Text: Envoy's `P0(nan,...) P25(...) ... P100(...)` line.
        let text = try XCTUnwrap(gw.admin("/stats")?.body)
        func counter(_ name: String) -> Int? {
            text.split(separator: "\n").first { $0.hasPrefix(name + ": ") }.flatMap { Int($0.split(separator: " ")[1]) }
        }
        // The route's counters, as the cluster's for the tries it sent.
        for stat in ["upstream_rq_total", "upstream_rq_completed", "upstream_rq_2xx"] {
            XCTAssertEqual(counter("route.orders.\(stat)"), n, stat)
            XCTAssertEqual(counter("cluster.svc.\(stat)"), n, stat)
        }
        XCTAssertEqual(counter("route.orders.upstream_rq_5xx"), 0)
        XCTAssertEqual(counter("route.orders.upstream_rq_retry"), 0)
        let connectsTotal = counter("cluster.svc.upstream_cx_total")
        let connects = prometheusHistogram(prom, "envoy_cluster_upstream_cx_connect_ms", "envoy_cluster_name=\"svc\"")
        XCTAssertEqual(connects.count, connectsTotal)
        XCTAssertGreaterThan(connects.count ?? 0, 0)
        let line = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("http.ingress.downstream_rq_time: ") })
        let labels = line.split(separator: " ").dropFirst().map { $0.prefix { $0 != "(" } }
        XCTAssertEqual(labels, ["P0", "P25", "P50", "P75", "P90", "P95", "P99", "P99.5", "P99.9", "P100"], String(line))
        XCTAssertTrue(line.contains(" P50("), String(line))
    }

    /// Envoy's interval values: each stats flush (every 5 s) makes the values recorded since the
    /// previous one the interval shown beside the cumulative ones.
    func testIntervalValuesFollowTheStatsFlush() throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let up = try TestUpstream(group: group, .init(delay: .milliseconds(20)))
        defer { up.close() }
        let gw = try GatewayProcess(config: """
            {"serviceEntries":[{"host":"svc","endpoints":[{"address":"127.0.0.1","port":\(up.port)}]}],
             "virtualServices":[{"http":[{"name":"all","route":[{"destination":{"host":"svc"}}]}]}]}
            """, extraArguments: ["--access-log", "off"])
        for _ in 0..<5 { XCTAssertEqual(httpRequest(port: gw.port, path: "/")?.status, 200) }
        func line() -> String {
            (gw.admin("/stats")?.body ?? "").split(separator: "\n")
                .first { $0.hasPrefix("cluster.svc.upstream_rq_time: ") }.map(String.init) ?? ""
        }
        // The first flush after these requests: their values are its interval (about 20 ms).
        XCTAssertTrue(waitUntil(12) { line().contains("P50(2") }, line())
        let json = try XCTUnwrap(gw.admin("/stats?format=json&histogram_buckets=detailed")?.body)
        XCTAssertTrue(json.contains("\"intervals\":[{\"lower_bound\":2"), "the interval's bins around 20 ms: \(json)")
        // An interval in which nothing was recorded: nan beside the cumulative values.
        XCTAssertTrue(waitUntil(12) { line().contains("P50(nan,2") }, line())
    }
}

/// The route-level counters on the paths that are not plain: a retried 503 and a route timeout.
final class RouteCountersThroughGatewayTests: XCTestCase {
    func testRetriesTimeoutsAndClassesAreCountedPerRoute() throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let failing = try TestUpstream(group: group, .init(status: 503))
        let slow = try TestUpstream(group: group, .init(delay: .milliseconds(500)))
        defer { failing.close(); slow.close() }
        let gw = try GatewayProcess(config: """
            {"serviceEntries":[{"host":"failing","endpoints":[{"address":"127.0.0.1","port":\(failing.port)}]},
                               {"host":"slow","endpoints":[{"address":"127.0.0.1","port":\(slow.port)}]}],
             "virtualServices":[{"http":[
               {"name":"flaky","match":[{"uri":{"prefix":"/flaky"}}],"route":[{"destination":{"host":"failing"}}],
                "retries":{"attempts":2,"retryOn":"5xx"}},
               {"name":"late","match":[{"uri":{"prefix":"/late"}}],"route":[{"destination":{"host":"slow"}}],
                "timeout":"0.1s","retries":{"attempts":0}}]}]}
            """, extraArguments: ["--access-log", "off"])
        XCTAssertEqual(httpRequest(port: gw.port, path: "/flaky")?.status, 503)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/late")?.status, 504)
        let text = try XCTUnwrap(gw.admin("/stats")?.body)
        func counter(_ name: String) -> Int? {
            text.split(separator: "\n").first { $0.hasPrefix(name + ": ") }.flatMap { Int($0.split(separator: " ")[1]) }
        }
        // Three tries (the first and two retries), each answered 503 and read to the end.
        XCTAssertEqual(counter("route.flaky.upstream_rq_total"), 3, text)
        XCTAssertEqual(counter("route.flaky.upstream_rq_retry"), 2)
        XCTAssertEqual(counter("route.flaky.upstream_rq_5xx"), 3)
        XCTAssertEqual(counter("route.flaky.upstream_rq_2xx"), 0)
        XCTAssertEqual(counter("route.flaky.upstream_rq_completed"), 1)  // only the last is relayed
        XCTAssertEqual(counter("route.late.upstream_rq_timeout"), 1)
        XCTAssertEqual(counter("route.late.upstream_rq_total"), 1)
        XCTAssertEqual(counter("route.late.upstream_rq_completed"), 0)
        XCTAssertTrue(text.contains("route.late.upstream_rq_time: No recorded values\n"), text)
        XCTAssertTrue(text.contains("route.flaky.upstream_rq_time: P0("), text)
    }
}
