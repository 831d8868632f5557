import Foundation
import XCTest
@testable import LoadTestCore

/// `--sweep`'s plan, the admin counters it reads, and its report.
final class SweepTests: XCTestCase {
    func testPlanSpellings() throws {
        XCTAssertEqual(try SweepPlan.parse("1..8"), [1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertEqual(try SweepPlan.parse("1,2,4,8,16"), [1, 2, 4, 8, 16])
        XCTAssertEqual(try SweepPlan.parse("1..3,8, 16"), [1, 2, 3, 8, 16])
        XCTAssertEqual(try SweepPlan.parse("5"), [5])
        XCTAssertEqual(try SweepPlan.parse("4..4"), [4])
    }

    func testPlanRefusals() {
        let cases: [(String, String)] = [
            ("", "--sweep: no steps"),
            ("8..1", "--sweep: 8..1 runs backwards"),
            ("1,2,2", "--sweep: steps must increase (2 after 2)"),
            ("4,2", "--sweep: steps must increase (2 after 4)"),
            ("1..4,3", "--sweep: steps must increase (3 after 4)"),
            ("0..4", "--sweep: concurrency 0 is outside 1...10000"),
            ("1..20000", "--sweep: concurrency 20000 is outside 1...10000"),
            ("1..500", "--sweep: at most 200 steps"),
            ("a..4", "--sweep: 'a' is not a number"),
            ("1,,2", "--sweep: '' is not a number"),
            ("1..", "--sweep: '' is not a number"),
            ("-3", "--sweep: concurrency -3 is outside"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try SweepPlan.parse(text), text) { error in
                let d = (error as? OptionError)?.description ?? "\(error)"
                XCTAssertTrue(d.hasPrefix(expected), "\(text): \(d)")
                XCTAssertFalse(d.contains("\n"))
            }
        }
        // 200 steps in many short items: still bounded.
        XCTAssertThrowsError(try SweepPlan.parse((1...201).map(String.init).joined(separator: ",")))
    }

    func testAdminCountersParseAndDelta() throws {
        let before = try AdminCounters.parse(Array("""
            {"stats":[{"name":"cluster.delivery.upstream_rq_pending_overflow","value":3},
             {"name":"cluster.delivery.upstream_rq_pending_total","value":90},
             {"name":"cluster.reviews.default.svc.upstream_cx_overflow","value":1},
             {"name":"cluster.delivery.outlier_detection.ejections_enforced_total","value":0},
             {"name":"http.ingress.downstream_rq_total","value":400},
             {"name":"cluster.delivery.upstream_rq_time","histograms":{}}]}
            """.utf8))
        XCTAssertEqual(before["delivery"], ["upstream_rq_pending_overflow": 3, "outlier_detection.ejections_enforced_total": 0])
        XCTAssertEqual(before["reviews.default.svc"], ["upstream_cx_overflow": 1])
        let after: [String: [String: Int]] = [
            "delivery": ["upstream_rq_pending_overflow": 10, "outlier_detection.ejections_enforced_total": 1],
            "reviews.default.svc": ["upstream_cx_overflow": 0],
        ]
        let d = AdminCounters.delta(before, after)
        XCTAssertEqual(d["delivery"], ["upstream_rq_pending_overflow": 7, "outlier_detection.ejections_enforced_total": 1])
        // Went down (the cluster was re-created by a reload): counted from zero.
        XCTAssertEqual(d["reviews.default.svc"], ["upstream_cx_overflow": 0])
        XCTAssertThrowsError(try AdminCounters.parse(Array("<html>".utf8)))
    }

    func summary(_ statuses: [Int: Int], latencyMicros: UInt64 = 50_000) -> Summary {
        var r = Recorder()
        for (status, n) in statuses {
            for _ in 0..<n { r.recordResponse(status: status, bodyBytes: 10, latencyMicros: latencyMicros, second: 0) }
        }
        return Summary(r, elapsed: 2)
    }

    func testReportKneeTableAndJSON() throws {
        let steps = [
            SweepStep(concurrency: 1, summary: summary([200: 40]), counters: ["delivery": ["upstream_rq_pending_overflow": 0]]),
            SweepStep(concurrency: 2, summary: summary([200: 40, 503: 5]), counters: ["delivery": ["upstream_rq_pending_overflow": 5, "upstream_cx_overflow": 40]]),
            SweepStep(concurrency: 3, summary: summary([200: 40, 503: 900]), counters: ["delivery": ["upstream_rq_pending_overflow": 900]]),
        ]
        let prediction = SweepPrediction(cluster: "delivery", latencyMs: 50, queueFrom: 2...2, knee: 2...2, ceiling: 20...20,
                                         explanation: ["knee (first 503 UO) at: concurrency 2"]) { n in
            .init(regime: n >= 2 ? "shed" : "served", rate: 20...20)
        }
        let report = SweepReport(title: "GET http://127.0.0.1:8080/deliveries", stepSeconds: 2, steps: steps, admin: "http://127.0.0.1:9901",
                                 cluster: "delivery", prediction: prediction)
        XCTAssertEqual(report.knee, 2)
        let text = report.text()
        XCTAssertTrue(text.contains("knee (first step with 503s): 2 users; predicted 2 for cluster delivery at 50 ms (agrees)"), text)
        let lines = text.split(separator: "\n")
        let header = lines.first { $0.contains("users") }!
        XCTAssertTrue(header.contains("200") && header.contains("503") && header.contains("pend_ovf") && header.contains("predicted"), String(header))
        let row2 = lines.first { $0.hasPrefix("    2 ") }!.split(separator: " ")
        // users, trans/s, avail%, p50, p99, 200, 503, counters...
        XCTAssertEqual(row2[5], "40")
        XCTAssertEqual(row2[6], "5")
        XCTAssertEqual(row2[7], "5")
        XCTAssertEqual(row2[8], "40")

        let json = try JSONSerialization.jsonObject(with: Data(report.json().utf8)) as! [String: Any]
        XCTAssertEqual(json["knee"] as? Int, 2)
        let s = json["steps"] as! [[String: Any]]
        XCTAssertEqual(s.count, 3)
        XCTAssertEqual((s[2]["status_codes"] as? [String: Int])?["503"], 900)
        XCTAssertEqual(((s[1]["counters"] as? [String: [String: Int]])?["delivery"])?["upstream_cx_overflow"], 40)
        XCTAssertEqual((s[1]["predicted"] as? [String: Any])?["regime"] as? String, "shed")
        XCTAssertEqual((json["prediction"] as? [String: Any])?["knee"] as? [Int], [2, 2])

        let html = report.html()
        for needle in ["<svg id=\"rate\"", "<svg id=\"availability\"", "<svg id=\"latency\"", "<svg id=\"status\"", "<svg id=\"counters\"",
                       "predicted knee", "measured knee", "<ul id=\"prediction\">"] {
            XCTAssertTrue(html.contains(needle), needle)
        }
        XCTAssertNil(html.range(of: #"(src|href)="https?:"#, options: .regularExpression), "the page fetches nothing")
    }

    func testNoShedNoKnee() {
        let report = SweepReport(title: "t", stepSeconds: nil, steps: [SweepStep(concurrency: 1, summary: summary([200: 3]), counters: nil)],
                                 admin: nil, cluster: nil, prediction: nil)
        XCTAssertNil(report.knee)
        XCTAssertTrue(report.text().contains("knee (first step with 503s): none"))
        XCTAssertFalse(report.text().contains("pend_ovf"))
    }
}

/// Bad `--sweep` and `validate --explain` command lines: one line on stderr, a non-zero exit.
final class SweepCLITests: XCTestCase {
    func run(_ name: String, _ args: [String]) throws -> (Int32, String) {
        let r = try runToEnd(try builtExecutable(name), args)
        return (r.status, r.err)
    }

    func testBadSweepArgumentsAreOneLine() throws {
        let server = try CountingServer()
        defer { server.close() }
        let url = server.url
        let cb = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("config/circuit-breaker.json").path
        let cases: [(String, [String], String)] = [
            ("loadtest", ["--sweep", "5..2", "-t", "1S", url], "--sweep: 5..2 runs backwards"),
            ("loadtest", ["--sweep", "1,x", "-t", "1S", url], "--sweep: 'x' is not a number"),
            ("loadtest", ["--sweep", "1..3", url], "--sweep needs -t"),
            ("loadtest", ["--sweep", "1..3", "-c", "4", "-t", "1S", url], "--sweep sets each step's concurrency"),
            ("loadtest", ["--sweep", "1..3", "-t", "1S", "--rate", "10", url], "--sweep runs closed-loop users"),
            ("loadtest", ["--admin", "http://127.0.0.1:9901", url], "--admin needs --sweep"),
            ("loadtest", ["--latency", "50ms", url], "--latency needs --sweep"),
            ("loadtest", ["--sweep", "1..2", "-t", "1S", "--admin", "http://127.0.0.1:9901/stats", url], "--admin takes the admin's base URL"),
            ("loadtest", ["--sweep", "1..2", "-t", "1S", "--explain-config", cb, url], "--explain-config needs --latency"),
            ("loadtest", ["--sweep", "1..2", "-t", "1S", "--explain-config", cb, "--latency", "50ms", url], "--explain-config: name the cluster"),
            ("loadtest", ["--sweep", "1..2", "-t", "1S", "--explain-config", cb, "--latency", "soon", "--cluster", "delivery", url], "--latency: 'soon'"),
            ("loadtest", ["--sweep", "1..2", "-t", "1S", "--explain-config", cb, "--latency", "50ms", "--cluster", "nosuch", url], "--cluster: "),
            ("loadtest", ["--sweep", "1..2", "-t", "1S", "--explain-config", "/nonexistent.json", "--latency", "50ms", url], "--explain-config /nonexistent.json"),
            ("loadtest", ["--sweep", "1..2", "-t", "1S", "--admin", "http://127.0.0.1:1", url], "--admin: "),
            ("gateway", ["validate", "--config", cb, "--explain", "--latency", "fast"], ""),
            ("gateway", ["validate", "--config", cb, "--explain", "--cluster", "nosuch"], "--cluster: "),
        ]
        for (exe, args, expected) in cases {
            let (status, stderr) = try run(exe, args)
            XCTAssertNotEqual(status, 0, "\(exe) \(args)")
            let lines = stderr.split(separator: "\n", omittingEmptySubsequences: true)
            XCTAssertEqual(lines.count, 1, "\(exe) \(args): \(stderr)")
            XCTAssertTrue(lines.first?.hasPrefix("\(exe): \(expected)") ?? false, "\(exe) \(args): \(stderr)")
        }
    }
}
