import Foundation
import NIOPosix
import XCTest

/// The admin port against a browser tricked into posting to it, oversized bodies and
/// oversized config files, over real sockets to the real `gateway` process.
final class AdminHardeningTests: XCTestCase {
    var up: TestUpstream!

    override func setUpWithError() throws {
        up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
    }

    override func tearDown() { up.close() }

    /// Sends `request` as it is (a browser's or curl's bytes) to the admin port.
    func raw(_ gw: GatewayProcess, _ request: String) -> RawResponse? {
        guard let c = try? RawConnection(port: gw.adminPort) else { return nil }
        c.send(request)
        return c.readResponse()
    }

    func version(_ gw: GatewayProcess) -> String {
        let dump = gw.admin("/config_dump")?.body ?? ""
        guard let r = dump.range(of: #""version":\d+"#, options: .regularExpression) else { return dump }
        return String(dump[r])
    }

    func testCrossSiteBrowserPostsToReloadAreRefused() throws {
        let gw = try GatewayProcess(config: configText(routes: [("/a", "svc")], hostPorts: ["svc": up.port]))
        try gw.writeConfig(configText(routes: [("/a", "svc"), ("/b", "svc")], hostPorts: ["svc": up.port]))

        // What a page on another site can make a browser send without a CORS preflight.
        let head = "POST /reload HTTP/1.1\r\nHost: 127.0.0.1:\(gw.adminPort)\r\n"
        let attempts: [(String, String)] = [
            ("form", "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=1"),
            ("multipart", "Content-Type: multipart/form-data; boundary=xx\r\nContent-Length: 6\r\n\r\n--xx--"),
            ("text", "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 2\r\n\r\nhi"),
            ("text, upper case", "Content-Type: TEXT/PLAIN\r\nContent-Length: 0\r\n\r\n"),
            ("Origin", "Origin: https://evil.example\r\nContent-Length: 0\r\n\r\n"),
            ("Origin null", "Origin: null\r\nContent-Length: 0\r\n\r\n"),
            ("JSON with Origin", "Origin: https://evil.example\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"),
            ("cross-site fetch", "Sec-Fetch-Site: cross-site\r\nContent-Length: 0\r\n\r\n"),
            ("same-site fetch", "Sec-Fetch-Site: same-site\r\nContent-Length: 0\r\n\r\n"),
            // The dashboard never POSTs: a "same-origin" POST comes from a DNS-rebound name.
            ("same-origin fetch", "Sec-Fetch-Site: same-origin\r\nContent-Length: 0\r\n\r\n"),
        ]
        for (what, rest) in attempts {
            let r = raw(gw, head + rest)
            XCTAssertEqual(r?.status, 403, what)
            XCTAssertTrue(r?.body.contains("curl -X POST") ?? false, "\(what): says what to send: \(r?.body ?? "")")
            XCTAssertNil(r?.headers.first { $0.0.lowercased().hasPrefix("access-control-") }, what)
        }
        XCTAssertEqual(version(gw), #""version":1"#, "no reload happened")
        XCTAssertEqual(httpRequest(port: gw.port, path: "/b")?.status, 404)
        XCTAssertTrue(gw.admin("/stats")?.body.contains("server.reload_success: 0") ?? false)

        // `curl -X POST http://127.0.0.1:9901/reload`: no body, no Content-Length, no Content-Type.
        let curl = raw(gw, head + "User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n")
        XCTAssertEqual(curl?.status, 200, curl?.body ?? "")
        XCTAssertEqual(httpRequest(port: gw.port, path: "/b")?.status, 200)
        // A content type no form can send is not a simple request: a browser would preflight it.
        let json = raw(gw, head + "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        XCTAssertEqual(json?.status, 200, json?.body ?? "")
        XCTAssertEqual(version(gw), #""version":3"#)
    }

    func testAdminRequestBodiesAreBounded() throws {
        let gw = try GatewayProcess(config: configText(routes: [("/a", "svc")], hostPorts: ["svc": up.port]))
        let big = String(repeating: " ", count: 70_000)
        let declared = raw(gw, "POST /reload HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: \(big.utf8.count)\r\n\r\n\(big){}")
        XCTAssertEqual(declared?.status, 413)
        var chunked = "POST /reload HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        for _ in 0..<20 { chunked += "1000\r\n" + String(repeating: " ", count: 4096) + "\r\n" }
        chunked += "0\r\n\r\n"
        XCTAssertEqual(raw(gw, chunked)?.status, 413, "80 KiB in chunks")
        XCTAssertEqual(version(gw), #""version":1"#)
        XCTAssertEqual(gw.admin("/ready")?.status, 200, "the admin server still answers")
    }

    func testOptionsIsAnsweredWithoutCORSPermission() throws {
        let gw = try GatewayProcess(config: configText(routes: [("/a", "svc")], hostPorts: ["svc": up.port]))
        for path in ["/reload", "/stats", "/config_dump"] {
            let r = raw(gw, "OPTIONS \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\n"
                        + "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n")
            XCTAssertEqual(r?.status, 204, path)
            XCTAssertNotNil(r?.header("allow"), path)
            XCTAssertNil(r?.headers.first { $0.0.lowercased().hasPrefix("access-control-") }, "\(path): \(r?.headers ?? [])")
        }
    }

    /// A valid config padded with whitespace to more than 16 MiB: only its size is wrong.
    func oversized(_ config: String) -> String { config + String(repeating: " ", count: 17 << 20) }

    func testConfigFilesOver16MiBAreRefusedAtStartAndOnReload() throws {
        let small = configText(routes: [("/a", "svc")], hostPorts: ["svc": up.port])
        let bigFile = FileManager.default.temporaryDirectory.appendingPathComponent("gw-big-\(UUID().uuidString).json")
        try oversized(small).write(to: bigFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: bigFile) }

        let p = Process()
        p.executableURL = try builtExecutable("gateway")
        p.arguments = ["--config", bigFile.path, "--port", "0", "--admin-port", "0", "--address", "127.0.0.1"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = Pipe()
        try p.run()
        let deadline = Date().addingTimeInterval(10)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { p.terminate(); p.waitUntilExit() }
        XCTAssertNotEqual(p.terminationStatus, 0)
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(text.contains("larger than the 16 MiB limit"), text)

        let gw = try GatewayProcess(config: small)
        try gw.writeConfig(oversized(configText(routes: [("/a", "svc"), ("/b", "svc")], hostPorts: ["svc": up.port])))
        let refused = gw.admin("/reload", method: "POST")
        XCTAssertEqual(refused?.status, 400)
        XCTAssertTrue(refused?.body.contains("larger than the 16 MiB limit") ?? false, refused?.body ?? "")
        XCTAssertEqual(httpRequest(port: gw.port, path: "/b")?.status, 404, "the big file's route did not arrive")
        XCTAssertEqual(httpRequest(port: gw.port, path: "/a")?.status, 200, "the old config keeps serving")
        XCTAssertTrue(gw.admin("/config_dump")?.body.contains("16 MiB") ?? false)
    }
}
