import Foundation
import NIOPosix
import XCTest

/// TLS both ways through the real `gateway` process: certificates made by the `openssl` CLI,
/// curl and `openssl s_client` as clients, Python's `ssl` as a TLS upstream.
final class TLSTests: XCTestCase {
    /// A CA, certificates it signed (two server names, a client, an upstream), and a second CA
    /// with a client certificate of its own.
    struct PKI {
        let dir: String
        func path(_ name: String) -> String { "\(dir)/\(name)" }

        /// Made for `test`, and removed when it ends.
        static func make(for test: XCTestCase) throws -> PKI {
            for tool in ["/usr/bin/openssl", "/usr/bin/curl"] where !FileManager.default.isExecutableFile(atPath: tool) {
                throw XCTSkip("\(tool) is not installed")
            }
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
            let script = """
                set -e
                cd '\(dir)'
                ca() { openssl req -x509 -newkey rsa:2048 -nodes -keyout $1.key -out $1.pem -days 2 -subj "/CN=$2" 2>/dev/null; }
                leaf() {  # name CA subject san
                    openssl req -newkey rsa:2048 -nodes -keyout $1.key -out $1.csr -subj "$3" 2>/dev/null
                    printf "$4" > $1.ext
                    openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem -days 2 -extfile $1.ext 2>/dev/null
                }
                ca ca 'Test CA'
                ca other-ca 'Other CA'
                leaf shop ca /CN=shop.example 'subjectAltName=DNS:shop.example\\n'
                leaf shop-renewed ca '/O=Renewed/CN=shop.example' 'subjectAltName=DNS:shop.example\\n'
                leaf api ca /CN=api.example 'subjectAltName=DNS:api.example\\n'
                leaf client ca /CN=client 'extendedKeyUsage=clientAuth\\n'
                leaf other-client other-ca /CN=other-client 'extendedKeyUsage=clientAuth\\n'
                leaf upstream ca /CN=upstream.test 'subjectAltName=DNS:upstream.test\\n'
                """
            let r = run(["/bin/sh", "-c", script])
            guard r.status == 0 else { throw XCTSkip("openssl could not make the certificates: \(r.err)") }
            return PKI(dir: dir)
        }
    }

    struct Output {
        var status: Int32
        var out: String
        var err: String
    }

    /// Runs a command to its end (at most `timeout` seconds), `input` on its stdin.
    @discardableResult
    static func run(_ args: [String], input: String = "", timeout: Double = 20) -> Output {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: args[0].hasPrefix("/") ? args[0] : "/usr/bin/\(args[0])")
        p.arguments = Array(args.dropFirst())
        // Output goes to files: a pipe nobody reads while it runs would block it when full.
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("run-\(UUID().uuidString)").path
        _ = FileManager.default.createFile(atPath: base + ".out", contents: nil)
        _ = FileManager.default.createFile(atPath: base + ".err", contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        let inp = Pipe()
        p.standardOutput = FileHandle(forWritingAtPath: base + ".out")
        p.standardError = FileHandle(forWritingAtPath: base + ".err")
        p.standardInput = inp
        guard (try? p.run()) != nil else { return Output(status: -1, out: "", err: "cannot run \(args[0])") }
        inp.fileHandleForWriting.write(Data(input.utf8))
        try? inp.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        let o = FileManager.default.contents(atPath: base + ".out") ?? Data()
        let e = FileManager.default.contents(atPath: base + ".err") ?? Data()
        return Output(status: p.terminationStatus, out: String(decoding: o, as: UTF8.self), err: String(decoding: e, as: UTF8.self))
    }

    /// `curl` against `https://name:port` resolved to 127.0.0.1; returns "<status>" (000: failed).
    static func curl(_ name: String, _ port: Int, _ pki: PKI, path: String = "/", extra: [String] = []) -> String {
        run(["curl", "-s", "--max-time", "10", "--cacert", pki.path("ca.pem"), "--resolve", "\(name):\(port):127.0.0.1",
             "-o", "/dev/null", "-w", "%{http_code}"] + extra + ["https://\(name):\(port)\(path)"]).out
    }

