import Foundation
import NIOPosix
import XCTest

/// HTTP/2 over TLS (ALPN `h2`) and the Gateway protocols HTTP2 and GRPC, through the real
/// `gateway` process: curl, h2load and `openssl s_client` as clients, certificates made by the
/// `openssl` CLI (TLSTests' PKI).
final class HTTP2OverTLSTests: XCTestCase {
    func tlsServer(_ port: Int, _ pki: TLSTests.PKI, proto: String = "HTTPS", hosts: String = #"["shop.example"]"#) -> String {
        #"{"port": {"number": \#(port), "name": "p\#(port)", "protocol": "\#(proto)"}, "hosts": \#(hosts),"#
            + #" "tls": {"mode": "SIMPLE", "serverCertificate": "\#(pki.path("shop.pem"))", "privateKey": "\#(pki.path("shop.key"))"}}"#
    }

    func config(upstream: Int, servers: [String], listener: String = "") -> String {
        """
        {\(listener.isEmpty ? "" : #""listener": {\#(listener)},"#)
         "serviceEntries": [{"host": "app", "endpoints": [{"address": "127.0.0.1", "port": \(upstream)}]}],
         "virtualServices": [{"http": [
           {"match": [{"uri": {"prefix": "/scheme"}, "scheme": {"exact": "https"}}], "directResponse": {"status": 200, "body": {"string": "https"}}},
           {"route": [{"destination": {"host": "app"}}], "retries": {"attempts": 0}}]}],
         "gateways": [{"servers": [\(servers.joined(separator: ","))]}]}
        """
    }

    func alpn(_ port: Int, offer: String) -> String {
        let out = TLSTests.run(["openssl", "s_client", "-connect", "127.0.0.1:\(port)", "-servername", "shop.example",
                                "-alpn", offer], input: "Q\n", timeout: 10).out
        if out.contains("No ALPN negotiated") { return "none" }
        guard let line = out.split(separator: "\n").first(where: { $0.hasPrefix("ALPN protocol: ") }) else { return "no handshake" }
        return String(line.dropFirst("ALPN protocol: ".count))
    }

    func curl(_ port: Int, _ pki: TLSTests.PKI, _ args: [String], path: String = "/") -> String {
        TLSTests.run(["curl", "-s", "--max-time", "10", "--cacert", pki.path("ca.pem"), "--resolve", "shop.example:\(port):127.0.0.1"]
                     + args + ["https://shop.example:\(port)\(path)"]).out
    }

    func logLines(_ gw: GatewayProcess) -> [Substring] {
        gw.signal(SIGTERM)
        let data = gw.stdoutPipe.fileHandleForReading.readDataToEndOfFile()
        _ = gw.waitForExit(timeout: 15)
        return String(decoding: data, as: UTF8.self).split(separator: "\n")
    }

