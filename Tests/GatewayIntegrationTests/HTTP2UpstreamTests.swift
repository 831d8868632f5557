import Foundation
import XCTest

/// HTTP/2 upstreams (`h2UpgradePolicy: UPGRADE`, `useClientProtocol`, ServiceEntry ports with
/// protocol HTTP2/GRPC) through the real `gateway` process, against a real HTTP/2 server
/// (Python's `h2`, `H2Upstream`), with curl over HTTP/1.1 and HTTP/2 and raw sockets as clients:
/// Envoy's HTTP/2 pool semantics (streams multiplexed over few connections, `http2MaxRequests`,
/// `maxConcurrentStreams`, pending requests waiting for a stream, GOAWAY, refused streams),
/// hostile upstreams, and bodies past the flow-control windows.
final class HTTP2UpstreamTests: XCTestCase {
    func config(_ up: H2Upstream, pool: String = #""h2UpgradePolicy": "UPGRADE""#, tcp: String = "",
                retries: String = #"{"attempts": 0}"#, portProtocol: String? = nil, listener: String = "",
                tls: String = "") -> String {
        let entry = portProtocol.map {
            #"{"host": "svc", "ports": [{"number": \#(up.port), "name": "p", "protocol": "\#($0)"}], "endpoints": [{"address": "127.0.0.1"}]}"#
        } ?? #"{"host": "svc", "endpoints": [{"address": "127.0.0.1", "port": \#(up.port)}]}"#
        return """
        {"listener": {"http2": {"enabled": true}\(listener)},
         "serviceEntries": [\(entry)],
         "destinationRules": [{"host": "svc", "trafficPolicy": {"connectionPool": {"tcp": {\(tcp)}, "http": {\(pool)}}\(tls)}}],
         "virtualServices": [{"http": [{"name": "r", "route": [{"destination": {"host": "svc"}}], "retries": \(retries)}]}]}
        """
    }

    @discardableResult
    func curl(_ args: [String]) throws -> String {
        String(decoding: try outputOf(URL(fileURLWithPath: "/usr/bin/env"), ["curl", "-s", "--max-time", "20"] + args),
               as: UTF8.self)
    }

