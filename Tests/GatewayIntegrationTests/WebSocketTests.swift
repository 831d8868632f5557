import Foundation
import XCTest

/// WebSockets through the gateway binary, with Python's `websockets` (PyPI) as client and server.
final class WebSocketTests: XCTestCase {
    /// An echo server ("close-me" makes it close with 4001 "bye") and a client with three modes;
    /// each prints JSON lines the test reads.
    static let script = #"""
    import json, os, sys, time
    from websockets.sync.server import serve
    from websockets.sync.client import connect
    from websockets.exceptions import ConnectionClosed

    def say(**kv):
        print(json.dumps(kv), flush=True)

    def server(port):
        def handler(ws):
            try:
                for msg in ws:
                    if msg == "close-me":
                        ws.close(4001, "bye")
                        return
                    ws.send(("echo:" + msg) if isinstance(msg, str) else msg)
            except ConnectionClosed:
                pass
            finally:
                say(server_closed=ws.close_code, reason=ws.close_reason)
        with serve(handler, "127.0.0.1", port) as s:
            say(ready=True)
            s.serve_forever()

    def client(url, mode):
        ws = connect(url, open_timeout=10)
        ws.send("hello")
        say(first=ws.recv(timeout=10))
        if mode == "echo":
            sizes = [0, 1, 125, 126, 65535, 65536, 300000]
            same = 0
            for n in sizes:
                data = os.urandom(n)
                ws.send(data)
                if ws.recv(timeout=10) == data:
                    same += 1
            say(binary_echoed=same, of=len(sizes))
            # Past the route's 1 s timeout: it bounded the handshake only.
            time.sleep(1.5)
            ws.send("close-me")
            try:
                ws.recv(timeout=10)
            except ConnectionClosed as e:
                say(close_code=e.rcvd.code if e.rcvd else None, close_reason=e.rcvd.reason if e.rcvd else None)
        elif mode == "client-close":
            ws.close(4002, "client done")
            say(closed=True)
        elif mode == "hold":
            say(holding=True)
            started = time.monotonic()
            try:
                ws.recv(timeout=30)
            except ConnectionClosed as e:
                say(ended_after=time.monotonic() - started, had_close_frame=e.rcvd is not None)

    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(sys.argv[2], sys.argv[3])
    """#

    var scriptURL: URL!
    var server: Process!
    var serverOutput: LineReader!
    var serverPort = 0

    override func setUpWithError() throws {
        guard Self.pythonHasWebsockets() else {
            throw XCTSkip("Python's websockets is missing: python3 -m pip install websockets")
        }
        scriptURL = FileManager.default.temporaryDirectory.appendingPathComponent("ws-\(UUID().uuidString).py")
        try Self.script.write(to: scriptURL, atomically: true, encoding: .utf8)
        serverPort = try refusedPort()
        (server, serverOutput) = try python(["server", String(serverPort)])
        XCTAssertEqual(serverOutput.next(timeout: 20), #"{"ready": true}"#)
    }

    override func tearDown() {
        server?.terminate()
        server?.waitUntilExit()
        if let scriptURL { try? FileManager.default.removeItem(at: scriptURL) }
    }

    static func pythonHasWebsockets() -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import websockets.sync.client"]
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    func python(_ arguments: [String]) throws -> (Process, LineReader) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", scriptURL.path] + arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        return (p, LineReader(out.fileHandleForReading))
    }

    /// `timeout`: the route's, which bounds the handshake (and the plain requests of a test).
    func gateway(listener: String = "", pool: String = "", timeout: String = "1s", threads: Int? = nil) throws -> GatewayProcess {
        try GatewayProcess(config: """
        {\(listener.isEmpty ? "" : #""listener": {\#(listener)},"#)
         "serviceEntries": [{"host": "chat", "endpoints": [{"address": "127.0.0.1", "port": \(serverPort)}]}],
         "destinationRules": [{"host": "chat", "trafficPolicy": {"connectionPool": {\(pool)}}}],
         "virtualServices": [{"http": [{"name": "chat", "route": [{"destination": {"host": "chat"}}], "timeout": "\(timeout)"}]}]}
        """, extraArguments: threads.map { ["--threads", String($0)] } ?? [])
    }

    func testEchoBothWaysAndTheServersClosePassedOn() throws {
        let gw = try gateway()
        let (client, out) = try python(["client", "ws://127.0.0.1:\(gw.port)/chat", "echo"])
        defer { client.terminate() }
        XCTAssertEqual(out.next(timeout: 20), #"{"first": "echo:hello"}"#)
        XCTAssertEqual(out.next(timeout: 30), #"{"binary_echoed": 7, "of": 7}"#, "every size, up to 300 kB, both ways")
        // The server's close frame (4001 "bye") reaches the client, past the route's 1 s timeout.
        XCTAssertEqual(out.next(timeout: 20), #"{"close_code": 4001, "close_reason": "bye"}"#)
        XCTAssertEqual(serverOutput.next(timeout: 10), #"{"server_closed": 4001, "reason": "bye"}"#)
        client.waitUntilExit()
        XCTAssertTrue(waitUntil(5) { statsOf(gw)["http.ingress.downstream_cx_upgrades_active"] == 0 })
        let stats = statsOf(gw)
        XCTAssertEqual(stats["http.ingress.downstream_cx_upgrades_total"], 1)
        XCTAssertEqual(stats["cluster.chat.upstream_rq_1xx"], 1)
        XCTAssertEqual(stats["cluster.chat.upstream_rq_timeout"], 0, "the route timeout bounds the handshake only")
        XCTAssertEqual(stats["cluster.chat.upstream_cx_active"], 0, "the tunnel's connection is closed, not pooled")
    }

    func testTheClientsCloseReachesTheServer() throws {
        let gw = try gateway()
        let (client, out) = try python(["client", "ws://127.0.0.1:\(gw.port)/chat", "client-close"])
        defer { client.terminate() }
        XCTAssertEqual(out.next(timeout: 20), #"{"first": "echo:hello"}"#)
        XCTAssertEqual(out.next(timeout: 20), #"{"closed": true}"#)
        XCTAssertEqual(serverOutput.next(timeout: 10), #"{"server_closed": 4002, "reason": "client done"}"#)
    }

    func testAnOpenWebSocketHoldsItsConnectionAgainstMaxConnections() throws {
        // A long route timeout: the waiting request must still hold the pending slot when the next comes.
        // One event loop: as in Envoy, a loop's pool with no connection may open one past the
        // limit, so with two loops a request landing on the other would not wait.
        let gw = try gateway(pool: #""tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1}"#, timeout: "60s",
                             threads: 1)
        let (client, out) = try python(["client", "ws://127.0.0.1:\(gw.port)/chat", "hold"])
        defer { client.terminate() }
        XCTAssertEqual(out.next(timeout: 20), #"{"first": "echo:hello"}"#)
        XCTAssertEqual(out.next(timeout: 20), #"{"holding": true}"#)
        XCTAssertEqual(statsOf(gw)["cluster.chat.upstream_cx_active"], 1)
        // The one connection is the tunnel's: one request waits in the one pending slot, the next overflows.
        let waiting = try RawConnection(port: gw.port)
        waiting.send("GET /plain HTTP/1.1\r\nHost: chat\r\n\r\n")
        XCTAssertTrue(waitUntil(5) { statsOf(gw)["cluster.chat.upstream_rq_pending_active"] == 1 })
        let shed = try RawConnection(port: gw.port)
        shed.send("GET /plain HTTP/1.1\r\nHost: chat\r\n\r\n")
        let r = try XCTUnwrap(shed.readResponse())
        XCTAssertEqual(r.status, 503)
        XCTAssertEqual(r.header("x-envoy-overloaded"), "true")
        XCTAssertEqual(statsOf(gw)["cluster.chat.upstream_rq_pending_overflow"], 1)
    }

    func testANeverUsedWebSocketEndsAtTheStreamIdleTimeout() throws {
        let gw = try gateway(listener: #""streamIdleTimeout": "1s""#)
        let (client, out) = try python(["client", "ws://127.0.0.1:\(gw.port)/chat", "hold"])
        defer { client.terminate() }
        XCTAssertEqual(out.next(timeout: 20), #"{"first": "echo:hello"}"#)
        XCTAssertEqual(out.next(timeout: 20), #"{"holding": true}"#)
        let ended = try XCTUnwrap(out.next(timeout: 20))
        XCTAssertTrue(ended.contains(#""had_close_frame": false"#), "the gateway closes the TCP connection: \(ended)")
        let data = try XCTUnwrap(ended.data(using: .utf8))
        let seconds = try XCTUnwrap((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["ended_after"] as? Double)
        XCTAssertGreaterThan(seconds, 0.7)
        XCTAssertLessThan(seconds, 5)
        XCTAssertEqual(serverOutput.next(timeout: 10), #"{"server_closed": 1006, "reason": ""}"#,
                       "the server's side is closed too")
        XCTAssertEqual(statsOf(gw)["http.ingress.downstream_rq_idle_timeout"], 1)
    }
}
