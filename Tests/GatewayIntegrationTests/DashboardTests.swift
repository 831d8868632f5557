import Foundation
import NIOPosix
import XCTest

/// The admin's live dashboard (`GET /` from a browser) in a real headless Chromium, against the
/// real `gateway` process with a breaker that sheds and an endpoint that gets ejected, loaded by
/// the real `loadtest`: it renders, what it prints equals `/stats` read at the same moment (the
/// traffic stopped), and it follows the load as it happens.
final class DashboardTests: XCTestCase {
    var slow: TestUpstream!
    var good: TestUpstream!
    var bad: TestUpstream!
    var gw: GatewayProcess!
    /// Just before the gateway started: its first stats flush is 5 s after this at the earliest.
    var gatewayStarted = Date.distantPast
    var profiles: URL!

    override func setUpWithError() throws {
        let group = MultiThreadedEventLoopGroup.singleton
        slow = try TestUpstream(group: group, .init(delay: .milliseconds(50)))
        good = try TestUpstream(group: group)
        bad = try TestUpstream(group: group, .init(status: 500))
        // The seed's breaker (one connection, one pending request) before a 50 ms upstream, and a
        // pool whose failing endpoint is ejected at its first 5xx. One event loop, so the breaker
        // sheds as the seed's test shows it.
        gatewayStarted = Date()
        gw = try GatewayProcess(config: """
            {"serviceEntries":[{"host":"breaker","endpoints":[{"address":"127.0.0.1","port":\(slow.port)}]},
                               {"host":"pool","endpoints":[{"address":"127.0.0.1","port":\(good.port)},
                                                           {"address":"127.0.0.1","port":\(bad.port)}]}],
             "destinationRules":[
               {"host":"breaker","trafficPolicy":{"connectionPool":{"tcp":{"maxConnections":1},"http":{"http1MaxPendingRequests":1}}}},
               {"host":"pool","trafficPolicy":{"loadBalancer":{"simple":"ROUND_ROBIN"},
                 "outlierDetection":{"consecutive5xxErrors":1,"interval":"1s","baseEjectionTime":"5m","maxEjectionPercent":50}}}],
             "virtualServices":[{"http":[
               {"name":"breaker-route","match":[{"uri":{"prefix":"/breaker"}}],"route":[{"destination":{"host":"breaker"}}],
                "retries":{"attempts":0}},
               {"name":"pool-route","match":[{"uri":{"prefix":"/pool"}}],"route":[{"destination":{"host":"pool"}}],
                "retries":{"attempts":0}}]}]}
            """, extraArguments: ["--threads", "1", "--access-log", "off"])
        profiles = FileManager.default.temporaryDirectory.appendingPathComponent("dashboard-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: profiles, withIntermediateDirectories: true)
    }

    override func tearDown() {
        gw = nil
        for u in [slow, good, bad] { u?.close() }
        if let profiles { try? FileManager.default.removeItem(at: profiles) }
    }

    /// `loadtest -c USERS <mode> -b -q --json URL`: its JSON summary.
    func loadtest(_ arguments: [String], _ path: String) throws -> [String: Any] {
        let data = try outputOf(try builtExecutable("loadtest"),
                                arguments + ["-b", "-q", "--json", "http://127.0.0.1:\(gw.port)\(path)"])
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any], String(decoding: data, as: UTF8.self))
    }

    func status(_ summary: [String: Any], _ code: String) -> Int { (summary["status_codes"] as? [String: Int])?[code] ?? 0 }

    /// No request in flight anywhere: what the page read last is what `/stats` says now.
    func waitForQuiet() {
        XCTAssertTrue(waitUntil(10) {
            let s = statsOf(gw)
            return s["http.ingress.downstream_rq_active"] == 0 && s["cluster.breaker.upstream_rq_active"] == 0
                && s["cluster.breaker.upstream_rq_pending_active"] == 0 && s["cluster.pool.upstream_rq_active"] == 0
        }, "the gateway went quiet")
    }

    /// Every `data-stat="name">value<` the page shows.
    func shownStats(_ dom: String) -> [String: String] {
        let re = try! NSRegularExpression(pattern: #"data-stat="([^"]+)"[^>]*>([^<]*)<"#)
        var out: [String: String] = [:]
        for m in re.matches(in: dom, range: NSRange(dom.startIndex..., in: dom)) {
            out[String(dom[Range(m.range(at: 1), in: dom)!])] = String(dom[Range(m.range(at: 2), in: dom)!])
        }
        return out
    }

    /// The part of the page about one cluster.
    func section(_ dom: String, cluster: String) -> String {
        guard let start = dom.range(of: "<section data-cluster=\"\(cluster)\"") else { return "" }
        let rest = dom[start.lowerBound...]
        return String(rest[..<(rest.range(of: "</section>")?.upperBound ?? rest.endIndex)])
    }

    /// Checks that every number the page shows from `/stats` is the one `/stats` gives now.
    @discardableResult
    func assertMatchesStats(_ dom: String, _ what: String) -> [String: Int] {
        let stats = statsOf(gw)
        let shown = shownStats(dom)
        XCTAssertGreaterThan(shown.count, 40, "\(what): the page shows the clusters' counters: \(dom.prefix(2000))")
        for (name, value) in shown {
            XCTAssertEqual(value, stats[name].map(String.init), "\(what): \(name) on the page and in /stats")
        }
        for required in ["cluster.breaker.upstream_rq_total", "cluster.breaker.upstream_rq_pending_overflow",
                         "cluster.breaker.upstream_rq_pending_active", "cluster.breaker.upstream_cx_active",
                         "cluster.pool.outlier_detection.ejections_active", "cluster.pool.upstream_rq_5xx",
                         "http.ingress.downstream_rq_5xx", "route.breaker-route.upstream_rq_total", "server.config_version"] {
            XCTAssertNotNil(shown[required], "\(what): \(required) is on the page")
        }
        return stats
    }

    func testDashboardInChromiumMatchesStatsAndFollowsTheLoad() throws {
        let chromium = try HeadlessChromium.executable(skipping: "the dashboard's browser test")
        let dashboard = "http://127.0.0.1:\(gw.adminPort)/"

        // curl keeps the list of commands; a browser gets the page, which may fetch only its origin.
        let plain = gw.admin("/")
        XCTAssertTrue(plain?.body.hasPrefix("admin commands are:") == true, plain?.body ?? "")
        let page = httpRequest(port: gw.adminPort, path: "/", headers: ["Accept": "text/html,application/xhtml+xml"])
        XCTAssertEqual(page?.status, 200)
        XCTAssertEqual(page?.header("content-type"), "text/html; charset=utf-8")
        XCTAssertTrue(page?.header("content-security-policy")?.contains("connect-src 'self'") == true)
        XCTAssertFalse(page?.body.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").contains("://") ?? true,
                       "no address outside the admin in the page (but SVG's namespace)")
        XCTAssertEqual(gw.admin("/stats?format=json&histogram_buckets=cumulative")?.status, 400)

        // The seed's breaker test in small: three users against one connection and one pending
        // slot shed some requests with 503 UO; the failing endpoint of the pool is ejected.
        let first = try loadtest(["-c", "3", "-r", "10"], "/breaker")
        XCTAssertGreaterThan(status(first, "503"), 0, "three users overflow the breaker: \(first)")
        for _ in 0..<6 { _ = httpRequest(port: gw.port, path: "/pool") }
        waitForQuiet()

        let before = try HeadlessChromium.dumpDOM(chromium, url: dashboard, profile: profiles.appendingPathComponent("a"), virtualTimeMs: 3000)
        XCTAssertFalse(before.contains(#"class="down""#), "every read of the admin worked: \(before.prefix(3000))")
        XCTAssertNotNil(before.range(of: #"data-samples="[2-9]"#, options: .regularExpression), "the page read the admin again and again")
        let statsBefore = assertMatchesStats(before, "after the first load")
        XCTAssertEqual(statsBefore["cluster.breaker.upstream_rq_pending_overflow"], status(first, "503"))
        XCTAssertEqual(statsBefore["cluster.breaker.upstream_rq_2xx"], status(first, "200"))
        XCTAssertEqual(statsBefore["cluster.breaker.upstream_rq_2xx"], slow.requests.load(ordering: .relaxed))
        XCTAssertEqual(statsBefore["cluster.breaker.upstream_rq_total"], status(first, "200"), "a shed request never reaches the pool")

        // What the page subtracts: Envoy's detailed form, every non-empty bin in ms, adding up to
        // the tries (each one at least the upstream's 50 ms).
        let detailed = try XCTUnwrap(gw.admin("/stats?format=json&histogram_buckets=detailed")?.body)
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(detailed.utf8)) as? [String: Any])
        let histograms = try XCTUnwrap((root["stats"] as? [[String: Any]])?.compactMap { $0["histograms"] as? [String: Any] }.first)
        XCTAssertEqual(histograms["supported_percentiles"] as? [Double], [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100])
        let details = try XCTUnwrap(histograms["details"] as? [[String: Any]])
        let tries = try XCTUnwrap(details.first { $0["name"] as? String == "cluster.breaker.upstream_rq_time" }, detailed)
        let totals = try XCTUnwrap(tries["totals"] as? [[String: Double]])
        XCTAssertEqual(totals.reduce(0) { $0 + Int($1["count"] ?? 0) }, statsBefore["cluster.breaker.upstream_rq_total"])
        XCTAssertTrue(totals.allSatisfy { ($0["lower_bound"] ?? 0) >= 50 && ($0["width"] ?? 0) > 0 }, "\(totals)")
        // Interval bins appear at the first stats flush, 5 s after the start (Envoy's
        // stats_flush_interval); on a slow machine the test may get here after it. Then they
        // hold what the tries recorded until that flush: no more than all of them, each ≥ 50 ms.
        let intervals = try XCTUnwrap(tries["intervals"] as? [[String: Double]], detailed)
        if Date().timeIntervalSince(gatewayStarted) < 4.5 {
            XCTAssertEqual(intervals.count, 0, "no flush interval yet")
        } else {
            XCTAssertLessThanOrEqual(intervals.reduce(0) { $0 + Int($1["count"] ?? 0) },
                                     statsBefore["cluster.breaker.upstream_rq_total"] ?? 0)
            XCTAssertTrue(intervals.allSatisfy { ($0["lower_bound"] ?? 0) >= 50 }, "\(intervals)")
        }
        XCTAssertEqual((tries["percentiles"] as? [Any])?.count, 10)

        let breaker = section(before, cluster: "breaker")
        XCTAssertTrue(breaker.contains(#"data-limit="max_pending_requests">of 1<"#), breaker)
        XCTAssertTrue(breaker.contains(#"data-limit="max_connections">of 1<"#), breaker)
        XCTAssertTrue(breaker.contains(#"data-limit="max_requests">no limit<"#), breaker)
        let pool = section(before, cluster: "pool")
        XCTAssertTrue(pool.contains("<tr class=\"ejected\" data-host=\"127.0.0.1:\(bad.port)\">"), "the failing endpoint is highlighted: \(pool)")
        XCTAssertTrue(pool.contains("<tr data-host=\"127.0.0.1:\(good.port)\">"), "the healthy one is not: \(pool)")
        XCTAssertEqual(statsBefore["cluster.pool.outlier_detection.ejections_active"], 1)

        // Under load, on the wall clock: one page, refreshing every 0.5 s in Chromium driven over
        // its DevTools pipe, runs 8 s while loadtest runs 4 s. Its series show the request and
        // overflow rates of the load; its numbers, read 3 s or more after the load stopped,
        // equal /stats now: the open page follows the gateway, not only a fresh one.
        let live = profiles.appendingPathComponent("live.html")
        let shot = Process()
        shot.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        shot.arguments = ["python3", URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../loadtest/dashboard-shot.py").standardized.path,
                          dashboard + "?refresh=0.5", "--wait", "8", "--dom", live.path, "--chromium", chromium]
        shot.standardOutput = FileHandle.nullDevice
        try shot.run()
        let slowBefore = slow.requests.load(ordering: .relaxed)
        let second = try loadtest(["-c", "3", "-t", "4S"], "/breaker")
        XCTAssertGreaterThan(status(second, "503"), 0)
        waitForQuiet()
        shot.waitUntilExit()
        XCTAssertEqual(shot.terminationStatus, 0)
        let during = try String(contentsOf: live, encoding: .utf8)
        assertMatchesStats(during, "the page open through the load, after it")
        let liveBreaker = section(during, cluster: "breaker")
        func series(_ cls: String, after label: String) -> [Double] {
            guard let row = liveBreaker.range(of: label),
                  let attr = liveBreaker[row.upperBound...].range(of: #"data-\#(cls)="([^"]*)""#, options: .regularExpression)
            else { return [] }
            let text = liveBreaker[attr].dropFirst("data-\(cls)=\"".count).dropLast()
            return text.split(separator: " ").compactMap { Double($0) }
        }
        let requestRates = series("crq", after: ">requests<")
        let overflowRates = series("cov", after: ">pending overflow (503 UO)<")
        XCTAssertGreaterThanOrEqual(requestRates.count, 8, "a point per refresh: \(liveBreaker)")
        XCTAssertGreaterThan(requestRates.max() ?? 0, 5, "requests per second under load: \(requestRates)")
        XCTAssertGreaterThan(overflowRates.max() ?? 0, 0, "the breaker sheds, live: \(overflowRates)")
        XCTAssertEqual(requestRates.last, 0, "and stops with the load: \(requestRates)")
        // p50/p99 of the tries in the window, from the differences of the detailed bins: each
        // try takes the upstream's 50 ms, plus the wait for the one before it when it was pending.
        func shownMs(_ cls: String) -> Double? {
            guard let r = liveBreaker.range(of: #"class="\#(cls)">p\d+ [0-9.]+ ms<"#, options: .regularExpression) else { return nil }
            return Double(liveBreaker[r].split(separator: " ")[1])
        }
        let p50 = try XCTUnwrap(shownMs("cp50"), liveBreaker), p99 = try XCTUnwrap(shownMs("cp99"), liveBreaker)
        XCTAssertTrue((50...160).contains(p50), "p50 \(p50) ms")
        XCTAssertTrue((p50...400).contains(p99), "p99 \(p99) ms, p50 \(p50) ms")

        // A new page: equal to /stats, and moved by what the load did. `-t` abandons the (at
        // most 3) requests in flight at its deadline, which the gateway may still count.
        let after = try HeadlessChromium.dumpDOM(chromium, url: dashboard, profile: profiles.appendingPathComponent("b"), virtualTimeMs: 3000)
        assertMatchesStats(after, "after the second load")
        func shownDelta(_ name: String) -> Int { (Int(shownStats(after)[name] ?? "") ?? 0) - (Int(shownStats(before)[name] ?? "") ?? 0) }
        let shedDelta = shownDelta("cluster.breaker.upstream_rq_pending_overflow")
        XCTAssertTrue((status(second, "503")...status(second, "503") + 3).contains(shedDelta), "\(shedDelta) shed, loadtest saw \(second)")
        let servedDelta = shownDelta("cluster.breaker.upstream_rq_2xx")
        XCTAssertTrue((status(second, "200")...status(second, "200") + 3).contains(servedDelta), "\(servedDelta) served, loadtest saw \(second)")
        let upstreamSaw = slow.requests.load(ordering: .relaxed) - slowBefore
        XCTAssertTrue((servedDelta...servedDelta + 3).contains(upstreamSaw), "upstream saw \(upstreamSaw), the page shows \(servedDelta) answered")

        // A refused reload: the page shows the error /config_dump has, beside the version in force.
        try gw.writeConfig(#"{"serviceEntries": ["#)
        XCTAssertEqual(gw.admin("/reload", method: "POST")?.status, 400)
        let dump = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data((gw.admin("/config_dump")?.body ?? "").utf8)) as? [String: Any])
        let reloadError = try XCTUnwrap(dump["last_reload_error"] as? String)
        let refused = try HeadlessChromium.dumpDOM(chromium, url: dashboard, profile: profiles.appendingPathComponent("c"), virtualTimeMs: 2000)
        let shown = assertMatchesStats(refused, "after a refused reload")
        XCTAssertEqual(shown["server.reload_failure"], 1)
        XCTAssertEqual(shown["server.config_version"], 1)
        let banner = refused.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&amp;", with: "&")
        XCTAssertTrue(banner.contains("<div id=\"reload-error\">last reload refused (the previous config keeps serving): \(reloadError)</div>"),
                      "\(reloadError) in \(refused.prefix(4000))")
    }
}
