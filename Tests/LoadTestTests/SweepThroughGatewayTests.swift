import Foundation
import XCTest

/// Issue 15's acceptance: `loadtest --sweep 1..8` through the real gateway running
/// config/circuit-breaker.json against a real upstream that answers in 50 ms finds the knee (the
/// first step with 503s) where `gateway validate --explain --latency 50ms` predicts it, and the
/// gateway's overflow counter explains every 503.
final class SweepThroughGatewayTests: XCTestCase {
    func executable(_ name: String) throws -> URL { try builtExecutable(name) }

    func run(_ exe: URL, _ args: [String]) throws -> (Int32, String, String) { try runToEnd(exe, args) }

    /// config/circuit-breaker.json as shipped, with the delivery endpoint moved to `port` (and,
    /// given `pool`, delivery's connectionPool replaced by it).
    func breakerConfig(deliveryPort port: Int, pool: [String: Any]? = nil) throws -> URL {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let data = try Data(contentsOf: repo.appendingPathComponent("config/circuit-breaker.json"))
        var root = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        var entries = try XCTUnwrap(root["serviceEntries"] as? [[String: Any]])
        let i = try XCTUnwrap(entries.firstIndex { $0["host"] as? String == "delivery" })
        entries[i]["endpoints"] = [["address": "127.0.0.1", "port": port]]
        root["serviceEntries"] = entries
        if let pool {
            var rules = try XCTUnwrap(root["destinationRules"] as? [[String: Any]])
            let r = try XCTUnwrap(rules.firstIndex { ($0["spec"] as? [String: Any])?["host"] as? String == "delivery" })
            var spec = rules[r]["spec"] as! [String: Any]
            var policy = spec["trafficPolicy"] as! [String: Any]
            policy["connectionPool"] = pool
            spec["trafficPolicy"] = policy
            rules[r]["spec"] = spec
            root["destinationRules"] = rules
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cb-sweep-\(UUID().uuidString).json")
        try JSONSerialization.data(withJSONObject: root).write(to: url)
        return url
    }

    func testSweepKneeIsWhereValidateExplainPredictsIt() throws {
        let upstream = try CountingServer(delay: .milliseconds(50))
        defer { upstream.close() }
        let config = try breakerConfig(deliveryPort: upstream.port)
        defer { try? FileManager.default.removeItem(at: config) }
        // The shipped limits: one connection, one pending, a connection per request.
        let rows = try sweep(config: config, plan: "1..8", step: "2S", ceiling: 20)
        XCTAssertEqual(rows.count, 8)
    }

    /// The keep-alive arithmetic through the real gateway: 2 connections + 2 pending, so requests
    /// queue from 3 users (upstream_cx_overflow) and are shed from 5. One-second steps: twenty
    /// 50 ms rounds each, enough for a queue to form and overflow.
    func testKeepAliveQueueAndKnee() throws {
        let upstream = try CountingServer(delay: .milliseconds(50))
        defer { upstream.close() }
        let config = try breakerConfig(deliveryPort: upstream.port, pool: ["tcp": ["maxConnections": 2], "http": ["http1MaxPendingRequests": 2]])
        defer { try? FileManager.default.removeItem(at: config) }
        let rows = try sweep(config: config, plan: "1..6", step: "1S", ceiling: 40)
        XCTAssertEqual(rows.count, 6)
        for (users, counters) in rows {
            if users >= 3 {
                XCTAssertGreaterThan(counters["cx_ovf"] ?? 0, 0, "\(users) users wait for one of 2 connections")
            } else {
                XCTAssertEqual(counters["cx_ovf"], 0, "\(users) users never wait")
            }
        }
    }

    /// Runs `validate --explain` and `loadtest --sweep` on `config` through the real gateway,
    /// checks the knee, the 503s against the overflow counter and the rate against `ceiling`,
    /// and returns each step's columns.
    func sweep(config: URL, plan: String, step: String, ceiling: Double) throws -> [(Int, [String: Int])] {
        let gateway = try executable("gateway")
        let loadtest = try executable("loadtest")

        // The prediction, from the gateway's CLI. One event loop, as the gateway runs below: the
        // figures are then exact (see BreakerModel on the per-loop first-connection exception).
        let (vs, explain, verr) = try run(gateway, ["validate", "--config", config.path, "--explain", "--latency", "50ms",
                                                   "--threads", "1", "--cluster", "delivery"])
        XCTAssertEqual(vs, 0, verr)
        let kneeLine = try XCTUnwrap(explain.split(separator: "\n").first { $0.contains("knee (first 503 UO) at: concurrency ") }, explain)
        let predicted = try XCTUnwrap(Int(kneeLine.split(separator: " ").last ?? ""), String(kneeLine))
        print("gateway validate --explain (delivery):\n" + explain.components(separatedBy: "cluster delivery\n").last!)

        let gw = try OneLoopGateway(config: config)
        // Killed when released: kept to the end of the test.
        defer { withExtendedLifetime(gw) {} }
        let ports = [gw.port, gw.adminPort]

        let html = FileManager.default.temporaryDirectory.appendingPathComponent("sweep-\(UUID().uuidString).html")
        defer { try? FileManager.default.removeItem(at: html) }
        let (ls, text, lerr) = try run(loadtest, [
            "--sweep", plan, "-t", step, "--admin", "http://127.0.0.1:\(ports[1])", "--cluster", "delivery",
            "--explain-config", config.path, "--latency", "50ms", "--gateway-threads", "1", "--html", html.path,
            "http://127.0.0.1:\(ports[0])/deliveries",
        ])
        XCTAssertEqual(ls, 0, lerr)
        print(text)
        let measuredLine = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("knee (first step with 503s): ") }, text)
        let measured = Int(measuredLine.dropFirst("knee (first step with 503s): ".count).prefix { $0.isNumber })
        XCTAssertEqual(measured, predicted, "the measured knee is the predicted one")
        XCTAssertTrue(measuredLine.contains("(agrees)"), String(measuredLine))

