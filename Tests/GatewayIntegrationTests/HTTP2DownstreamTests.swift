import Foundation
import NIOCore
import NIOPosix
import XCTest

/// HTTP/2 with prior knowledge on the plaintext listener (`listener.http2`), through the real
/// `gateway` process with real clients: curl, h2load (Debian's nghttp2-client) and Python's `h2`
/// (PyPI) for what those two cannot do (headers of many streams, hostile frames).
final class HTTP2DownstreamTests: XCTestCase {
    let group = MultiThreadedEventLoopGroup.singleton

    func config(_ up: TestUpstream, destinationRule: String = "", route: String = "", listener: String = "",
                retries: String = #"{"attempts": 0}"#) -> String {
        """
        {"listener": {"http2": {"enabled": true}\(listener)},
         "serviceEntries": [{"host": "svc", "endpoints": [{"address": "127.0.0.1", "port": \(up.port)}]}],
         "destinationRules": [\(destinationRule)],
         "virtualServices": [{"http": [{"name": "r", "route": [{"destination": {"host": "svc"}}],
                                         "retries": \(retries)\(route)}]}]}
        """
    }

    /// Runs a tool to its end; its standard output.
    @discardableResult
    func run(_ tool: String, _ args: [String]) throws -> String {
        // As a shell finds it: pip's python3 may come before the system's.
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":")
        let path = dirs.map { "\($0)/\(tool)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let path else { throw XCTSkip("\(tool) is not installed") }
        return String(decoding: try outputOf(URL(fileURLWithPath: path), args), as: UTF8.self)
    }

