import Foundation
import NIOPosix
import TraceWire
import XCTest

/// W3C trace context through the real `gateway` process: what the upstream hears, what the access
/// log says, and what an OTLP collector (a real HTTP server here) receives.
final class TraceContextThroughGatewayTests: XCTestCase {
    let clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
    let clientSpan = "00f067aa0ba902b7"
    var clientHeader: String { "00-\(clientTrace)-\(clientSpan)-01" }

    func gateway(upstream: TestUpstream, extraHTTP: String = "", top: String = "", log: URL) throws -> GatewayProcess {
        var config = configText(routes: [("/", "svc")], hostPorts: ["svc": upstream.port], extraHTTP: extraHTTP)
        if !top.isEmpty { config = String(config.dropLast()) + "," + top + "}" }
        return try GatewayProcess(config: config, extraArguments: ["--access-log", log.path])
    }

    func tempLog() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("trace-access-\(UUID().uuidString).log")
    }

    /// Waits for `count` lines in the access log (each loop hands its lines over every 250 ms).
    func logLines(_ url: URL, count: Int) -> [[String]] {
        var lines: [Substring] = []
        for _ in 0..<50 where lines.count < count {
            usleep(100_000)
            lines = (try? String(contentsOf: url, encoding: .utf8))?.split(separator: "\n") ?? []
        }
        return lines.map(AccessLogTests.fields)
    }

    func traceparents(_ seen: TestUpstream.Seen) -> [String] {
        seen.headers.filter { $0.0.lowercased() == "traceparent" }.map(\.1)
    }

    func header(_ seen: TestUpstream.Seen, _ name: String) -> [String] {
        seen.headers.filter { $0.0.lowercased() == name }.map(\.1)
    }

    func testClientTraceContinuesWithTheGatewaysOwnSpanAndIsLogged() throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let log = tempLog()
        defer { try? FileManager.default.removeItem(at: log) }
        let gw = try gateway(upstream: up, log: log)
        let r = httpRequest(port: gw.port, path: "/orders", headers: ["traceparent": clientHeader, "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"])
        XCTAssertEqual(r?.status, 200)
        let seen = try XCTUnwrap(up.seenRequests.first)
        let sent = traceparents(seen)
        XCTAssertEqual(sent.count, 1, "one traceparent upstream: \(seen.headers)")
        let parent = try XCTUnwrap(TraceParent.parse(sent[0]), sent[0])
        XCTAssertEqual(parent.traceIDHex, clientTrace, "the client's trace goes on")
        XCTAssertNotEqual(parent.spanIDHex, clientSpan, "with the gateway's own span as the upstream's parent")
        XCTAssertTrue(parent.sampled, "the client's sampling decision is kept")
        XCTAssertEqual(header(seen, "tracestate"), ["congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"])

        // A tracestate longer than W3C's 512 bytes is dropped whole, never cut.
        let long = "k=" + String(repeating: "v", count: 511)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/orders", headers: ["traceparent": clientHeader, "tracestate": long])?.status, 200)
        XCTAssertEqual(up.seenRequests.count, 2)
        XCTAssertEqual(up.seenRequests.last.map { header($0, "tracestate") }, [])
        XCTAssertEqual(up.seenRequests.last.flatMap { TraceParent.parse(traceparents($0).first ?? "") }?.traceIDHex, clientTrace)

        let fields = try XCTUnwrap(logLines(log, count: 2).first)
        XCTAssertEqual(fields.count, AccessLogTests.fieldCount, "\(fields)")
        XCTAssertEqual(fields.last, clientTrace, "the trace id is the access log's last field")
        XCTAssertEqual(fields[10], "\"vs0.0\"", "the fields before it stay where they were")
    }

    func testAbsentTraceparentStartsANewTracePerRequest() throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let log = tempLog()
        defer { try? FileManager.default.removeItem(at: log) }
        let gw = try gateway(upstream: up, log: log)
        // A tracestate without a traceparent is not the client's trace either: dropped.
        for _ in 0..<3 { XCTAssertEqual(httpRequest(port: gw.port, path: "/x", headers: ["tracestate": "a=b"])?.status, 200) }
        let parents = try up.seenRequests.map { seen -> TraceParent in
            XCTAssertEqual(header(seen, "tracestate"), [])
            let sent = traceparents(seen)
            XCTAssertEqual(sent.count, 1)
            return try XCTUnwrap(TraceParent.parse(sent.first ?? ""), "\(sent)")
        }
        XCTAssertEqual(Set(parents.map(\.traceIDHex)).count, 3, "a new trace id per request")
        XCTAssertTrue(parents.allSatisfy(\.sampled), "sampling defaults to 100 %")
        let logged = logLines(log, count: 3).compactMap(\.last)
        XCTAssertEqual(Set(logged), Set(parents.map(\.traceIDHex)), "each request's log line names the trace its upstream got")
    }

    /// Hostile or broken values are treated as absent: a new trace, and the client's tracestate goes with it.
    func testInvalidTraceparentIsReplaced() throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let log = tempLog()
        defer { try? FileManager.default.removeItem(at: log) }
        let gw = try gateway(upstream: up, log: log)
        let bad = [
            "00-\(clientTrace.uppercased())-\(clientSpan)-01",
            "00-00000000000000000000000000000000-\(clientSpan)-01",
            "00-\(clientTrace)-0000000000000000-01",
            "ff-\(clientTrace)-\(clientSpan)-01",
            "00-\(clientTrace)-\(clientSpan)-01-trailing",
            "00-\(clientTrace)-\(clientSpan)",
            String(repeating: "0", count: 4000),
        ]
        for value in bad {
            XCTAssertEqual(httpRequest(port: gw.port, path: "/x", headers: ["traceparent": value, "tracestate": "k=v"])?.status, 200)
        }
        // Two traceparent lines are invalid together (W3C §3.2.2.7), even when each is valid.
        let c = try RawConnection(port: gw.port)
        c.send("GET /x HTTP/1.1\r\nHost: h\r\ntraceparent: \(clientHeader)\r\ntraceparent: \(clientHeader)\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.status, 200)

        XCTAssertEqual(up.seenRequests.count, bad.count + 1)
        for seen in up.seenRequests {
            let sent = traceparents(seen)
            XCTAssertEqual(sent.count, 1, "\(seen.headers)")
            let parent = try XCTUnwrap(TraceParent.parse(sent.first ?? ""), "\(sent)")
            XCTAssertNotEqual(parent.traceIDHex, clientTrace)
            XCTAssertEqual(header(seen, "tracestate"), [], "tracestate is dropped with an invalid traceparent")
        }
        let logged = logLines(log, count: bad.count + 1).compactMap(\.last)
        XCTAssertEqual(logged.count, bad.count + 1)
        XCTAssertFalse(logged.contains(clientTrace))
        XCTAssertTrue(logged.allSatisfy { $0.count == 32 && TraceParent.parse("00-\($0)-\(clientSpan)-01") != nil }, "\(logged)")
    }

    /// Retries send the head they were built with: one trace, one gateway span, for every try.
    func testRetriesCarryTheSameTraceparent() throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(status: 503))
        defer { up.close() }
        let log = tempLog()
        defer { try? FileManager.default.removeItem(at: log) }
        let gw = try gateway(upstream: up, extraHTTP: #","retries":{"attempts":2,"retryOn":"5xx"}"#, log: log)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/x", headers: ["traceparent": clientHeader])?.status, 503)
        let sent = up.seenRequests.flatMap(traceparents)
        XCTAssertEqual(sent.count, 3, "the first try and two retries")
        XCTAssertEqual(Set(sent).count, 1, "\(sent)")
        XCTAssertEqual(TraceParent.parse(sent.first ?? "")?.traceIDHex, clientTrace)
    }

    /// Answers the gateway makes itself (no route, an injected abort) still log the trace id.
    func testLocalRepliesLogTheTraceID() throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let log = tempLog()
        defer { try? FileManager.default.removeItem(at: log) }
        let abort = #","fault":{"abort":{"httpStatus":503,"percentage":{"value":100}}}"#
        let gw = try gateway(upstream: up, extraHTTP: abort, log: log)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/x", headers: ["traceparent": clientHeader])?.status, 503)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/y")?.status, 503)
        let lines = logLines(log, count: 2)
        XCTAssertEqual(lines.count, 2)
        XCTAssertEqual(lines.first { $0[1].contains("/x") }?.last, clientTrace)
        let other = try XCTUnwrap(lines.first { $0[1].contains("/y") }?.last)
        XCTAssertEqual(other.count, 32)
        XCTAssertNotEqual(other, clientTrace)
        XCTAssertEqual(up.requests.load(ordering: .relaxed), 0)
    }

    /// With `tracing.otlpEndpoint`, each request is a SERVER span the collector (a real HTTP
    /// server) receives as OTLP JSON: the client's trace id, the client's span as its parent, and
    /// as its own id the parent id the upstream got.
    func testSpansAreExportedToTheCollector() throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let collector = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "{}"))
        defer { collector.close() }
        let log = tempLog()
        defer { try? FileManager.default.removeItem(at: log) }
        let tracing = #""tracing":{"otlpEndpoint":"http://127.0.0.1:\#(collector.port)/v1/traces","serviceName":"edge"}"#
        let gw = try gateway(upstream: up, top: tracing, log: log)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/orders?x=1", headers: ["traceparent": clientHeader])?.status, 200)
        let upstreamParent = try XCTUnwrap(TraceParent.parse(up.seenRequests.first.map(traceparents)?.first ?? ""))

        var spans: [[String: Any]] = []
        for _ in 0..<50 where spans.isEmpty {
            usleep(100_000)
            spans = collector.seenRequests.flatMap(Self.spans)
        }
        let posts = collector.seenRequests
        XCTAssertTrue(posts.allSatisfy { $0.method == "POST" && $0.uri == "/v1/traces" }, "\(posts.map(\.uri))")
        XCTAssertTrue(posts.allSatisfy { s in s.headers.contains { $0.0.lowercased() == "content-type" && $0.1 == "application/json" } })
        XCTAssertEqual(spans.count, 1)
        let span = try XCTUnwrap(spans.first)
        XCTAssertEqual(span["traceId"] as? String, clientTrace)
        XCTAssertEqual(span["parentSpanId"] as? String, clientSpan)
        XCTAssertEqual(span["spanId"] as? String, upstreamParent.spanIDHex)
        XCTAssertEqual(span["kind"] as? Int, 2)
        XCTAssertEqual(span["name"] as? String, "GET vs0.0")
        let attributes = (span["attributes"] as? [[String: Any]] ?? []).reduce(into: [String: [String: Any]]()) {
            $0[$1["key"] as! String] = $1["value"] as? [String: Any]
        }
        XCTAssertEqual(attributes["url.path"]?["stringValue"] as? String, "/orders?x=1")
        XCTAssertEqual(attributes["http.response.status_code"]?["intValue"] as? String, "200")
        XCTAssertTrue(posts.first?.body.contains(#""stringValue":"edge""#) == true, "service.name from the config")
        var sent: Int? = nil
        for _ in 0..<20 where sent != 1 {
            sent = Self.stat(gw, "tracing.opentelemetry.spans_sent")
            if sent != 1 { usleep(50_000) }
        }
        XCTAssertEqual(sent, 1, "counted once the collector answered")
    }

    /// `sampling` decides new traces only: a client's sampled flag is kept (Envoy honours it too),
    /// and an unsampled request is not exported. A reload that adds the block starts exporting.
    func testSamplingDecidesNewTracesAndAReloadStartsExporting() throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let collector = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "{}"))
        defer { collector.close() }
        let log = tempLog()
        defer { try? FileManager.default.removeItem(at: log) }
        let gw = try gateway(upstream: up, log: log)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/before")?.status, 200)
        let base = configText(routes: [("/", "svc")], hostPorts: ["svc": up.port])
        try gw.writeConfig(String(base.dropLast())
            + #","tracing":{"otlpEndpoint":"http://127.0.0.1:\#(collector.port)","sampling":0}}"#)
        XCTAssertEqual(gw.admin("/reload", method: "POST")?.status, 200)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/new")?.status, 200)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/client", headers: ["traceparent": clientHeader])?.status, 200)
        let flags = up.seenRequests.map { seen in TraceParent.parse(traceparents(seen).first ?? "")?.sampled }
        XCTAssertEqual(flags, [true, false, true], "sampled by default; 0 % for a new trace; the client's flag kept")

        var spans: [[String: Any]] = []
        for _ in 0..<50 where spans.isEmpty {
            usleep(100_000)
            spans = collector.seenRequests.flatMap(Self.spans)
        }
        usleep(500_000)  // a second batch would have had time to arrive
        spans = collector.seenRequests.flatMap(Self.spans)
        XCTAssertEqual(spans.map { $0["traceId"] as? String }, [clientTrace], "only the sampled request after the reload")
        XCTAssertEqual(Self.stat(gw, "tracing.opentelemetry.spans_dropped"), 0)
    }

    static func stat(_ gw: GatewayProcess, _ name: String) -> Int? {
        for line in (gw.admin("/stats")?.body ?? "").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0] == name { return Int(parts[1].trimmingCharacters(in: .whitespaces)) }
        }
        return nil
    }

    static func spans(_ post: TestUpstream.Seen) -> [[String: Any]] {
        guard let root = try? JSONSerialization.jsonObject(with: Data(post.body.utf8)) as? [String: Any] else { return [] }
        return (root["resourceSpans"] as? [[String: Any]] ?? []).flatMap { rs in
            (rs["scopeSpans"] as? [[String: Any]] ?? []).flatMap { $0["spans"] as? [[String: Any]] ?? [] }
        }
    }
}