    func testHTTPSOffersH2ByALPNAndItsStreamsAreHTTPS() throws {
        let pki = try TLSTests.PKI.make(for: self)
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "hello over tls"))
        defer { up.close() }
        let port = try refusedPort()
        let gw = try GatewayProcess(config: config(upstream: up.port, servers: [tlsServer(port, pki)]))

        XCTAssertEqual(alpn(port, offer: "h2,http/1.1"), "h2", "h2 first, as Istio's ingress offers it")
        XCTAssertEqual(alpn(port, offer: "http/1.1"), "http/1.1")

        let h2 = curl(port, pki, ["--http2", "-D", "-"], path: "/items")
        XCTAssertTrue(h2.hasPrefix("HTTP/2 200"), h2)
        XCTAssertTrue(h2.hasSuffix("hello over tls"), h2)
        XCTAssertEqual(curl(port, pki, ["--http2", "-o", "/dev/null", "-w", "%{http_version}", "--data-binary", String(repeating: "x", count: 100_000)],
                            path: "/post"), "2")
        // Route matches on scheme see https on an h2 stream over TLS.
        XCTAssertEqual(curl(port, pki, ["--http2"], path: "/scheme"), "https")
        // A client that asks for HTTP/1.1 gets it.
        XCTAssertEqual(curl(port, pki, ["--http1.1", "-o", "/dev/null", "-w", "%{http_version} %{http_code}"]), "1.1 200")

        let seen = up.seenRequests
        XCTAssertEqual(seen.count, 3)
        XCTAssertEqual(Set(seen.map { r in r.headers.first { $0.0.lowercased() == "x-forwarded-proto" }?.1 ?? "none" }), ["https"])
        XCTAssertEqual(seen.dropFirst().first?.body.count, 100_000)
        let stats = statsOf(gw)
        XCTAssertGreaterThanOrEqual(stats["http.ingress.downstream_cx_http2_total"] ?? 0, 3, "\(stats.filter { $0.key.contains("http2") })")
        let lines = logLines(gw)
        XCTAssertTrue(lines.contains { $0.contains("\"GET /items HTTP/2\" 200") }, lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains { $0.contains("\"GET / HTTP/1.1\" 200") }, lines.joined(separator: "\n"))
    }

    func testH2loadOverTLSManyStreamsOnFewConnectionsAllSucceed() throws {
        let pki = try TLSTests.PKI.make(for: self)
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "ok"))
        defer { up.close() }
        let port = try refusedPort()
        let gw = try GatewayProcess(config: config(upstream: up.port, servers: [tlsServer(port, pki, hosts: #"["*"]"#)]))
        _ = gw
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/h2load") else { throw XCTSkip("h2load is not installed") }
        let out = TLSTests.run(["h2load", "-n", "2000", "-c", "4", "-m", "100", "https://127.0.0.1:\(port)/load"], timeout: 60).out
        XCTAssertTrue(out.contains("Application protocol: h2"), out)
        XCTAssertTrue(out.contains("2000 succeeded, 0 failed, 0 errored"), out)
        XCTAssertTrue(out.contains("status codes: 2000 2xx"), out)
    }

    func testTurningHTTP2OffLeavesHTTPSOnHTTP11() throws {
        let pki = try TLSTests.PKI.make(for: self)
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "ok"))
        defer { up.close() }
        let port = try refusedPort()
        let gw = try GatewayProcess(config: config(upstream: up.port, servers: [tlsServer(port, pki)], listener: #""http2": {"enabled": false}"#))
        _ = gw
        XCTAssertEqual(alpn(port, offer: "h2,http/1.1"), "http/1.1")
        XCTAssertEqual(alpn(port, offer: "h2"), "none")
        XCTAssertEqual(curl(port, pki, ["--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}"]), "1.1 200")
    }

    func testHTTP2AndGRPCPortsSpeakH2CBesideHTTP11AndH2WithTLS() throws {
        let pki = try TLSTests.PKI.make(for: self)
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "ok"))
        defer { up.close() }
        let plain = try refusedPort(), secure = try refusedPort(), http = try refusedPort()
        let servers = [
            #"{"port": {"number": \#(plain), "name": "grpc", "protocol": "GRPC"}, "hosts": ["*"]}"#,
            tlsServer(secure, pki, proto: "HTTP2"),
            #"{"port": {"number": \#(http), "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}"#,
        ]
        let gw = try GatewayProcess(config: config(upstream: up.port, servers: servers))
        let format = ["-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_version} %{http_code}"]
        func run(_ args: [String]) -> String { TLSTests.run(["curl"] + format + args).out }
        XCTAssertEqual(run(["--http2-prior-knowledge", "http://127.0.0.1:\(plain)/a"]), "2 200")
        XCTAssertEqual(run(["http://127.0.0.1:\(plain)/a"]), "1.1 200")
        XCTAssertEqual(curl(secure, pki, ["--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}"]), "2 200")
        // A plain HTTP server stays HTTP/1.1 (listener.http2 is off): the preface is no request.
        XCTAssertEqual(run(["http://127.0.0.1:\(http)/a"]), "1.1 200")
        XCTAssertNotEqual(run(["--http2-prior-knowledge", "http://127.0.0.1:\(http)/a"]), "2 200")
        let forwarded = up.seenRequests.map { r in r.headers.first { $0.0.lowercased() == "x-forwarded-proto" }?.1 ?? "none" }
        XCTAssertEqual(forwarded.prefix(3), ["http", "http", "https"])
        let dump = gw.admin("/config_dump")?.body ?? ""
        XCTAssertTrue(dump.contains("\"alpn\":[\"h2\",\"http/1.1\"]"), dump)
    }
}