    static let clientScript: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("h2client-\(getpid()).py")
        try? h2ClientSource.write(to: url, atomically: true, encoding: .utf8)
        return url
    }()

    func h2client(_ args: [String]) throws -> [String: Any] {
        guard run0("python3", ["-c", "import h2.connection"]) else { throw XCTSkip("Python's h2 is not installed (pip install h2)") }
        let text = try run("python3", [Self.clientScript.path] + args)
        let last = text.split(separator: "\n").last.map(String.init) ?? ""
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any], "client said: \(text)")
    }

    func run0(_ tool: String, _ args: [String]) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [tool] + args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    func stat(_ gw: GatewayProcess, _ name: String) -> Int? {
        for line in (gw.admin("/stats")?.body ?? "").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0] == name { return Int(parts[1].trimmingCharacters(in: .whitespaces)) }
        }
        return nil
    }

    func streams(_ result: [String: Any]) -> [[String: Any]] {
        (result["streams"] as? [Any] ?? []).map { $0 as? [String: Any] ?? [:] }
    }

    /// The access log lines the gateway wrote, once it exited.
    func logLines(_ gw: GatewayProcess) -> [Substring] {
        gw.signal(SIGTERM)
        let data = gw.stdoutPipe.fileHandleForReading.readDataToEndOfFile()
        _ = gw.waitForExit(timeout: 15)
        return String(decoding: data, as: UTF8.self).split(separator: "\n")
    }

    // MARK: curl

    func testCurlWithPriorKnowledgeGetsTheUpstreamsAnswerOverHTTP2AndPostsABody() throws {
        let up = try TestUpstream(group: group, .init(body: "hello from upstream"))
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up))
        let base = "http://127.0.0.1:\(gw.port)"

        let get = try run("curl", ["-s", "--max-time", "10", "--http2-prior-knowledge", "-D", "-", "\(base)/items?x=1"])
        XCTAssertTrue(get.hasPrefix("HTTP/2 200"), get)
        XCTAssertTrue(get.hasSuffix("hello from upstream"), get)
        XCTAssertTrue(get.lowercased().contains("x-envoy-upstream-service-time:"), get)
        // The upstream's hop-by-hop `connection: keep-alive` does not reach an HTTP/2 client.
        XCTAssertFalse(get.lowercased().contains("connection:"), get)

        let body = String(repeating: "0123456789", count: 5000)
        let post = try run("curl", ["-s", "--max-time", "10", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                                    "-H", "content-type: text/plain", "--data-binary", body, "\(base)/orders"])
        XCTAssertEqual(post, "2 200")
        // Without a content-length the body goes upstream chunked; with one, as it came.
        let chunked = try h2client(["post", String(gw.port), "/chunked", "abcdefghijklmnopqrstuvwxyz"])
        XCTAssertEqual(streams(chunked).first?["status"] as? Int, 200)

        let seen = up.seenRequests
        XCTAssertEqual(seen.count, 3)
        XCTAssertEqual(seen.first?.uri, "/items?x=1")
        XCTAssertEqual(seen.first?.headers.first { $0.0.lowercased() == "host" }?.1, "127.0.0.1:\(gw.port)", ":authority became Host")
        XCTAssertEqual(seen.dropFirst().first?.method, "POST")
        XCTAssertEqual(seen.dropFirst().first?.body, body)
        XCTAssertEqual(seen.last?.body, "abcdefghijklmnopqrstuvwxyz")
        XCTAssertEqual(seen.last?.headers.first { $0.0.lowercased() == "transfer-encoding" }?.1, "chunked")

        // HTTP/1.1 on the same port is unchanged, and an `Upgrade: h2c` is not honoured.
        let h1 = try run("curl", ["-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "\(base)/a"])
        XCTAssertEqual(h1, "1.1 200")
        let upgrade = try run("curl", ["-s", "--max-time", "10", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "\(base)/a"])
        XCTAssertEqual(upgrade, "1.1 200")

        let lines = logLines(gw)
        XCTAssertTrue(lines.contains { $0.contains("\"GET /items?x=1 HTTP/2\" 200") }, lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains { $0.contains("\"POST /orders HTTP/2\" 200") }, lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains { $0.contains("\"GET /a HTTP/1.1\" 200") }, lines.joined(separator: "\n"))
    }

    /// The preface decides, however the first bytes arrive: an HTTP/2 preface in pieces, an
    /// HTTP/1.1 request that starts like it ("P" of POST), and a connection that sends nothing
    /// is closed at the request headers timeout.
    func testTheFirstBytesDecideTheProtocolWhateverTheirPieces() throws {
        let up = try TestUpstream(group: group, .init(body: "ok"))
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up, listener: ", \"requestHeadersTimeout\": \"1s\""),
                                    extraArguments: ["--access-log", "off"])
        let split = try h2client(["splitpreface", String(gw.port), "/split", "1"])
        XCTAssertEqual(streams(split).first?["status"] as? Int, 200, "\(split)")

        let post = try RawConnection(port: gw.port)
        post.send("P")
        usleep(100_000)
        post.send("OST /h1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        XCTAssertEqual(post.readResponse()?.status, 200)
        XCTAssertEqual(up.seenRequests.last?.body, "hi")

        let silent = try RawConnection(port: gw.port)
        XCTAssertTrue(silent.isClosedByPeer(), "a connection that never speaks is closed (within the 10 s receive timeout)")
    }

    // MARK: h2load

    func testH2loadManyConcurrentStreamsOnFewConnectionsAllSucceed() throws {
        let up = try TestUpstream(group: group, .init(body: "ok"))
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up), extraArguments: ["--access-log", "off"])
        let out = try run("h2load", ["-n", "2000", "-c", "4", "-m", "50", "http://127.0.0.1:\(gw.port)/load"])
        XCTAssertTrue(out.contains("requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored"), out)
        XCTAssertTrue(out.contains("status codes: 2000 2xx"), out)
        XCTAssertEqual(up.requests.load(ordering: .relaxed), 2000)
        XCTAssertEqual(stat(gw, "http.ingress.downstream_cx_http2_total"), 4)
        XCTAssertEqual(stat(gw, "http.ingress.downstream_rq_2xx"), 2000)
    }

    // MARK: route policies per stream

    /// The seed's breaker (one connection, one pending request) before a slow upstream: of 20
    /// streams opened at once on one connection, two are served and the others are shed with
    /// Envoy's overflow answer, each counted as overflow.
    func testBreakerShedsConcurrentStreamsWithOverloadedAndCountsThem() throws {
        let up = try TestUpstream(group: group, .init(delay: .milliseconds(500), body: "slow"))
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up, destinationRule: """
            {"host": "svc", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1}}}}
            """), extraArguments: ["--threads", "1"])
        let result = try h2client(["requests", String(gw.port), "/breaker", "20"])
        let all = streams(result)
        XCTAssertEqual(all.count, 20)
        let shed = all.filter { $0["status"] as? Int == 503 }
        let served = all.filter { $0["status"] as? Int == 200 }
        // As in Envoy, a request waiting for the connection to open is pending itself: twenty
        // streams in one read leave one served, sometimes two (one on the connection, one pending).
        XCTAssertEqual(served.count + shed.count, 20, "\(all)")
        XCTAssertGreaterThanOrEqual(served.count, 1, "\(all)")
        XCTAssertGreaterThanOrEqual(shed.count, 18, "\(all)")
        for s in shed { XCTAssertEqual((s["headers"] as? [String: String])?["x-envoy-overloaded"], "true") }
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_rq_pending_overflow"), shed.count)
        XCTAssertEqual(up.requests.load(ordering: .relaxed), served.count, "the upstream sees exactly the streams that passed")
        let lines = logLines(gw)
        XCTAssertEqual(lines.filter { $0.contains("HTTP/2\" 503 UO") }.count, shed.count, lines.joined(separator: "\n"))
    }

    func testRouteTimeoutAnswers504OnItsStreamOnly() throws {
        // The upstream takes 6 s; the bound leaves room for the Python client's start on a busy machine.
        let slow = try TestUpstream(group: group, .init(delay: .seconds(6), body: "late"))
        defer { slow.close() }
        let gw = try GatewayProcess(config: config(slow, route: ",\"timeout\": \"0.2s\""), extraArguments: ["--access-log", "off"])
        let started = Date()
        let result = try h2client(["requests", String(gw.port), "/slow", "3"])
        XCTAssertLessThan(Date().timeIntervalSince(started), 4, "the route timeout, not the upstream, ended the streams")
        let all = streams(result)
        XCTAssertEqual(all.map { $0["status"] as? Int }, [504, 504, 504], "\(all)")
        XCTAssertEqual(all.first?["body"] as? String, "upstream request timeout")
        XCTAssertNil(result["goaway"] as? Int, "the connection stays open")
        XCTAssertEqual(stat(gw, "cluster.svc.upstream_rq_timeout"), 3)
    }

    /// The local rate limit, retries and the fault filter act on each stream as on each
    /// HTTP/1.1 request: five tokens serve five of ten streams on one connection; a 5xx upstream
    /// is tried three times per stream; an abort fault answers every stream itself.
    func testRateLimitRetriesAndFaultsApplyPerStream() throws {
        let up = try TestUpstream(group: group, .init(body: "ok"))
        defer { up.close() }
        let limited = try GatewayProcess(config: config(up, route: """
            , "localRateLimit": {"tokenBucket": {"maxTokens": 5, "fillInterval": "1h"}}
            """), extraArguments: ["--access-log", "off", "--threads", "1"])
        let ten = streams(try h2client(["requests", String(limited.port), "/limited", "10"]))
        XCTAssertEqual(ten.filter { $0["status"] as? Int == 200 }.count, 5, "\(ten)")
        let refused = ten.filter { $0["status"] as? Int == 429 }
        XCTAssertEqual(refused.count, 5, "\(ten)")
        XCTAssertEqual((refused.first?["headers"] as? [String: String])?["ratelimit-remaining"], "0")
        XCTAssertEqual(up.requests.load(ordering: .relaxed), 5)

        let failing = try TestUpstream(group: group, .init(status: 503, body: "down"))
        defer { failing.close() }
        let retrying = try GatewayProcess(config: config(failing, retries: #"{"attempts": 2, "retryOn": "5xx"}"#),
                                          extraArguments: ["--access-log", "off"])
        let four = streams(try h2client(["requests", String(retrying.port), "/retry", "4"]))
        XCTAssertEqual(four.map { $0["status"] as? Int }, [503, 503, 503, 503], "\(four)")
        XCTAssertEqual(failing.requests.load(ordering: .relaxed), 12, "three tries per stream")
        XCTAssertEqual(stat(retrying, "cluster.svc.upstream_rq_retry"), 8)

        let faulty = try GatewayProcess(config: config(up, route: """
            , "fault": {"abort": {"httpStatus": 418, "percentage": {"value": 100}}}
            """), extraArguments: ["--access-log", "off"])
        let before = up.requests.load(ordering: .relaxed)
        let aborted = streams(try h2client(["requests", String(faulty.port), "/fault", "3"]))
        XCTAssertEqual(aborted.map { $0["status"] as? Int }, [418, 418, 418], "\(aborted)")
        XCTAssertEqual(aborted.first?["body"] as? String, "fault filter abort")
        XCTAssertEqual(up.requests.load(ordering: .relaxed), before, "an aborted stream reaches no upstream")
    }

    // MARK: limits and attacks

    /// CVE-2023-44487: a client opening and resetting streams as fast as it can is cut off with
    /// GOAWAY (ENHANCE_YOUR_CALM) once past the reset budget, and the gateway serves others.
    func testRapidResetIsCutOffWithGoAwayAndOthersAreServed() throws {
        let up = try TestUpstream(group: group, .init(delay: .milliseconds(50), body: "ok"))
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up), extraArguments: ["--access-log", "off"])
        let attack = try h2client(["rapidreset", String(gw.port), "/x", "5000"])
        XCTAssertEqual(attack["goaway"] as? Int, 0xB, "GOAWAY ENHANCE_YOUR_CALM: \(attack)")
        XCTAssertLessThan(up.requests.load(ordering: .relaxed), 400, "most reset streams never reached the upstream")
        XCTAssertGreaterThanOrEqual(stat(gw, "http.ingress.http2.connection_errors") ?? 0, 1)
        let after = try h2client(["requests", String(gw.port), "/y", "5"])
        XCTAssertEqual(streams(after).map { $0["status"] as? Int }, [200, 200, 200, 200, 200])
    }

    /// PING and SETTINGS floods (CVE-2019-9512, 9515) and the CONTINUATION flood (2024): the
    /// connection is ended with GOAWAY ENHANCE_YOUR_CALM, and the gateway serves others.
    func testPingAndContinuationFloodsEndTheConnection() throws {
        let up = try TestUpstream(group: group, .init(body: "ok"))
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up), extraArguments: ["--access-log", "off"])
        let pings = try h2client(["pingflood", String(gw.port), "/", "1000"])
        XCTAssertEqual(pings["goaway"] as? Int, 0xB, "\(pings)")
        let continuations = try h2client(["continuationflood", String(gw.port), "/", "1000"])
        XCTAssertEqual(continuations["goaway"] as? Int, 0xB, "\(continuations)")
        XCTAssertEqual(stat(gw, "http.ingress.http2.connection_errors"), 2)
        XCTAssertEqual(up.requests.load(ordering: .relaxed), 0)
        let after = try h2client(["requests", String(gw.port), "/y", "2"])
        XCTAssertEqual(streams(after).map { $0["status"] as? Int }, [200, 200])
    }

    /// Bodies larger than the windows (64 KiB per stream, 1 MiB per connection) both ways: the
    /// gateway's reads refill the client's windows, and the client's refill the gateway's.
    func testBodiesLargerThanTheFlowControlWindowsGoThroughWhole() throws {
        let big = String(repeating: "abcdefghij", count: 300_000)  // 3 MB
        let up = try TestUpstream(group: group, .init(body: big))
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up), extraArguments: ["--access-log", "off"])
        let bodyFile = FileManager.default.temporaryDirectory.appendingPathComponent("h2-body-\(getpid())")
        try big.write(to: bodyFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: bodyFile) }
        let out = try run("curl", ["-s", "--max-time", "20", "--http2-prior-knowledge", "-o", "/dev/null",
                                   "-w", "%{http_version} %{http_code} %{size_download}",
                                   "--data-binary", "@\(bodyFile.path)", "http://127.0.0.1:\(gw.port)/upload"])
        XCTAssertEqual(out, "2 200 \(big.utf8.count)")
        XCTAssertEqual(up.seenRequests.first?.body.count, big.utf8.count)
        XCTAssertTrue(up.seenRequests.first?.body == big, "the request body arrived whole and in order")
    }

    /// Header lists past the listener's limits: too many fields get the HeadParser's 431 on
    /// their stream, as over HTTP/1.1; a list past SETTINGS_MAX_HEADER_LIST_SIZE is refused
    /// while it is decoded (an HPACK bomb ends there), and neither reaches the upstream.
    func testTooManyHeadersAndOversizedHeaderListsAreRefused() throws {
        let up = try TestUpstream(group: group, .init(body: "ok"))
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up, listener: ", \"maxHeadersCount\": 20, \"maxRequestHeadersKb\": 4"),
                                    extraArguments: ["--access-log", "off"])
        let many = try h2client(["requests", String(gw.port), "/many", "1"] + (0..<40).map { "x-h\($0)=v" })
        XCTAssertEqual(streams(many).first?["status"] as? Int, 431, "\(many)")
        let big = try h2client(["requests", String(gw.port), "/big", "1", "x-big=" + String(repeating: "a", count: 4100)])
        XCTAssertEqual(streams(big).first?["status"] as? Int, 431, "\(big)")
        let huge = try h2client(["requests", String(gw.port), "/huge", "1", "x-huge=" + String(repeating: "b", count: 20000)])
        XCTAssertNotEqual(streams(huge).first?["status"] as? Int, 200, "\(huge)")
        XCTAssertEqual(up.requests.load(ordering: .relaxed), 0)
        // Connection-specific fields are malformed in HTTP/2 (RFC 9113 §8.2.2).
        let te = try h2client(["requests", String(gw.port), "/te", "1", "te=gzip"])
        XCTAssertNotEqual(streams(te).first?["status"] as? Int, 200, "\(te)")
        XCTAssertEqual(up.requests.load(ordering: .relaxed), 0)
        let fine = try h2client(["requests", String(gw.port), "/fine", "1", "x-ok=1"])
        XCTAssertEqual(streams(fine).first?["status"] as? Int, 200)
    }

    // MARK: drain

    /// SIGTERM: an HTTP/2 client gets GOAWAY (NO_ERROR, naming its stream as the last), its
    /// stream in flight still gets its answer, and the gateway exits once the connection is done.
    /// nghttp (nghttp2-client) prints the frames it receives.
    func testDrainSendsGoAwayAndLetsTheStreamInFlightFinish() throws {
        let up = try TestUpstream(group: group, .init(delay: .milliseconds(600), body: "finished"))
        defer { up.close() }
        let gw = try GatewayProcess(config: config(up), extraArguments: ["--access-log", "off"])
        guard run0("nghttp", ["--version"]) else { throw XCTSkip("nghttp is not installed (nghttp2-client)") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["nghttp", "-v", "http://127.0.0.1:\(gw.port)/slow"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        XCTAssertTrue(waitUntil(5) { up.requests.load(ordering: .relaxed) == 1 }, "the request reached the upstream")
        gw.signal(SIGTERM)
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(gw.waitForExit(timeout: 15), 0)
        let frames = String(decoding: data, as: UTF8.self)
        let goAway = try XCTUnwrap(frames.split(separator: "\n").firstIndex { $0.contains("recv GOAWAY frame") }, frames)
        let lines = frames.split(separator: "\n").map(String.init)
        // nghttp opens its request on the stream after the ones it declares for priorities.
        let request = try XCTUnwrap(lines.first { $0.contains("send HEADERS frame") }, frames)
        let streamID = try XCTUnwrap(request.split(separator: "stream_id=").last?.split(separator: ">").first, request)
        XCTAssertTrue(lines[goAway + 1].contains("(last_stream_id=\(streamID), error_code=NO_ERROR"), frames)
        let status = try XCTUnwrap(lines.firstIndex { $0.contains(":status: 200") }, frames)
        XCTAssertGreaterThan(status, goAway, "the answer came after the GOAWAY")
        XCTAssertTrue(frames.contains("finished"), frames)
        XCTAssertEqual(p.terminationStatus, 0, frames)
    }
}

private let h2ClientSource = #"""
import json, socket, sys, time
import h2.config, h2.connection, h2.events, h2.exceptions, h2.settings

# An HTTP/2 client with prior knowledge (Python's h2), for what curl and h2load cannot do: many
# streams with their headers read back, hostile frames. Prints one JSON object.
#   requests PORT PATH N [name=value ...]   N concurrent GETs on one connection
#   post PORT PATH BODY                      one POST with a body in several DATA frames
#   rapidreset PORT PATH N                   N streams, each reset at once; then one more GET
mode, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                                                    validate_outbound_headers=False,
                                                                    normalize_outbound_headers=False))
    c.initiate_connection()
    s.sendall(c.data_to_send())
    return s, c