    func stat(_ gw: GatewayProcess, _ name: String) -> Int {
        for line in (gw.admin("/stats")?.body ?? "").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0] == name { return Int(parts[1].trimmingCharacters(in: .whitespaces)) ?? -1 }
        }
        return -1
    }

    func get(_ gw: GatewayProcess, _ path: String, timeout: Double = 20) -> RawResponse? {
        httpRequest(port: gw.port, path: path, timeout: timeout)
    }

    // MARK: multiplexing

    func testRequestsOfHTTP1AndHTTP2ClientsShareOneMultiplexedConnection() throws {
        let up = try H2Upstream()
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up), extraArguments: ["--threads", "1"])

        // HTTP/1.1 and HTTP/2 clients alike reach the upstream over HTTP/2.
        let one = try XCTUnwrap(get(gw, "/first"))
        XCTAssertEqual(one.status, 200)
        XCTAssertEqual(one.body, "ok /first")
        XCTAssertEqual(one.header("x-upstream-proto"), "h2")
        XCTAssertEqual(one.header("x-request-authority"), "127.0.0.1:\(gw.port)", "Host became :authority")
        XCTAssertEqual(one.header("x-request-scheme"), "http")
        let h2 = try curl(["--http2-prior-knowledge", "-D", "-", "http://127.0.0.1:\(gw.port)/second"])
        XCTAssertTrue(h2.hasPrefix("HTTP/2 200"), h2)
        XCTAssertTrue(h2.hasSuffix("ok /second"), h2)

        // 40 clients at once, each waiting 300 ms upstream: streams side by side on one connection.
        let port = gw.port
        let results = concurrentRequests(40) { i in httpRequest(port: port, path: "/many/\(i)?delay=300", timeout: 20) }
        XCTAssertEqual(results.filter { $0?.status == 200 }.count, 40, results.map { "\($0?.status ?? 0)" }.joined(separator: ","))
        XCTAssertEqual(results.compactMap { $0?.body }.sorted(), (0..<40).map { "ok /many/\($0)" }.sorted())

        let counts = up.stats()
        XCTAssertEqual(counts["connections"], 1, "\(counts)")
        XCTAssertEqual(counts["requests"], 42)
        XCTAssertGreaterThan(counts["maxConcurrent"] ?? 0, 10, "the requests were multiplexed: \(counts)")
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_cx_total"), 1)
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_cx_http2_total"), 1)
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_rq_total"), 42)
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_rq_2xx"), 42)
        // /clusters shows the one connection; config_dump the protocol.
        XCTAssertTrue(gw.admin("/clusters")?.body.contains("svc::127.0.0.1:\(up.port)::cx_active::1") == true,
                      gw.admin("/clusters")?.body ?? "")
        XCTAssertTrue(gw.admin("/config_dump")?.body.contains(#""upstreamProtocol":"HTTP/2""#) == true)
    }

    func testUseClientProtocolSendsEachClientsProtocolUpstream() throws {
        let up = try H2Upstream()
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up, pool: #""useClientProtocol": true"#), extraArguments: ["--threads", "1"])
        XCTAssertEqual(get(gw, "/a")?.header("x-upstream-proto"), "h1")
        let h2 = try curl(["--http2-prior-knowledge", "-D", "-", "http://127.0.0.1:\(gw.port)/b"])
        XCTAssertTrue(h2.lowercased().contains("x-upstream-proto: h2"), h2)
        XCTAssertEqual(up.stats()["h1"], 1)
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_cx_http2_total"), 1)
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_cx_total"), 2)
    }

    func testServiceEntryPortsWithProtocolGRPCOrHTTP2SpeakHTTP2Upstream() throws {
        let up = try H2Upstream()
        defer { up.close() }
        for proto in ["GRPC", "HTTP2"] {
            let gw = try GatewayProcess(config: config(up, pool: "", portProtocol: proto))
            XCTAssertEqual(get(gw, "/p")?.header("x-upstream-proto"), "h2", proto)
        }
        // An HTTP port with DO_NOT_UPGRADE stays HTTP/1.1.
        let gw = try GatewayProcess(config: config(up, pool: #""h2UpgradePolicy": "DO_NOT_UPGRADE""#, portProtocol: "HTTP"))
        XCTAssertEqual(get(gw, "/p")?.header("x-upstream-proto"), "h1")
    }

    // MARK: Envoy's HTTP/2 pool limits

    func testHTTP2MaxRequestsBoundsActiveStreamsWith503UO() throws {
        let up = try H2Upstream()
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up, pool: #""h2UpgradePolicy": "UPGRADE", "http2MaxRequests": 3"#))
        let port = gw.port
        let results = concurrentRequests(12) { i in httpRequest(port: port, path: "/slow/\(i)?delay=1000", timeout: 20) }
        let ok = results.filter { $0?.status == 200 }.count
        let shed = results.filter { $0?.status == 503 }
        XCTAssertLessThanOrEqual(ok, 3 + 1, "at most http2MaxRequests at once (the counter is shared by the event loops)")
        XCTAssertGreaterThanOrEqual(shed.count, 8)
        XCTAssertEqual(shed.first??.header("x-envoy-overloaded"), "true")
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_rq_pending_overflow"), shed.count)
        XCTAssertLessThanOrEqual(up.stats()["maxConcurrent"] ?? 99, 3)
    }

    /// The seed's breaker (one connection, one pending request) over HTTP/2 with one stream per
    /// connection: one request upstream, one waiting for its stream, the rest shed at once.
    func testSeedsBreakerOverHTTP2WithOneStreamOneConnectionOnePending() throws {
        let up = try H2Upstream()
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up, pool: #""h2UpgradePolicy": "UPGRADE", "maxConcurrentStreams": 1, "http1MaxPendingRequests": 1"#,
                                                   tcp: #""maxConnections": 1"#), extraArguments: ["--threads", "1"])
        // The connection is up (the first request waited for it), so the next ones meet the stream limit.
        XCTAssertEqual(get(gw, "/warm")?.status, 200)
        let start = Date()
        let port = gw.port
        let results = concurrentRequests(6) { i in httpRequest(port: port, path: "/s/\(i)?delay=800", timeout: 20) }
        XCTAssertEqual(results.filter { $0?.status == 200 }.count, 2, results.map { "\($0?.status ?? 0)" }.joined(separator: ","))
        XCTAssertEqual(results.filter { $0?.status == 503 }.count, 4)
        XCTAssertGreaterThan(Date().timeIntervalSince(start), 1.5, "the pending one waited for the stream")
        let counts = up.stats()
        XCTAssertEqual(counts["connections"], 1, "\(counts)")
        XCTAssertEqual(counts["maxConcurrent"], 1)
        XCTAssertEqual(counts["requests"], 3)
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_rq_pending_overflow"), 4)
        // The first waited for the connection, the second for its stream.
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_rq_pending_total"), 2)
    }

    /// A stream limit below the demand opens another connection only when every connection is at
    /// its limit, within maxConnections.
    func testMaxConcurrentStreamsOpensConnectionsOnlyWhenEveryOneIsFull() throws {
        let up = try H2Upstream()
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up, pool: #""h2UpgradePolicy": "UPGRADE", "maxConcurrentStreams": 5"#,
                                                   tcp: #""maxConnections": 3"#), extraArguments: ["--threads", "1"])
        let port = gw.port
        let results = concurrentRequests(15) { i in httpRequest(port: port, path: "/c/\(i)?delay=500", timeout: 20) }
        XCTAssertEqual(results.filter { $0?.status == 200 }.count, 15)
        let counts = up.stats()
        XCTAssertEqual(counts["connections"], 3, "\(counts)")
        XCTAssertEqual(counts["maxConcurrent"], 5)
        // Sequential requests reuse one of them: no new connection.
        for i in 0..<5 { XCTAssertEqual(get(gw, "/again/\(i)")?.status, 200) }
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_cx_total"), 3)
    }

    /// The upstream's own SETTINGS_MAX_CONCURRENT_STREAMS is honoured: requests beyond it wait
    /// for a stream (or a new connection), none is refused.
    func testUpstreamsOwnStreamLimitIsHonoured() throws {
        let up = try H2Upstream(["--max-streams", "2"])
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up, tcp: #""maxConnections": 1"#), extraArguments: ["--threads", "1"])
        XCTAssertEqual(get(gw, "/warm")?.status, 200)  // the upstream's SETTINGS are known from here on
        let port = gw.port
        let results = concurrentRequests(8) { i in httpRequest(port: port, path: "/l/\(i)?delay=300", timeout: 20) }
        XCTAssertEqual(results.filter { $0?.status == 200 }.count, 8)
        let counts = up.stats()
        XCTAssertEqual(counts["maxConcurrent"], 2, "\(counts)")
        XCTAssertEqual(counts["connections"], 1)
    }

    func testMaxRequestsPerConnectionDrainsAfterThatManyStreams() throws {
        let up = try H2Upstream()
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up, pool: #""h2UpgradePolicy": "UPGRADE", "maxRequestsPerConnection": 3"#),
                                    extraArguments: ["--threads", "1"])
        for i in 0..<9 { XCTAssertEqual(get(gw, "/m/\(i)")?.status, 200) }
        XCTAssertEqual(up.stats()["connections"], 3)
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_cx_max_requests"), 3)
    }

    func testIdleConnectionsCloseAfterIdleTimeout() throws {
        let up = try H2Upstream()
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up, pool: #""h2UpgradePolicy": "UPGRADE", "idleTimeout": "1s""#),
                                    extraArguments: ["--threads", "1"])
        XCTAssertEqual(get(gw, "/i")?.status, 200)
        XCTAssertTrue(waitUntil(5) { self.stat(gw, "cluster.svc.upstream_cx_idle_timeout") == 1 })
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_cx_active"), 0)
        XCTAssertEqual(get(gw, "/i2")?.status, 200)
        XCTAssertEqual(up.stats()["connections"], 2)
    }

    /// `maxConnectionDuration`: a busy connection past it drains (its stream finishes, the next
    /// request gets a new connection); an idle one closes at the next sweep.
    func testMaxConnectionDurationDrainsTheConnection() throws {
        let up = try H2Upstream()
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up, tcp: #""maxConnectionDuration": "500ms""#), extraArguments: ["--threads", "1"])
        XCTAssertEqual(get(gw, "/long?delay=900")?.status, 200, "a stream in flight finishes")
        XCTAssertEqual(get(gw, "/next")?.status, 200)
        XCTAssertEqual(up.stats()["connections"], 2)
        XCTAssertTrue(waitUntil(5) { self.stat(gw, "cluster.svc.upstream_cx_active") == 0 })
        XCTAssertGreaterThanOrEqual(stat(gw, "cluster.svc.upstream_cx_max_duration_reached"), 2)
    }

    // MARK: GOAWAY, refused and reset streams

    /// An upstream that sends GOAWAY every 5 requests: the streams above its last stream id were
    /// never processed and are retried (refused-stream, in Istio's default retry policy) on a
    /// new connection. No request is lost, none is processed twice.
    func testGoAwayMidLoadLosesNoRequestAndProcessesNoneTwice() throws {
        let up = try H2Upstream(["--goaway-every", "5"])
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up, retries: #"{"attempts": 5, "retryOn": "refused-stream"}"#))
        let port = gw.port
        let results = concurrentRequests(60) { i in httpRequest(port: port, path: "/g/\(i)?delay=50", timeout: 20) }
        XCTAssertEqual(results.filter { $0?.status == 200 }.count, 60,
                       results.filter { $0?.status != 200 }.map { "\($0?.status ?? 0) \($0?.body ?? "")" }.joined(separator: "\n"))
        let counts = up.stats()
        XCTAssertEqual(counts["requests"], 60, "each processed once: \(counts)")
        XCTAssertGreaterThanOrEqual(counts["connections"] ?? 0, 12)
    }

    func testRefusedStreamsAreRetriedOnRefusedStream() throws {
        let up = try H2Upstream(["--refuse-every", "2"])
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up, retries: #"{"attempts": 3, "retryOn": "refused-stream"}"#))
        for i in 0..<6 {
            let r = get(gw, "/r/\(i)")
            XCTAssertEqual(r?.status, 200, r?.body ?? "")
        }
        XCTAssertGreaterThanOrEqual(up.stats()["refused"] ?? 0, 3)
        XCTAssertGreaterThanOrEqual(stat(gw, "cluster.svc.upstream_rq_retry"), 3)

        // Without retries a refused stream is a 503 (a reset before any response).
        let noRetry = try GatewayProcess(config: config(up))
        let statuses = (0..<4).map { get(noRetry, "/n/\($0)")?.status ?? 0 }
        XCTAssertTrue(statuses.contains(503), "\(statuses)")
        XCTAssertTrue(statuses.contains(200), "\(statuses)")
    }

    func testUpstreamResetsAndClosesAre503AndTheGatewayGoesOn() throws {
        let up = try H2Upstream()
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up))
        let reset = try XCTUnwrap(get(gw, "/reset"))
        XCTAssertEqual(reset.status, 503)
        XCTAssertTrue(reset.body.contains("reset"), reset.body)
        XCTAssertEqual(get(gw, "/close")?.status, 503)
        XCTAssertEqual(get(gw, "/after")?.status, 200)
        XCTAssertGreaterThanOrEqual(stat(gw, "cluster.svc.upstream_rq_rx_reset"), 2)

        // `reset` in retryOn retries a reset stream.
        let retrying = try GatewayProcess(config: config(up, retries: #"{"attempts": 2, "retryOn": "reset"}"#))
        XCTAssertEqual(get(retrying, "/reset")?.status, 503)
        XCTAssertEqual(stat(retrying, "cluster.svc.upstream_rq_retry"), 2)
    }

    /// A response header block of several MiB: NIOHTTP2 stops decoding at the gateway's
    /// SETTINGS_MAX_HEADER_LIST_SIZE, the upstream is a protocol error (502 UPE), and the
    /// gateway serves the next request.
    func testHugeResponseHeaderBlockIs502AndTheGatewayStaysUp() throws {
        let up = try H2Upstream()
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up))
        for _ in 0..<3 {
            let r = try XCTUnwrap(get(gw, "/huge"))
            XCTAssertEqual(r.status, 502, r.body)
        }
        XCTAssertEqual(get(gw, "/fine")?.status, 200)
        XCTAssertGreaterThanOrEqual(stat(gw, "cluster.svc.upstream_cx_protocol_error"), 3)
        let h2 = try curl(["--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(gw.port)/huge"])
        XCTAssertEqual(h2, "502")
    }

    // MARK: bodies and trailers

    func testLargeBodiesBothWaysPastTheFlowControlWindows() throws {
        let up = try H2Upstream()
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up))
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("h2up-body-\(getpid())")
        var bytes = [UInt8](repeating: 0, count: 6 << 20)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13) }
        try Data(bytes).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let base = "http://127.0.0.1:\(gw.port)"
        // HTTP/1.1 client, sized body; HTTP/1.1 client, chunked body; HTTP/2 client.
        for extra in [[String](), ["-H", "transfer-encoding: chunked"], ["--http2-prior-knowledge"]] {
            let out = try curl(extra + ["--data-binary", "@\(file.path)", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                                        "\(base)/echo"])
            XCTAssertEqual(out, "200 \(bytes.count)", "\(extra)")
        }
        let big = try curl(["-o", "/dev/null", "-w", "%{http_code} %{size_download}", "\(base)/big?n=20000000"])
        XCTAssertEqual(big, "200 20000000")
    }

    /// A client that does not read: the gateway stops reading the upstream's stream (its HTTP/2
    /// window is not refilled, so the upstream stops sending), then resumes; every byte arrives.
    func testASlowClientPausesTheUpstreamStream() throws {
        let up = try H2Upstream()
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up))
        let c = try RawConnection(port: gw.port, timeout: 20)
        let size = 16 << 20
        c.send("GET /big?n=\(size) HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertTrue(waitUntil(10) { self.stat(gw, "cluster.svc.upstream_flow_control_paused_reading_total") >= 1 })
        var got = 0
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while got < size {
            let n = recv(c.fd, &chunk, chunk.count, 0)
            guard n > 0 else { break }
            got += n
        }
        XCTAssertGreaterThan(got, size, "the head and the whole body")
        XCTAssertGreaterThanOrEqual(stat(gw, "cluster.svc.upstream_flow_control_resumed_reading_total"), 1)
        XCTAssertEqual(get(gw, "/after")?.status, 200)
    }

    /// A per-try timeout resets the stream (the upstream sees RST_STREAM), and the connection
    /// goes on carrying the next request.
    func testPerTryTimeoutResetsTheStreamOnly() throws {
        let up = try H2Upstream()
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up, retries: #"{"attempts": 1, "perTryTimeout": "200ms", "retryOn": "5xx"}"#),
                                    extraArguments: ["--threads", "1"])
        let slow = try XCTUnwrap(get(gw, "/slow?delay=3000"))
        XCTAssertEqual(slow.status, 504)
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_rq_per_try_timeout"), 2)
        XCTAssertEqual(get(gw, "/quick")?.status, 200)
        XCTAssertEqual(up.stats()["connections"], 1, "a reset stream does not cost the connection")
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_cx_total"), 1)
    }

    /// Upstream trailers come out as an HTTP/1.1 chunked trailer section; a gRPC request gets `te: trailers`.
    func testUpstreamTrailersBecomeAChunkedTrailerSection() throws {
        let up = try H2Upstream()
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up))
        let c = try RawConnection(port: gw.port)
        c.send("GET /trailers HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertTrue(c.waitFor("\r\n0\r\n"), "chunked")
        XCTAssertTrue(c.waitFor("grpc-status: 0\r\nx-trailer: yes\r\n\r\n"))
        let echo = try XCTUnwrap(httpRequest(port: gw.port, method: "POST", path: "/echo",
                                             headers: ["Content-Type": "application/grpc"], body: "abc"))
        XCTAssertEqual(echo.header("x-request-te"), "trailers")
        XCTAssertEqual(echo.body, "abc")
    }

    // MARK: TLS

    /// ALPN h2 over the DestinationRule's TLS: the upstream (Python's ssl, offering h2 only)
    /// gets HTTP/2 with `:scheme https`, streams multiplexed on one verified connection.
    func testALPNh2OverUpstreamTLS() throws {
        let pki = try TLSTests.PKI.make(for: self)
        let up = try H2Upstream(["--tls", pki.path("upstream.pem"), pki.path("upstream.key")])
        defer { up.close() }
        let tls = #", "tls": {"mode": "SIMPLE", "caCertificates": "\#(pki.path("ca.pem"))", "sni": "upstream.test"}"#
        let gw = try GatewayProcess(config: config(up, tls: tls), extraArguments: ["--threads", "1"])
        let one = try XCTUnwrap(get(gw, "/secure"))
        XCTAssertEqual(one.status, 200, one.body)
        XCTAssertEqual(one.header("x-upstream-proto"), "h2")
        XCTAssertEqual(one.header("x-request-scheme"), "https")
        let port = gw.port
        let results = concurrentRequests(10) { i in httpRequest(port: port, path: "/t/\(i)?delay=200", timeout: 20) }
        XCTAssertEqual(results.filter { $0?.status == 200 }.count, 10)
        let counts = up.stats(tls: true)
        XCTAssertEqual(counts["connections"], 1, "\(counts)")
        XCTAssertGreaterThan(counts["maxConcurrent"] ?? 0, 1)
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_cx_http2_total"), 1)
    }

    // MARK: a gRPC server as the upstream

    /// Python's grpcio (a second, independent HTTP/2 server) behind a ServiceEntry port with
    /// protocol GRPC; an HTTP/1.1 client posts a gRPC frame: the server's answer comes back with
    /// its status in the chunked trailer section (it got `te: trailers`, which grpcio requires).
    func testGRPCServerUpstreamAnswersThroughTheGateway() throws {
        let script = FileManager.default.temporaryDirectory.appendingPathComponent("grpc-up-\(getpid()).py")
        try grpcServerSource.write(to: script, atomically: true, encoding: .utf8)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["python3", script.path]
        let out = Pipe()
        server.standardOutput = out
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            server.terminate()
            server.waitUntilExit()
        }
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        guard let grpcPort = Int(line.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw XCTSkip("grpcio is not installed (pip install grpcio): \(line)")
        }
        let config = """
            {"serviceEntries": [{"host": "grpc", "ports": [{"number": \(grpcPort), "name": "grpc", "protocol": "GRPC"}],
                                 "endpoints": [{"address": "127.0.0.1"}]}],
             "virtualServices": [{"http": [{"route": [{"destination": {"host": "grpc"}}], "retries": {"attempts": 0}}]}]}
            """
        let gw = try GatewayProcess(config: config, extraArguments: ["--threads", "1"])
        for (method, payload, status) in [("Echo", "hello", "0"), ("Fail", "x", "14")] {
            let c = try RawConnection(port: gw.port)
            let frame = [UInt8]([0, 0, 0, 0, UInt8(payload.utf8.count)]) + Array(payload.utf8)
            c.send("POST /svc/\(method) HTTP/1.1\r\nHost: grpc\r\nContent-Type: application/grpc\r\nContent-Length: \(frame.count)\r\n\r\n")
            c.send(frame)
            XCTAssertTrue(c.waitFor("HTTP/1.1 200"), method)
            XCTAssertTrue(c.waitFor("grpc-status: \(status)\r\n"), method)
            if method == "Echo" { XCTAssertTrue(c.waitFor("\r\n0\r\n"), "the body ended, then the trailers") }
        }
        XCTAssertEqual(stat(gw, "cluster.grpc.upstream_cx_http2_total"), 1)
    }
}

private let grpcServerSource = #"""
import sys
from concurrent import futures
import grpc

def echo(request, context):
    return request[::-1]

def fail(request, context):
    context.abort(grpc.StatusCode.UNAVAILABLE, "down")

handler = grpc.method_handlers_generic_handler("svc", {
    "Echo": grpc.unary_unary_rpc_method_handler(echo),
    "Fail": grpc.unary_unary_rpc_method_handler(fail),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
"""#