    /// The subject of the certificate the server shows for `sni` (nil: no handshake).
    static func subject(port: Int, sni: String?, extra: [String] = []) -> String? {
        var args = ["openssl", "s_client", "-connect", "127.0.0.1:\(port)"] + extra
        if let sni { args += ["-servername", sni] } else { args += ["-noservername"] }
        let r = run(args, input: "Q\n", timeout: 10)
        guard let line = r.out.split(separator: "\n").first(where: { $0.hasPrefix("subject=") }) else { return nil }
        return String(line.dropFirst("subject=".count))
    }

    func stat(_ gw: GatewayProcess, _ name: String) -> Int {
        for line in (gw.admin("/stats")?.body ?? "").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0] == name { return Int(parts[1].trimmingCharacters(in: .whitespaces)) ?? -1 }
        }
        return -1
    }

    func server(_ port: Int, hosts: [String], tls: String, proto: String = "HTTPS") -> String {
        "{\"port\":{\"number\":\(port),\"name\":\"p\(port)\",\"protocol\":\"\(proto)\"},\"hosts\":\(hosts.debugDescription),\"tls\":\(tls)}"
    }

    func simple(_ pki: PKI, _ name: String, extra: String = "") -> String {
        "{\"mode\":\"SIMPLE\",\"serverCertificate\":\"\(pki.path(name + ".pem"))\",\"privateKey\":\"\(pki.path(name + ".key"))\"\(extra)}"
    }

    /// HTTPS on one port with two certificates by SNI, a MUTUAL port, a redirecting HTTP port and
    /// a port that still takes TLS 1.0, all in front of one plaintext upstream.
    struct Ports {
        var https = 0, mutual = 0, redirect = 0, legacy = 0
    }

    func frontConfig(_ pki: PKI, _ p: Ports, upstream: Int, shopCert: String = "shop") -> String {
        let servers = [
            server(p.https, hosts: ["shop.example"], tls: simple(pki, shopCert)),
            server(p.https, hosts: ["default/api.example"], tls: simple(pki, "api")),
            server(p.mutual, hosts: ["*"], tls: "{\"mode\":\"MUTUAL\",\"serverCertificate\":\"\(pki.path("shop.pem"))\",\"privateKey\":\"\(pki.path("shop.key"))\",\"caCertificates\":\"\(pki.path("ca.pem"))\"}"),
            server(p.redirect, hosts: ["*"], tls: "{\"httpsRedirect\":true}", proto: "HTTP"),
            server(p.legacy, hosts: ["*"], tls: simple(pki, "shop", extra: ",\"minProtocolVersion\":\"TLSV1_0\"")),
        ]
        return """
            {"serviceEntries":[{"host":"app","endpoints":[{"address":"127.0.0.1","port":\(upstream)}]}],
             "virtualServices":[{"http":[
               {"match":[{"uri":{"prefix":"/scheme"},"scheme":{"exact":"https"}}],"directResponse":{"status":200,"body":{"string":"https"}}},
               {"match":[{"uri":{"prefix":"/scheme"}}],"directResponse":{"status":200,"body":{"string":"http"}}},
               {"match":[{"uri":{"prefix":"/old"}}],"redirect":{"uri":"/new"}},
               {"route":[{"destination":{"host":"app"}}]}]}],
             "gateways":[{"apiVersion":"networking.istio.io/v1","kind":"Gateway","metadata":{"name":"front"},
                          "spec":{"selector":{"istio":"ingressgateway"},"servers":[\(servers.joined(separator: ","))]}}]}
            """
    }

    func freePorts() throws -> Ports {
        Ports(https: try refusedPort(), mutual: try refusedPort(), redirect: try refusedPort(), legacy: try refusedPort())
    }

    func testSNIPicksTheCertificateAndTheUpstreamSeesHTTPS() throws {
        let pki = try PKI.make(for: self)
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "ok"))
        defer { up.close() }
        let ports = try freePorts()
        let gw = try GatewayProcess(config: frontConfig(pki, ports, upstream: up.port))

        // curl checks the certificate against the name it asked for: a 200 for each name means
        // each got its own certificate.
        XCTAssertEqual(Self.curl("shop.example", ports.https, pki), "200")
        XCTAssertEqual(Self.curl("api.example", ports.https, pki), "200")
        XCTAssertEqual(Self.subject(port: ports.https, sni: "shop.example"), "CN = shop.example")
        XCTAssertEqual(Self.subject(port: ports.https, sni: "API.example"), "CN = api.example")
        // A name no server has, or none at all, finds no certificate (no `*` server on the port).
        XCTAssertNil(Self.subject(port: ports.https, sni: "other.example"))
        XCTAssertNil(Self.subject(port: ports.https, sni: nil))
        XCTAssertGreaterThanOrEqual(stat(gw, "http.ingress.no_filter_chain_match"), 2)
        XCTAssertGreaterThanOrEqual(stat(gw, "http.ingress.ssl.handshake"), 4)
        let dump = gw.admin("/config_dump")?.body ?? ""
        XCTAssertTrue(dump.contains("\"port\":\(ports.https),\"scheme\":\"https\""), dump)

        // ALPN offers h2 and http/1.1, as Istio's ingress does (HTTP2OverTLSTests goes further).
        let alpn = Self.run(["openssl", "s_client", "-connect", "127.0.0.1:\(ports.https)", "-servername", "shop.example",
                             "-alpn", "h2,http/1.1"], input: "Q\n", timeout: 10).out
        XCTAssertTrue(alpn.contains("ALPN protocol: h2"), alpn)

        let forwarded = up.seenRequests.map { r in r.headers.first { $0.0.lowercased() == "x-forwarded-proto" }?.1 }
        XCTAssertEqual(forwarded.count, 2)
        XCTAssertEqual(Set(forwarded), ["https"], "requests over TLS go upstream as https")
        // Route matches and redirects see the request's scheme.
        let https = ["curl", "-s", "--max-time", "10", "--cacert", pki.path("ca.pem"),
                     "--resolve", "shop.example:\(ports.https):127.0.0.1"]
        XCTAssertEqual(Self.run(https + ["https://shop.example:\(ports.https)/scheme"]).out, "https")
        XCTAssertEqual(httpRequest(port: gw.port, path: "/scheme")?.body, "http")
        XCTAssertEqual(Self.run(https + ["-o", "/dev/null", "-w", "%{redirect_url}", "https://shop.example:\(ports.https)/old"]).out,
                       "https://shop.example:\(ports.https)/new")
        // The plaintext listener still says http.
        XCTAssertEqual(httpRequest(port: gw.port, path: "/")?.status, 200)
        XCTAssertEqual(up.seenRequests.last?.headers.first { $0.0.lowercased() == "x-forwarded-proto" }?.1, "http")
    }

    func testTLS10And11AreRefusedUnlessAServerAsksForThem() throws {
        let pki = try PKI.make(for: self)
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "ok"))
        defer { up.close() }
        let ports = try freePorts()
        let gw = try GatewayProcess(config: frontConfig(pki, ports, upstream: up.port))
        _ = gw
        // OpenSSL 3 itself refuses TLS 1.0/1.1 at its default security level: level 0 lets the
        // client offer them, so a refusal is the server's.
        let old = ["-cipher", "DEFAULT@SECLEVEL=0"]
        for version in ["-tls1", "-tls1_1"] {
            XCTAssertNil(Self.subject(port: ports.https, sni: "shop.example", extra: [version] + old), "\(version) refused by default")
            XCTAssertEqual(Self.subject(port: ports.legacy, sni: "shop.example", extra: [version] + old), "CN = shop.example",
                           "\(version) taken where minProtocolVersion is TLSV1_0: the client can speak it")
        }
        XCTAssertEqual(Self.subject(port: ports.https, sni: "shop.example", extra: ["-tls1_2"]), "CN = shop.example")
        XCTAssertEqual(Self.subject(port: ports.https, sni: "shop.example", extra: ["-tls1_3"]), "CN = shop.example")
    }

    func testMutualTLSTakesOnlyClientsWithACertificateFromItsCA() throws {
        let pki = try PKI.make(for: self)
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "ok"))
        defer { up.close() }
        let ports = try freePorts()
        let gw = try GatewayProcess(config: frontConfig(pki, ports, upstream: up.port))
        XCTAssertEqual(Self.curl("shop.example", ports.mutual, pki), "000", "no client certificate")
        XCTAssertEqual(Self.curl("shop.example", ports.mutual, pki,
                                 extra: ["--cert", pki.path("other-client.pem"), "--key", pki.path("other-client.key")]),
                       "000", "a client certificate from another CA")
        XCTAssertEqual(up.seenRequests.count, 0)
        XCTAssertEqual(Self.curl("shop.example", ports.mutual, pki,
                                 extra: ["--cert", pki.path("client.pem"), "--key", pki.path("client.key")]), "200")
        XCTAssertEqual(up.seenRequests.count, 1)
        XCTAssertGreaterThanOrEqual(stat(gw, "http.ingress.ssl.connection_error"), 1)
    }

    func testHTTPSRedirectAnswers301WithTheHTTPSLocation() throws {
        let pki = try PKI.make(for: self)
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "ok"))
        defer { up.close() }
        let ports = try freePorts()
        let gw = try GatewayProcess(config: frontConfig(pki, ports, upstream: up.port))
        _ = gw
        let format = "%{http_code} %{redirect_url}"
        let base = "http://127.0.0.1:\(ports.redirect)"
        XCTAssertEqual(Self.run(["curl", "-s", "-o", "/dev/null", "-w", format, "-H", "Host: shop.example", "\(base)/a/b?c=1"]).out,
                       "301 https://shop.example/a/b?c=1")
        XCTAssertEqual(Self.run(["curl", "-s", "-o", "/dev/null", "-w", format, "-H", "Host: shop.example:80", "\(base)/x"]).out,
                       "301 https://shop.example/x", "the http default port is dropped")
        XCTAssertEqual(Self.run(["curl", "-s", "-o", "/dev/null", "-w", format, "-X", "POST", "-d", "body",
                                 "-H", "Host: shop.example:8443", "\(base)/y"]).out,
                       "301 https://shop.example:8443/y", "another port is kept")
        XCTAssertEqual(up.seenRequests.count, 0, "nothing reaches the upstream")
    }

    func testReloadShowsARenewedCertificateToNewConnectionsAndKeepsOpenOnes() throws {
        let pki = try PKI.make(for: self)
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "ok"))
        defer { up.close() }
        let ports = try freePorts()
        let gw = try GatewayProcess(config: frontConfig(pki, ports, upstream: up.port))
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") || (try? builtPython()) != nil else {
            throw XCTSkip("python3 is not installed")
        }
        // A keep-alive client: one request, then (after a line on stdin) another on the same socket.
        let client = Process()
        client.executableURL = URL(fileURLWithPath: try builtPython())
        client.arguments = ["-c", """
            import http.client, ssl, sys
            ctx = ssl.create_default_context(cafile=sys.argv[1])
            c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[2]), context=ctx, timeout=10)
            c.sock = None
            import socket
            raw = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
            c.sock = ctx.wrap_socket(raw, server_hostname="shop.example")
            def get():
                c.request("GET", "/", headers={"Host": "shop.example"})
                r = c.getresponse(); r.read()
                subject = dict(x[0] for x in c.sock.getpeercert()["subject"])
                print(r.status, subject.get("organizationName", "-"), id(c.sock), flush=True)
            get()
            sys.stdin.readline()
            get()
            """, pki.path("ca.pem"), String(ports.https)]
        let toClient = Pipe(), fromClient = Pipe()
        client.standardInput = toClient
        client.standardOutput = fromClient
        try client.run()
        defer { if client.isRunning { client.terminate() } }
        let lines = LineReader(fromClient.fileHandleForReading)
        let first = lines.next(timeout: 30)
        XCTAssertTrue(first?.hasPrefix("200 - ") ?? false, "first answer: \(first ?? "none")")

        // A certificate file that is not one: the reload is refused and the old one kept.
        try "not a certificate".write(toFile: pki.path("broken.pem"), atomically: true, encoding: .utf8)
        try gw.writeConfig(frontConfig(pki, ports, upstream: up.port, shopCert: "broken"))
        let refused = gw.admin("/reload", method: "POST")
        XCTAssertNotEqual(refused?.status, 200)
        XCTAssertTrue(refused?.body.contains("serverCertificate") ?? false, refused?.body ?? "")
        XCTAssertEqual(Self.subject(port: ports.https, sni: "shop.example"), "CN = shop.example")

        // The same path, renewed in place, re-read on reload.
        try FileManager.default.removeItem(atPath: pki.path("shop.pem"))
        try FileManager.default.removeItem(atPath: pki.path("shop.key"))
        try FileManager.default.copyItem(atPath: pki.path("shop-renewed.pem"), toPath: pki.path("shop.pem"))
        try FileManager.default.copyItem(atPath: pki.path("shop-renewed.key"), toPath: pki.path("shop.key"))
        try gw.writeConfig(frontConfig(pki, ports, upstream: up.port))
        gw.signal(SIGHUP)
        XCTAssertTrue(waitUntil(5) { Self.subject(port: ports.https, sni: "shop.example") == "O = Renewed, CN = shop.example" },
                      "a new connection gets the renewed certificate")
        XCTAssertEqual(Self.curl("shop.example", ports.https, pki), "200")

        toClient.fileHandleForWriting.write(Data("\n".utf8))
        let second = lines.next(timeout: 30)
        let a = first?.split(separator: " "), b = second?.split(separator: " ")
        XCTAssertEqual(b?.first, "200", "the open connection still works: \(second ?? "none")")
        XCTAssertEqual(b?.dropFirst().first, "-", "and keeps the certificate it was accepted with")
        XCTAssertEqual(a?.last, b?.last, "on the same socket")
        client.waitUntilExit()
        XCTAssertEqual(client.terminationStatus, 0)
    }

    // MARK: upstream

    func testUpstreamTLSVerifiesPresentsAndSendsSNI() throws {
        let pki = try PKI.make(for: self)
        let python = try builtPython()
        let simpleUp = try PythonTLSUpstream(python: python, pki: pki, requireClientCertificate: false)
        let mutualUp = try PythonTLSUpstream(python: python, pki: pki, requireClientCertificate: true)
        let ca = pki.path("ca.pem"), other = pki.path("other-ca.pem")
        func entry(_ host: String, _ port: Int) -> String {
            "{\"host\":\"\(host)\",\"endpoints\":[{\"address\":\"127.0.0.1\",\"port\":\(port)}]}"
        }
        func rule(_ host: String, _ tls: String) -> String { "{\"host\":\"\(host)\",\"trafficPolicy\":{\"tls\":\(tls)}}" }
        let hosts = ["upstream.test", "wrong-ca", "custom-sni", "san-mismatch", "mutual", "no-client-cert", "refused", "system-roots", "skip-verify"]
        let refusedPort = try refusedPort()
        let config = """
            {"serviceEntries":[\(entry("upstream.test", simpleUp.port)),\(entry("wrong-ca", simpleUp.port)),
                               \(entry("custom-sni", simpleUp.port)),\(entry("san-mismatch", simpleUp.port)),
                               \(entry("mutual", mutualUp.port)),\(entry("no-client-cert", mutualUp.port)),
                               \(entry("refused", refusedPort)),\(entry("system-roots", simpleUp.port)),
                               \(entry("skip-verify", simpleUp.port))],
             "destinationRules":[
               \(rule("upstream.test", "{\"mode\":\"SIMPLE\",\"caCertificates\":\"\(ca)\"}")),
               \(rule("wrong-ca", "{\"mode\":\"SIMPLE\",\"caCertificates\":\"\(other)\",\"sni\":\"upstream.test\"}")),
               \(rule("custom-sni", "{\"mode\":\"SIMPLE\",\"caCertificates\":\"\(ca)\",\"sni\":\"custom.sni\",\"subjectAltNames\":[\"upstream.test\"]}")),
               \(rule("san-mismatch", "{\"mode\":\"SIMPLE\",\"caCertificates\":\"\(ca)\",\"sni\":\"upstream.test\",\"subjectAltNames\":[\"nope.test\"]}")),
               \(rule("mutual", "{\"mode\":\"MUTUAL\",\"caCertificates\":\"\(ca)\",\"sni\":\"upstream.test\",\"clientCertificate\":\"\(pki.path("client.pem"))\",\"privateKey\":\"\(pki.path("client.key"))\"}")),
               \(rule("no-client-cert", "{\"mode\":\"SIMPLE\",\"caCertificates\":\"\(ca)\",\"sni\":\"upstream.test\"}")),
               \(rule("refused", "{\"mode\":\"SIMPLE\",\"caCertificates\":\"\(ca)\"}")),
               \(rule("system-roots", "{\"mode\":\"SIMPLE\",\"sni\":\"upstream.test\"}")),
               \(rule("skip-verify", "{\"mode\":\"SIMPLE\",\"insecureSkipVerify\":true}"))],
             "virtualServices":[{"http":[\(hosts.map { "{\"match\":[{\"uri\":{\"prefix\":\"/\($0)/\"}}],\"route\":[{\"destination\":{\"host\":\"\($0)\"}}]}" }.joined(separator: ","))]}]}
            """
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("tls-access-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let gw = try GatewayProcess(config: config, extraArguments: ["--access-log", log])

        func get(_ host: String) -> RawResponse? { httpRequest(port: gw.port, path: "/\(host)/x") }
        // The upstream answers with the SNI it was sent and the client certificate it saw.
        let ok = get("upstream.test")
        XCTAssertEqual(ok?.status, 200, ok?.body ?? "")
        XCTAssertEqual(ok?.body, "sni=upstream.test client=-", "SNI defaults to the ServiceEntry host")
        let sni = get("custom-sni")
        XCTAssertEqual(sni?.status, 200, sni?.body ?? "")
        XCTAssertEqual(sni?.body, "sni=custom.sni client=-", "the configured SNI, the certificate checked by subjectAltNames")
        let mutual = get("mutual")
        XCTAssertEqual(mutual?.status, 200, mutual?.body ?? "")
        XCTAssertEqual(mutual?.body, "sni=upstream.test client=client", "MUTUAL presents the client certificate")

        // A client certificate the upstream wants and does not get: under TLS 1.3 the client's
        // handshake is over before the server refuses, so the refusal is a reset of the request
        // (as in Envoy), not a connect failure.
        let refused = get("no-client-cert")
        XCTAssertEqual(refused?.status, 503, refused?.body ?? "")
        XCTAssertEqual(stat(gw, "cluster.no-client-cert.upstream_rq_2xx"), 0)
        for host in ["wrong-ca", "san-mismatch"] {
            let r = get(host)
            XCTAssertEqual(r?.status, 503, "\(host): \(r?.body ?? "")")
            XCTAssertGreaterThanOrEqual(stat(gw, "cluster.\(host).upstream_cx_connect_fail"), 1, host)
            XCTAssertGreaterThanOrEqual(stat(gw, "cluster.\(host).ssl.connection_error"), 1, host)
            XCTAssertEqual(stat(gw, "cluster.\(host).upstream_rq_2xx"), 0, host)
        }
        XCTAssertGreaterThanOrEqual(stat(gw, "cluster.san-mismatch.ssl.fail_verify_san"), 1)
        // Without caCertificates the system's trust store decides: the test CA is not in it.
        XCTAssertEqual(get("system-roots")?.status, 503)
        XCTAssertGreaterThanOrEqual(stat(gw, "cluster.system-roots.ssl.connection_error"), 1)
        // insecureSkipVerify takes any certificate, for any name.
        let skipped = get("skip-verify")
        XCTAssertEqual(skipped?.status, 200, skipped?.body ?? "")
        XCTAssertEqual(skipped?.body, "sni=skip-verify client=-")
        // No TCP connection at all: a plain connect failure, no handshake error.
        XCTAssertEqual(get("refused")?.status, 503)
        XCTAssertGreaterThanOrEqual(stat(gw, "cluster.refused.upstream_cx_connect_fail"), 1)
        XCTAssertEqual(stat(gw, "cluster.refused.ssl.connection_error"), 0)
        XCTAssertEqual(stat(gw, "cluster.wrong-ca.ssl.fail_verify_san"), 0)
        XCTAssertEqual(stat(gw, "cluster.upstream.test.ssl.connection_error"), 0)

        let flagged = waitUntil(5) {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").filter { $0.contains("/wrong-ca/x") && $0.contains(" 503 UF") }.count == 1
        }
        XCTAssertTrue(flagged, "the access log flags the 503 as an upstream connect failure (UF): "
                      + ((try? String(contentsOfFile: log, encoding: .utf8)) ?? ""))
    }
}