def base(method="GET"):
    return [(":method", method), (":scheme", "http"), (":authority", "127.0.0.1:%d" % port), (":path", path)]

def pump(s, c, streams, until, deadline=15):
    """Reads events into `streams` until `until()` or the connection ends; returns the GOAWAY code or None."""
    goaway = None
    end = time.time() + deadline
    while not until() and time.time() < end:
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            return goaway if goaway is not None else "reset"
        if not data:
            return goaway if goaway is not None else "closed"
        try:
            events = c.receive_data(data)
        except h2.exceptions.ProtocolError:
            return goaway if goaway is not None else "protocol-error"
        for e in events:
            st = streams.setdefault(getattr(e, "stream_id", 0), {"status": None, "headers": {}, "body": "", "ended": False, "reset": None})
            if isinstance(e, h2.events.ResponseReceived):
                for n, v in e.headers:
                    if n == ":status":
                        st["status"] = int(v)
                    else:
                        st["headers"][n] = v
            elif isinstance(e, h2.events.DataReceived):
                st["body"] += e.data.decode("utf-8", "replace")
                c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            elif isinstance(e, h2.events.StreamEnded):
                st["ended"] = True
            elif isinstance(e, h2.events.StreamReset):
                st["reset"] = int(e.error_code)
                st["ended"] = True
            elif isinstance(e, h2.events.ConnectionTerminated):
                goaway = int(e.error_code)
        try:
            s.sendall(c.data_to_send())
        except (ConnectionResetError, BrokenPipeError):
            return goaway if goaway is not None else "reset"
    return goaway