        // The table's rows: users, trans/s, avail%, p50, p99, then per status code, the counters, the prediction.
        let lines = text.split(separator: "\n").map(String.init)
        let header = try XCTUnwrap(lines.first { $0.hasPrefix("users") || $0.hasPrefix(" users") }).split(separator: " ").map(String.init)
        let rows = lines.filter { l in l.split(separator: " ").first.flatMap { Int($0) } != nil && l.split(separator: " ").count > 6 }
        func column(_ name: String, _ row: String) -> Int? {
            guard let i = header.firstIndex(of: name) else { return name == "503" ? 0 : nil }
            return Int(row.split(separator: " ")[i])
        }
        var table: [(Int, [String: Int])] = []
        for row in rows {
            let users = Int(row.split(separator: " ")[0])!
            table.append((users, Dictionary(uniqueKeysWithValues: header.indices.dropFirst(5).compactMap { i in
                Int(row.split(separator: " ")[i]).map { (header[i], $0) }
            })))
            let shed = column("503", row) ?? 0
            let overflow = try XCTUnwrap(column("pend_ovf", row), row)
            let rate = try XCTUnwrap(Double(row.split(separator: " ")[1]), row)
            if users < predicted {
                XCTAssertEqual(shed, 0, "no 503 below the knee: \(row)")
                XCTAssertEqual(overflow, 0, row)
            } else {
                XCTAssertGreaterThan(shed, 0, "every step from the knee sheds: \(row)")
            }
            // Each 503 is one the gateway counted as pending overflow (UO), and each it counted
            // reached the client (a sweep step finishes the requests in flight at its deadline).
            XCTAssertEqual(overflow, shed, row)
            // Little's law: served at once / 50 ms answered per second at most (plus the first
            // requests of the step: half a round over a step of a second or more).
            XCTAssertLessThanOrEqual(rate, ceiling * 1.025, "the throughput ceiling holds: \(row)")
            XCTAssertGreaterThan(rate, min(Double(users), ceiling / 20) * 10, "the connections kept busy: \(row)")
        }
        let page = try String(contentsOf: html, encoding: .utf8)
        XCTAssertTrue(page.contains("<svg id=\"rate\"") && page.contains("measured knee"))
        return table
    }
}
