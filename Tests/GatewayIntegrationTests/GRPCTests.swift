import Foundation
import XCTest

/// gRPC through the real `gateway` process: Python's grpcio as the client (h2c with prior
/// knowledge on an insecure channel, h2 over TLS on a secure one), an HTTP/1.1 upstream that
/// answers gRPC-shaped responses with chunked bodies and trailers, and a raw HTTP/2 client for
/// the frames themselves (trailing HEADERS, trailers-only answers).
final class GRPCTests: XCTestCase {
    var scriptURL: URL!
    var upstream: Process!
    var upstreamOutput: LineReader!
    var upstreamPort = 0

    override func setUpWithError() throws {
        guard Self.python(has: "grpc"), Self.python(has: "h2.connection") else {
            throw XCTSkip("Python's grpcio and h2 are needed: python3 -m pip install grpcio h2")
        }
        scriptURL = FileManager.default.temporaryDirectory.appendingPathComponent("grpc-\(UUID().uuidString).py")
        try grpcPeerSource.write(to: scriptURL, atomically: true, encoding: .utf8)
        upstreamPort = try refusedPort()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", scriptURL.path, "upstream", String(upstreamPort)]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        upstream = p
        upstreamOutput = LineReader(out.fileHandleForReading)
        XCTAssertEqual(upstreamOutput.next(timeout: 20), #"{"ready": true}"#)
    }

    override func tearDown() {
        upstream?.terminate()
        upstream?.waitUntilExit()
        if let scriptURL { try? FileManager.default.removeItem(at: scriptURL) }
    }

    static func python(has module: String) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import \(module)"]
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    /// Runs the peer script's client to its end; its JSON line.
    func peer(_ args: [String]) throws -> [String: Any] {
        let r = TLSTests.run(["/usr/bin/env", "python3", scriptURL.path] + args, timeout: 40)
        let last = r.out.split(separator: "\n").last.map(String.init) ?? ""
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any],
                             "client said: \(r.out) \(r.err)")
    }

    /// The requests the upstream saw, as it printed them.
    func seenByUpstream(_ count: Int) -> [[String: Any]] {
        (0..<count).compactMap { _ in
            upstreamOutput.next(timeout: 10).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }
    }

    func config(route: String = "", retries: String = #"{"attempts": 0}"#, pool: String = "", listener: String = #""http2": {"enabled": true}"#,
                gateways: String = "") -> String {
        """
        {"listener": {\(listener)},
         "serviceEntries": [{"host": "echo", "endpoints": [{"address": "127.0.0.1", "port": \(upstreamPort)}]}],
         "destinationRules": [{"host": "echo", "trafficPolicy": {"connectionPool": {\(pool)}}}],
         "virtualServices": [{"http": [{"name": "grpc", "match": [{"uri": {"prefix": "/test.Echo/"}}],
                                         "route": [{"destination": {"host": "echo"}}], "retries": \(retries)\(route)}]}]
         \(gateways)}
        """
    }

    func logLines(_ gw: GatewayProcess) -> [Substring] {
        gw.signal(SIGTERM)
        let data = gw.stdoutPipe.fileHandleForReading.readDataToEndOfFile()
        _ = gw.waitForExit(timeout: 15)
        return String(decoding: data, as: UTF8.self).split(separator: "\n")
    }

    // MARK: trailers

    func testUnaryAndServerStreamingCallsCarryMessagesAndTrailers() throws {
        let gw = try GatewayProcess(config: config())
        let target = "127.0.0.1:\(gw.port)"

        let unary = try peer(["unary", target, "/test.Echo/Unary", "payload=hello grpc"])
        XCTAssertEqual(unary["code"] as? String, "OK", "\(unary)")
        XCTAssertEqual(unary["replies"] as? [String], ["HELLO GRPC"])
        // The upstream's chunked trailer section reached the client as trailing metadata.
        XCTAssertEqual((unary["trailing"] as? [String: String])?["x-trailer"], "yes", "\(unary)")

        let stream = try peer(["stream", target, "/test.Echo/Stream"])
        XCTAssertEqual(stream["code"] as? String, "OK", "\(stream)")
        XCTAssertEqual(stream["replies"] as? [String], ["part-0", "part-1", "part-2"])

        // A status other than OK reaches the client as that status, with its message.
        let missing = try peer(["unary", target, "/test.Echo/NotFound"])
        XCTAssertEqual(missing["code"] as? String, "NOT_FOUND", "\(missing)")
        XCTAssertEqual(missing["details"] as? String, "no such thing")

        let seen = seenByUpstream(3)
        XCTAssertEqual(seen.first?["messages"] as? [String], ["hello grpc"])
        XCTAssertEqual((seen.first?["headers"] as? [String: String])?["content-type"], "application/grpc")

        // grpc-status counted per cluster, in /stats and /stats/prometheus.
        let stats = statsOf(gw)
        XCTAssertEqual(stats["cluster.echo.grpc.0"], 2, "\(stats.filter { $0.key.contains("grpc") })")
        XCTAssertEqual(stats["cluster.echo.grpc.5"], 1)
        XCTAssertEqual(stats["cluster.echo.grpc.success"], 2)
        XCTAssertEqual(stats["cluster.echo.grpc.failure"], 1)
        XCTAssertEqual(stats["cluster.echo.grpc.total"], 3)
        let prometheus = gw.admin("/stats/prometheus")?.body ?? ""
        XCTAssertTrue(prometheus.split(separator: "\n").contains { $0.contains("grpc_total") && $0.contains("echo") && $0.hasSuffix(" 3") },
                      prometheus.split(separator: "\n").filter { $0.contains("grpc") }.joined(separator: "\n"))
    }

    func testTrailersBecomeATrailingHeadersFrameAndRequestTrailersGoUpstream() throws {
        let gw = try GatewayProcess(config: config())
        let r = try peer(["raw", String(gw.port), "/test.Echo/Unary", "b:abc", "t:x-client-trailer=sent", "t:x-checksum=42"])
        XCTAssertEqual(r["status"] as? Int, 200, "\(r)")
        XCTAssertEqual(r["frames"] as? [String], ["HEADERS", "DATA", "TRAILERS"], "\(r)")
        XCTAssertEqual((r["trailers"] as? [String: String])?["grpc-status"], "0")
        XCTAssertEqual((r["trailers"] as? [String: String])?["x-trailer"], "yes")
        XCTAssertEqual(r["messages"] as? [String], ["ABC"])
        let seen = seenByUpstream(1).first
        XCTAssertEqual(seen?["trailers"] as? [String: String], ["x-client-trailer": "sent", "x-checksum": "42"], "\(seen ?? [:])")

        // Trailers that would frame or route the message are refused, the stream answered 400
        // as a gRPC error (INTERNAL), and nothing of them goes upstream.
        let bad = try peer(["raw", String(gw.port), "/test.Echo/Unary", "t:content-length=5"])
        XCTAssertEqual(bad["status"] as? Int, 200, "\(bad)")
        XCTAssertEqual((bad["headers"] as? [String: String])?["grpc-status"], "13", "\(bad)")
    }

    func testATrailersOnlyAnswerPassesAsOneHeadersFrame() throws {
        let gw = try GatewayProcess(config: config())
        // Every second call of Flaky is trailers-only: the first one is.
        let r = try peer(["raw", String(gw.port), "/test.Echo/Flaky"])
        XCTAssertEqual(r["frames"] as? [String], ["HEADERS END_STREAM"], "\(r)")
        XCTAssertEqual((r["headers"] as? [String: String])?["grpc-status"], "14")
        XCTAssertEqual((r["headers"] as? [String: String])?["grpc-message"], "try again")
        XCTAssertEqual(statsOf(gw)["cluster.echo.grpc.14"], 1)
    }

    // MARK: retries

    func testUnavailableInATrailersOnlyAnswerIsRetried() throws {
        let gw = try GatewayProcess(config: config(retries: #"{"attempts": 2, "retryOn": "unavailable"}"#))
        let r = try peer(["unary", "127.0.0.1:\(gw.port)", "/test.Echo/Flaky"])
        XCTAssertEqual(r["code"] as? String, "OK", "\(r)")
        XCTAssertEqual(r["replies"] as? [String], ["second time lucky"])
        XCTAssertEqual(seenByUpstream(2).count, 2, "the first try answered UNAVAILABLE, the retry OK")
        let stats = statsOf(gw)
        XCTAssertEqual(stats["cluster.echo.upstream_rq_retry"], 1)
        XCTAssertEqual(stats["cluster.echo.upstream_rq_retry_success"], 1)

        // Without a gRPC condition the same answer reaches the client.
        let plain = try GatewayProcess(config: config(retries: #"{"attempts": 2, "retryOn": "5xx"}"#))
        let first = try peer(["unary", "127.0.0.1:\(plain.port)", "/test.Echo/Flaky"])
        XCTAssertEqual(first["code"] as? String, "UNAVAILABLE", "\(first)")
        XCTAssertEqual(first["details"] as? String, "try again")
    }

    // MARK: local replies

    func testOverflowIsAnsweredAsUnavailableWithTheOverflowCounted() throws {
        let gw = try GatewayProcess(config: config(pool: #""tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1}"#))
        let r = try peer(["many", "127.0.0.1:\(gw.port)", "/test.Echo/Slow", "n=6"])
        let codes = r["codes"] as? [String] ?? []
        XCTAssertEqual(codes.count, 6, "\(r)")
        // The first call waits for the one connection (pending), so at least four overflow.
        let refused = codes.filter { $0 == "UNAVAILABLE" }.count
        XCTAssertGreaterThanOrEqual(refused, 4, "\(codes)")
        XCTAssertGreaterThanOrEqual(codes.filter { $0 == "OK" }.count, 1, "\(codes)")
        XCTAssertEqual(refused + codes.filter { $0 == "OK" }.count, 6, "\(codes)")
        let stats = statsOf(gw)
        XCTAssertEqual(stats["cluster.echo.upstream_rq_pending_overflow"], refused)
        XCTAssertEqual(stats["cluster.echo.grpc.14"], refused)
        XCTAssertEqual(stats["http.ingress.downstream_rq_2xx"], 6, "as in Envoy, a gRPC error goes with a 200")
        // The log keeps the flag.
        let lines = logLines(gw)
        XCTAssertEqual(lines.filter { $0.contains("\"POST /test.Echo/Slow HTTP/2\" 200 UO") }.count, refused, lines.joined(separator: "\n"))
    }

    func testNoRouteAndRouteTimeoutAreGRPCErrors() throws {
        let gw = try GatewayProcess(config: config(route: #", "timeout": "500ms""#))
        let target = "127.0.0.1:\(gw.port)"
        let missing = try peer(["unary", target, "/other.Service/Call"])
        XCTAssertEqual(missing["code"] as? String, "UNIMPLEMENTED", "404 maps to UNIMPLEMENTED: \(missing)")
        XCTAssertEqual(missing["details"] as? String, "route not found")
        let slow = try peer(["unary", target, "/test.Echo/Slow"])
        XCTAssertEqual(slow["code"] as? String, "UNAVAILABLE", "504 maps to UNAVAILABLE: \(slow)")
        XCTAssertEqual(slow["details"] as? String, "upstream request timeout")
        XCTAssertEqual(statsOf(gw)["cluster.echo.upstream_rq_timeout"], 1)
        let raw = try peer(["raw", String(gw.port), "/nowhere"])
        XCTAssertEqual(raw["frames"] as? [String], ["HEADERS END_STREAM"], "trailers-only: \(raw)")
        XCTAssertEqual((raw["headers"] as? [String: String])?["content-type"], "application/grpc")
        XCTAssertEqual((raw["headers"] as? [String: String])?["grpc-status"], "12")
    }

    func testRateLimitAndFaultAbortAreGRPCErrorsWithTheirCounters() throws {
        let limited = try GatewayProcess(config: config(route: #", "localRateLimit": {"tokenBucket": {"maxTokens": 1, "fillInterval": "1h"}}"#))
        let target = "127.0.0.1:\(limited.port)"
        XCTAssertEqual(try peer(["unary", target, "/test.Echo/Unary"])["code"] as? String, "OK")
        let refused = try peer(["unary", target, "/test.Echo/Unary"])
        XCTAssertEqual(refused["code"] as? String, "UNAVAILABLE", "429 maps to UNAVAILABLE: \(refused)")
        XCTAssertEqual(refused["details"] as? String, "local_rate_limited")
        XCTAssertEqual(statsOf(limited)["route.grpc.local_rate_limit.rate_limited"], 1)

        let faulty = try GatewayProcess(config: config(route: #", "fault": {"abort": {"httpStatus": 403, "percentage": {"value": 100}}}"#))
        let aborted = try peer(["unary", "127.0.0.1:\(faulty.port)", "/test.Echo/Unary"])
        XCTAssertEqual(aborted["code"] as? String, "PERMISSION_DENIED", "403 maps to PERMISSION_DENIED: \(aborted)")
        XCTAssertEqual(aborted["details"] as? String, "fault filter abort")
        XCTAssertEqual(statsOf(faulty)["route.grpc.fault.aborts_injected"], 1)
        XCTAssertEqual(statsOf(faulty)["cluster.echo.grpc.7"], 1)
        // Istio's abort.grpcStatus: the call gets that status.
        let grpcFault = try GatewayProcess(config: config(route: #", "fault": {"abort": {"grpcStatus": "RESOURCE_EXHAUSTED", "percentage": {"value": 100}}}"#))
        let exhausted = try peer(["unary", "127.0.0.1:\(grpcFault.port)", "/test.Echo/Unary"])
        XCTAssertEqual(exhausted["code"] as? String, "RESOURCE_EXHAUSTED", "\(exhausted)")
        XCTAssertEqual(seenByUpstream(1).count, 1, "only the call the limiter let through reached the upstream")
    }

    // MARK: grpc-timeout

    func testGRPCTimeoutBoundsTheCallAndTheRouteTimeoutCapsIt() throws {
        // No route timeout: the call's own grpc-timeout is the limit (Istio's max_grpc_timeout
        // is infinite then).
        let gw = try GatewayProcess(config: config())
        let r = try peer(["raw", String(gw.port), "/test.Echo/Slow", "h:grpc-timeout=300m"])
        XCTAssertEqual((r["headers"] as? [String: String])?["grpc-status"], "14", "\(r)")
        let seconds = r["seconds"] as? Double ?? 99
        XCTAssertLessThan(seconds, 2.5, "answered at the call's deadline, not the upstream's 3 s")
        XCTAssertGreaterThanOrEqual(seconds, 0.25)
        XCTAssertEqual(statsOf(gw)["cluster.echo.upstream_rq_timeout"], 1)
        // The header goes upstream unchanged.
        XCTAssertEqual((seenByUpstream(1).first?["headers"] as? [String: String])?["grpc-timeout"], "300m")

        // grpcio's own deadline travels as grpc-timeout: the client sees its call end in time.
        let client = try peer(["unary", "127.0.0.1:\(gw.port)", "/test.Echo/Slow", "timeout=0.5"])
        XCTAssertTrue(["DEADLINE_EXCEEDED", "UNAVAILABLE"].contains(client["code"] as? String ?? ""), "\(client)")

        // A route timeout shorter than the header wins.
        let capped = try GatewayProcess(config: config(route: #", "timeout": "300ms""#))
        let c = try peer(["raw", String(capped.port), "/test.Echo/Slow", "h:grpc-timeout=10S"])
        XCTAssertLessThan(c["seconds"] as? Double ?? 99, 2.5, "\(c)")
        XCTAssertEqual((c["headers"] as? [String: String])?["grpc-status"], "14")
    }

    // MARK: TLS

    func testGRPCOverTLSNegotiatesH2ByALPN() throws {
        let pki = try TLSTests.PKI.make(for: self)
        let port = try refusedPort()
        let server = #"{"port": {"number": \#(port), "name": "grpc", "protocol": "GRPC"}, "hosts": ["shop.example"],"#
            + #" "tls": {"mode": "SIMPLE", "serverCertificate": "\#(pki.path("shop.pem"))", "privateKey": "\#(pki.path("shop.key"))"}}"#
        let gw = try GatewayProcess(config: config(listener: "", gateways: #", "gateways": [{"servers": [\#(server)]}]"#))
        _ = gw
        let r = try peer(["unary", "127.0.0.1:\(port)", "/test.Echo/Unary", "payload=over tls", "ca=\(pki.path("ca.pem"))",
                          "name=shop.example"])
        XCTAssertEqual(r["code"] as? String, "OK", "\(r)")
        XCTAssertEqual(r["replies"] as? [String], ["OVER TLS"])
        XCTAssertEqual((r["trailing"] as? [String: String])?["x-trailer"], "yes")
        let missing = try peer(["unary", "127.0.0.1:\(port)", "/test.Echo/NotFound", "ca=\(pki.path("ca.pem"))", "name=shop.example"])
        XCTAssertEqual(missing["code"] as? String, "NOT_FOUND", "\(missing)")
        let headers = seenByUpstream(2).first?["headers"] as? [String: String]
        XCTAssertEqual(headers?["x-forwarded-proto"], "https")
    }
}