def done(streams, ids):
    return all(streams.get(i, {}).get("ended") for i in ids)

if mode == "requests":
    n = int(sys.argv[4])
    extra = [tuple(a.split("=", 1)) for a in sys.argv[5:]]
    s, c = connect()
    ids = []
    for _ in range(n):
        i = c.get_next_available_stream_id()
        c.send_headers(i, base() + extra, end_stream=True)
        ids.append(i)
    s.sendall(c.data_to_send())
    streams = {}
    goaway = pump(s, c, streams, lambda: done(streams, ids))
    print(json.dumps({"goaway": goaway, "streams": [streams.get(i) for i in ids]}))
elif mode == "splitpreface":
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    first = c.data_to_send()
    # The 24-byte preface in three pieces, apart in time, then the rest.
    for piece in (first[:3], first[3:17], first[17:]):
        s.sendall(piece)
        time.sleep(0.05)
    i = c.get_next_available_stream_id()
    c.send_headers(i, base(), end_stream=True)
    s.sendall(c.data_to_send())
    streams = {}
    goaway = pump(s, c, streams, lambda: done(streams, [i]))
    print(json.dumps({"goaway": goaway, "streams": [streams.get(i)]}))
elif mode == "post":
    body = sys.argv[4].encode()
    s, c = connect()
    i = c.get_next_available_stream_id()
    c.send_headers(i, base("POST") + [("content-type", "text/plain")], end_stream=False)
    third = max(1, len(body) // 3)
    for k in range(0, len(body), third):
        c.send_data(i, body[k:k + third])
    c.end_stream(i)
    s.sendall(c.data_to_send())
    streams = {}
    goaway = pump(s, c, streams, lambda: done(streams, [i]))
    print(json.dumps({"goaway": goaway, "streams": [streams.get(i)]}))
elif mode == "rapidreset":
    n = int(sys.argv[4])
    s, c = connect()
    streams = {}
    sent = 0
    goaway = None
    try:
        for _ in range(n):
            i = c.get_next_available_stream_id()
            c.send_headers(i, base(), end_stream=True)
            c.reset_stream(i)
            s.sendall(c.data_to_send())
            sent += 1
    except (ConnectionResetError, BrokenPipeError, h2.exceptions.ProtocolError):
        pass
    goaway = pump(s, c, streams, lambda: c.state_machine.state == h2.connection.ConnectionState.CLOSED, deadline=5)
    print(json.dumps({"goaway": goaway, "sent": sent}))
elif mode in ("pingflood", "continuationflood"):
    n = int(sys.argv[4])
    s, c = connect()
    streams = {}
    sent = 0
    try:
        if mode == "pingflood":
            for k in range(n):
                c.ping(k.to_bytes(8, "big"))
                s.sendall(c.data_to_send())
                sent += 1
        else:
            # Raw frames: a HEADERS without END_HEADERS (":method: GET", HPACK index 2), then
            # CONTINUATION frames that never end the block.
            def frame(kind, flags, stream, payload):
                return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
            s.sendall(frame(0x1, 0x0, 1, b"\x82"))
            for _ in range(n):
                s.sendall(frame(0x9, 0x0, 1, b"\x86"))
                sent += 1
    except (ConnectionResetError, BrokenPipeError):
        pass
    goaway = pump(s, c, streams, lambda: False, deadline=5)
    print(json.dumps({"goaway": goaway, "sent": sent}))
"""#
