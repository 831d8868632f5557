import Foundation
import XCTest

/// gRPC from end to end on Python's grpcio at both ends: a grpcio client speaking h2c to the
/// gateway, the gateway speaking HTTP/2 to a grpcio server behind a ServiceEntry port of protocol
/// GRPC. Unary and server-streaming calls, a retry on UNAVAILABLE, and the breaker's overflow
/// answered as UNAVAILABLE with its counter.
final class GRPCEndToEndTests: XCTestCase {
    var scriptURL: URL!
    var server: Process!
    var serverOutput: LineReader!
    var serverPort = 0

    override func setUpWithError() throws {
        guard GRPCTests.python(has: "grpc") else { throw XCTSkip("Python's grpcio is needed: python3 -m pip install grpcio") }
        scriptURL = FileManager.default.temporaryDirectory.appendingPathComponent("grpc-e2e-\(UUID().uuidString).py")
        try grpcPeerSource.write(to: scriptURL, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", scriptURL.path, "grpc-server"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        server = p
        serverOutput = LineReader(out.fileHandleForReading)
        let ready = try XCTUnwrap(serverOutput.next(timeout: 20).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
        serverPort = try XCTUnwrap(ready["port"] as? Int)
    }

    override func tearDown() {
        server?.terminate()
        server?.waitUntilExit()
        if let scriptURL { try? FileManager.default.removeItem(at: scriptURL) }
    }

    func config(retries: String = #"{"attempts": 0}"#, pool: String = "") -> String {
        """
        {"listener": {"http2": {"enabled": true}},
         "serviceEntries": [{"host": "echo", "ports": [{"number": \(serverPort), "name": "grpc", "protocol": "GRPC"}],
                             "endpoints": [{"address": "127.0.0.1"}]}],
         "destinationRules": [{"host": "echo", "trafficPolicy": {"connectionPool": {\(pool)}}}],
         "virtualServices": [{"http": [{"name": "grpc", "route": [{"destination": {"host": "echo"}}], "retries": \(retries)}]}]}
        """
    }

    func client(_ args: [String]) throws -> [String: Any] {
        let r = TLSTests.run(["/usr/bin/env", "python3", scriptURL.path] + args, timeout: 40)
        let last = r.out.split(separator: "\n").last.map(String.init) ?? ""
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any], "client said: \(r.out) \(r.err)")
    }

    /// What the server printed for the calls it took.
    func callsSeen(_ count: Int) -> [[String: Any]] {
        (0..<count).compactMap { _ in
            serverOutput.next(timeout: 10).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }
    }

    func stats(_ gw: GatewayProcess) -> [String: Int] {
        var out: [String: Int] = [:]
        for line in (gw.admin("/stats")?.body ?? "").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, let v = Int(parts[1].trimmingCharacters(in: .whitespaces)) { out[String(parts[0])] = v }
        }
        return out
    }

    func testUnaryAndStreamingCallsThroughTheGatewayOverHTTP2BothWays() throws {
        // One event loop: each loop has its own pool, so two clients could otherwise reach two.
        let gw = try GatewayProcess(config: config(), extraArguments: ["--threads", "1"])
        let target = "127.0.0.1:\(gw.port)"
        let unary = try client(["unary", target, "/test.Echo/Unary", "payload=hello"])
        XCTAssertEqual(unary["code"] as? String, "OK", "\(unary)")
        XCTAssertEqual(unary["replies"] as? [String], ["HELLO"])
        XCTAssertEqual((unary["trailing"] as? [String: String])?["x-trailer"], "yes", "the server's trailers reach the client")
        let stream = try client(["stream", target, "/test.Echo/Stream"])
        XCTAssertEqual(stream["code"] as? String, "OK", "\(stream)")
        XCTAssertEqual(stream["replies"] as? [String], ["part-0", "part-1", "part-2"])
        XCTAssertEqual(callsSeen(2).compactMap { $0["method"] as? String }, ["Unary", "Stream"])
        let s = stats(gw)
        XCTAssertEqual(s["cluster.echo.upstream_cx_http2_total"], 1, "both calls went over one HTTP/2 connection")
        XCTAssertEqual(s["cluster.echo.grpc.0"], 2)
    }

    func testUnavailableFromTheServerIsRetried() throws {
        let gw = try GatewayProcess(config: config(retries: #"{"attempts": 2, "retryOn": "unavailable"}"#))
        let r = try client(["unary", "127.0.0.1:\(gw.port)", "/test.Echo/Flaky"])
        XCTAssertEqual(r["code"] as? String, "OK", "\(r)")
        XCTAssertEqual(r["replies"] as? [String], ["second time lucky"])
        XCTAssertEqual(callsSeen(2).compactMap { $0["failed"] as? Bool }, [true, false], "the server failed the first try")
        XCTAssertEqual(stats(gw)["cluster.echo.upstream_rq_retry"], 1)
    }

    func testOverflowIsUnavailableWithTheOverflowCounted() throws {
        // One stream at a time upstream (http2MaxRequests 1), one call waiting for it.
        let gw = try GatewayProcess(config: config(pool: #""http": {"http2MaxRequests": 1, "http1MaxPendingRequests": 1}"#))
        let r = try client(["many", "127.0.0.1:\(gw.port)", "/test.Echo/Slow", "n=6"])
        let codes = r["codes"] as? [String] ?? []
        XCTAssertEqual(codes.count, 6, "\(r)")
        let refused = codes.filter { $0 == "UNAVAILABLE" }.count
        XCTAssertGreaterThanOrEqual(refused, 3, "\(codes)")
        XCTAssertGreaterThanOrEqual(codes.filter { $0 == "OK" }.count, 1, "\(codes)")
        XCTAssertEqual(refused + codes.filter { $0 == "OK" }.count, 6, "\(codes)")
        let s = stats(gw)
        XCTAssertEqual(s["cluster.echo.upstream_rq_pending_overflow"], refused)
        XCTAssertEqual(s["cluster.echo.grpc.14"], refused)
    }
}