/// python3 from PATH (pyenv shims included).
func builtPython() throws -> String {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
        let candidate = "\(dir)/python3"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw XCTSkip("python3 is not installed")
}

/// Python's `http.server` behind `ssl` with the `upstream.test` certificate; answers
/// `sni=<name the client sent> client=<CN of its certificate, or ->`.
final class PythonTLSUpstream {
    let process = Process()
    let port: Int

    init(python: String, pki: TLSTests.PKI, requireClientCertificate: Bool) throws {
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", """
            import http.server, ssl, sys
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(sys.argv[1], sys.argv[2])
            if sys.argv[3] == "1":
                ctx.load_verify_locations(sys.argv[4])
                ctx.verify_mode = ssl.CERT_REQUIRED
            names = {}
            def remember(sock, name, _):
                names[id(sock)] = name
            ctx.sni_callback = remember
            class H(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"
                def do_GET(self):
                    peer = self.connection.getpeercert()
                    client = dict(x[0] for x in peer["subject"])["commonName"] if peer else "-"
                    body = ("sni=%s client=%s" % (names.get(id(self.connection), "-"), client)).encode()
                    self.send_response(200)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                def log_message(self, *a):
                    pass
            class S(http.server.ThreadingHTTPServer):
                def get_request(self):
                    sock, addr = self.socket.accept()
                    return ctx.wrap_socket(sock, server_side=True), addr
                def handle_error(self, request, address):
                    pass
            s = S(("127.0.0.1", 0), H)
            print(s.server_address[1], flush=True)
            s.serve_forever()
            """, pki.path("upstream.pem"), pki.path("upstream.key"), requireClientCertificate ? "1" : "0", pki.path("ca.pem")]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        guard let line = LineReader(out.fileHandleForReading).next(timeout: 30), let port = Int(line) else {
            process.terminate()
            throw XCTSkip("the Python TLS upstream did not start")
        }
        self.port = port
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}
