import Foundation
import XCTest
@testable import GatewayCore

/// Gateway `servers` and DestinationRule `tls` through the loader: what loads, what is refused at
/// which path, how SNI picks a server and how upstream TLS is layered.
final class TLSConfigTests: XCTestCase {
    let base = """
        "serviceEntries":[{"hosts":["reviews"],"ports":[{"name":"http","number":9080},{"name":"alt","number":9090}],
                           "endpoints":[{"address":"127.0.0.1","ports":{"http":9081,"alt":9091},"labels":{"version":"v1"}}]}],
        "virtualServices":[{"http":[{"route":[{"destination":{"host":"reviews"}}]}]}]
        """

    func load(gateways: String = "[]", rules: String = "[]") throws -> GatewayConfig {
        let f = try TLSFixture.shared()
        let text = "{\(base),\"gateways\":\(gateways),\"destinationRules\":\(rules)}"
            .replacingOccurrences(of: "@CERT", with: f.certificate).replacingOccurrences(of: "@KEY", with: f.key)
            .replacingOccurrences(of: "@CA", with: f.ca).replacingOccurrences(of: "@OTHERKEY", with: f.otherKey)
        return try ConfigLoader.decode(Array(text.utf8))
    }

    func refusal(gateways: String = "[]", rules: String = "[]") -> ConfigError? {
        do {
            _ = try load(gateways: gateways, rules: rules)
            return nil
        } catch let e as ConfigError { return e } catch { return ConfigError(path: "?", reason: "\(error)") }
    }

    func https(_ port: Int = 8443, hosts: String = "[\"*\"]", tls: String = "{\"mode\":\"SIMPLE\",\"serverCertificate\":\"@CERT\",\"privateKey\":\"@KEY\"}") -> String {
        "{\"port\":{\"number\":\(port),\"name\":\"https\",\"protocol\":\"HTTPS\"},\"hosts\":\(hosts),\"tls\":\(tls)}"
    }

    func testServersBecomeOneListenerPerPortWithSNIChoosingTheServer() throws {
        let c = try load(gateways: """
            [{"servers":[\(https(hosts: "[\"shop.example\"]")),\(https(hosts: "[\"ns/*.api.example\"]")),
                         \(https(hosts: "[\"*.b.api.example\"]")),
                         {"port":{"number":8000,"protocol":"HTTP"},"hosts":["*"],"tls":{"httpsRedirect":true}}]}]
            """)
        XCTAssertEqual(c.gatewayListeners.map(\.port), [8443, 8000])
        XCTAssertEqual(c.gatewayListeners[1].kind, .plaintext(httpsRedirect: true))
        guard case .tls(let table) = c.gatewayListeners[0].kind else { return XCTFail("8443 is HTTPS") }
        XCTAssertEqual(table.server(for: "SHOP.example")?.path, "gateways[0].servers[0]")
        XCTAssertEqual(table.server(for: "x.api.example")?.path, "gateways[0].servers[1]")
        XCTAssertEqual(table.server(for: "x.b.api.example")?.path, "gateways[0].servers[2]", "the longest wildcard wins")
        XCTAssertNil(table.server(for: "api.example"), "a wildcard needs a label of its own")
        XCTAssertNil(table.server(for: "other.example"))
        XCTAssertNil(table.server(for: nil), "no SNI and no `*` server")
        let s = table.servers[0]
        XCTAssertEqual(s.minProtocolVersion, .auto)
        XCTAssertEqual(ConfigReport.versionText(s.minProtocolVersion, auto: "1.2"), "1.2")
        XCTAssertTrue(ConfigReport.render(c).contains("gateway listener https://0.0.0.0:8443"), ConfigReport.render(c))
    }

    func testHTTP2AndGRPCServersSpeakHTTP2AndTheOptOutTurnsItOff() throws {
        let servers = """
            [{"servers":[\(https()),{"port":{"number":9000,"protocol":"GRPC"},"hosts":["*"]},
                         {"port":{"number":9001,"protocol":"HTTP"},"hosts":["*"]},
                         {"port":{"number":9443,"protocol":"HTTP2"},"hosts":["*"],"tls":{"mode":"SIMPLE","serverCertificate":"@CERT","privateKey":"@KEY"}}]}]
            """
        let c = try load(gateways: servers)
        XCTAssertEqual(c.gatewayListeners.map(\.port), [8443, 9000, 9001, 9443])
        XCTAssertEqual(c.gatewayListeners.map(\.http2), [true, true, false, true])
        XCTAssertEqual(c.gatewayListeners.map(\.scheme), ["https", "http", "http", "https"])
        guard case .tls(let table) = c.gatewayListeners[0].kind else { return XCTFail("8443 is HTTPS") }
        XCTAssertTrue(table.servers[0].offersH2, "Istio's ingress offers h2 on HTTPS servers")
        XCTAssertTrue(ConfigReport.render(c).contains("ALPN h2, http/1.1"), ConfigReport.render(c))

        // listener.http2.enabled false: ALPN http/1.1 only, and HTTP2/GRPC servers refused.
        let f = try TLSFixture.shared()
        func withOptOut(_ gateways: String) throws -> GatewayConfig {
            let text = "{\"listener\":{\"http2\":{\"enabled\":false}},\(base),\"gateways\":\(gateways)}"
                .replacingOccurrences(of: "@CERT", with: f.certificate).replacingOccurrences(of: "@KEY", with: f.key)
            return try ConfigLoader.decode(Array(text.utf8))
        }
        let off = try withOptOut("[{\"servers\":[\(https())]}]")
        guard case .tls(let plain) = off.gatewayListeners[0].kind else { return XCTFail("8443 is HTTPS") }
        XCTAssertFalse(plain.servers[0].offersH2)
        XCTAssertFalse(off.gatewayListeners[0].http2)
        XCTAssertThrowsError(try withOptOut(servers)) { e in
            XCTAssertEqual((e as? ConfigError)?.path, "gateways[0].servers[1].port.protocol", "\(e)")
        }
        // With listener.http2 on, plain HTTP ports take h2c too.
        let text = "{\"listener\":{\"http2\":{}},\(base),\"gateways\":[{\"servers\":[{\"port\":{\"number\":9001,\"protocol\":\"HTTP\"},\"hosts\":[\"*\"]}]}]}"
        XCTAssertEqual(try ConfigLoader.decode(Array(text.utf8)).gatewayListeners.map(\.http2), [true])
    }

    func testKubectlListTakesGatewayObjects() throws {
        let f = try TLSFixture.shared()
        let text = """
            {"kind":"List","items":[
              {"kind":"ServiceEntry","spec":{"hosts":["reviews"],"endpoints":[{"address":"127.0.0.1","port":9081}]}},
              {"apiVersion":"networking.istio.io/v1","kind":"Gateway","metadata":{"name":"g"},
               "spec":{"selector":{"istio":"ingressgateway"},"servers":[\(https().replacingOccurrences(of: "@CERT", with: f.certificate).replacingOccurrences(of: "@KEY", with: f.key))]}}]}
            """
        XCTAssertEqual(try ConfigLoader.decode(Array(text.utf8)).gatewayListeners.map(\.port), [8443])
    }

    func testWhatIsRefusedIsRefusedAtItsPath() {
        let cases: [(gateways: String, rules: String, path: String, says: String)] = [
            ("[{\"servers\":[{\"port\":{\"number\":8443,\"protocol\":\"TCP\"},\"hosts\":[\"*\"]}]}]", "[]",
             "gateways[0].servers[0].port.protocol", "not supported"),
            ("[{\"servers\":[{\"port\":{\"number\":8000,\"protocol\":\"GRPC\"},\"hosts\":[\"*\"],\"tls\":{\"httpsRedirect\":true}}]}]", "[]",
             "gateways[0].servers[0].tls.httpsRedirect", "HTTP/1.1 only"),
            ("[{\"servers\":[{\"port\":{\"number\":8080,\"protocol\":\"HTTP2\"},\"hosts\":[\"*\"]}]}]", "[]",
             "gateways[0].servers[0].port.number", "enable listener.http2"),
            ("[{\"servers\":[\(https(tls: "{\"serverCertificate\":\"@CERT\",\"privateKey\":\"@KEY\"}"))]}]", "[]",
             "gateways[0].servers[0].tls.mode", "PASSTHROUGH"),
            ("[{\"servers\":[\(https(tls: "{\"mode\":\"ISTIO_MUTUAL\"}"))]}]", "[]", "gateways[0].servers[0].tls.mode", "not supported"),
            ("[{\"servers\":[\(https(tls: "{\"mode\":\"SIMPLE\",\"credentialName\":\"c\"}"))]}]", "[]",
             "gateways[0].servers[0].tls.credentialName", "not supported"),
            ("[{\"servers\":[\(https(tls: "{\"mode\":\"SIMPLE\",\"serverCertificate\":\"/nonexistent.pem\",\"privateKey\":\"@KEY\"}"))]}]", "[]",
             "gateways[0].servers[0].tls.serverCertificate", "cannot read"),
            ("[{\"servers\":[\(https(tls: "{\"mode\":\"SIMPLE\",\"serverCertificate\":\"@CERT\",\"privateKey\":\"@OTHERKEY\"}"))]}]", "[]",
             "gateways[0].servers[0].tls.privateKey", "match"),
            ("[{\"servers\":[\(https(tls: "{\"mode\":\"SIMPLE\",\"serverCertificate\":\"@KEY\",\"privateKey\":\"@KEY\"}"))]}]", "[]",
             "gateways[0].servers[0].tls.serverCertificate", "no PEM certificate"),
            ("[{\"servers\":[\(https(tls: "{\"mode\":\"SIMPLE\",\"serverCertificate\":\"@CERT\",\"privateKey\":\"@KEY\",\"caCertificates\":\"@CA\"}"))]}]", "[]",
             "gateways[0].servers[0].tls.caCertificates", "only with mode MUTUAL"),
            ("[{\"servers\":[\(https(tls: "{\"mode\":\"MUTUAL\",\"serverCertificate\":\"@CERT\",\"privateKey\":\"@KEY\"}"))]}]", "[]",
             "gateways[0].servers[0].tls.caCertificates", "required"),
            ("[{\"servers\":[\(https(tls: "{\"mode\":\"SIMPLE\",\"serverCertificate\":\"@CERT\",\"privateKey\":\"@KEY\",\"cipherSuites\":[\"ECDHE-RSA-AES128-GCM-SHA256\",\"NOPE\"]}"))]}]", "[]",
             "gateways[0].servers[0].tls.cipherSuites[1]", "unknown cipher"),
            ("[{\"servers\":[\(https(tls: "{\"mode\":\"SIMPLE\",\"serverCertificate\":\"@CERT\",\"privateKey\":\"@KEY\",\"minProtocolVersion\":\"TLSV1_3\",\"maxProtocolVersion\":\"TLSV1_2\"}"))]}]", "[]",
             "gateways[0].servers[0].tls.maxProtocolVersion", "below"),
            ("[{\"servers\":[\(https(hosts: "[\"a.example\"]")),\(https(hosts: "[\"A.example\"]"))]}]", "[]",
             "gateways[0].servers[1].hosts", "already served"),
            ("[{\"servers\":[\(https(8080))]}]", "[]", "gateways[0].servers[0].port.number", "plaintext listener"),
            ("[{\"servers\":[\(https()),{\"port\":{\"number\":8443,\"protocol\":\"HTTP\"},\"hosts\":[\"*\"]}]}]", "[]",
             "gateways[0].servers[1].port.number", "share its protocol"),
            ("[{\"servers\":[{\"port\":{\"number\":8000,\"protocol\":\"HTTP\"},\"hosts\":[\"*\"],\"tls\":{\"mode\":\"SIMPLE\"}}]}]", "[]",
             "gateways[0].servers[0].tls.mode", "HTTP server takes only httpsRedirect"),
            ("[]", "[{\"host\":\"reviews\",\"trafficPolicy\":{\"tls\":{\"mode\":\"ISTIO_MUTUAL\"}}}]",
             "destinationRules[0].trafficPolicy.tls.mode", "not supported"),
            ("[]", "[{\"host\":\"reviews\",\"trafficPolicy\":{\"tls\":{\"mode\":\"SIMPLE\",\"credentialName\":\"c\"}}}]",
             "destinationRules[0].trafficPolicy.tls.credentialName", "not supported"),
            ("[]", "[{\"host\":\"reviews\",\"trafficPolicy\":{\"tls\":{\"mode\":\"MUTUAL\",\"clientCertificate\":\"@CERT\"}}}]",
             "destinationRules[0].trafficPolicy.tls.privateKey", "required"),
            ("[]", "[{\"host\":\"reviews\",\"trafficPolicy\":{\"tls\":{\"mode\":\"SIMPLE\",\"caCertificates\":\"/nonexistent\"}}}]",
             "destinationRules[0].trafficPolicy.tls.caCertificates", "cannot read"),
            ("[]", "[{\"host\":\"reviews\",\"trafficPolicy\":{\"tls\":{\"mode\":\"SIMPLE\",\"sni\":\"10.0.0.1\"}}}]",
             "destinationRules[0].trafficPolicy.tls.sni", "cannot be sent as SNI"),
            ("[]", "[{\"host\":\"reviews\",\"trafficPolicy\":{\"tls\":{\"mode\":\"DISABLE\",\"sni\":\"a\"}}}]",
             "destinationRules[0].trafficPolicy.tls.sni", "no effect"),
        ]
        for c in cases {
            guard let e = refusal(gateways: c.gateways, rules: c.rules) else {
                XCTFail("loads, should be refused at \(c.path): \(c.gateways) \(c.rules)")
                continue
            }
            XCTAssertEqual(e.path, c.path, "\(e)")
            XCTAssertTrue(e.reason.contains(c.says), "\(e) should say '\(c.says)'")
        }
    }

    func testUpstreamTLSIsLayeredAsIstioLayersPolicies() throws {
        let c = try load(rules: """
            [{"host":"reviews","trafficPolicy":{"tls":{"mode":"SIMPLE","caCertificates":"@CA","sni":"rule"},
                "portLevelSettings":[{"port":{"number":9090},"connectionPool":{"tcp":{"maxConnections":3}}}]},
              "subsets":[{"name":"v1","labels":{"version":"v1"}},
                         {"name":"plain","trafficPolicy":{"tls":{"mode":"DISABLE"}}},
                         {"name":"mutual","trafficPolicy":{"tls":{"mode":"MUTUAL","clientCertificate":"@CERT","privateKey":"@KEY"}}}]}]
            """)
        XCTAssertEqual(c.hosts["reviews"]?.trafficPolicy.tls?.sni, "rule")
        XCTAssertEqual(c.hosts["reviews"]?.trafficPolicy.tls?.mode, .simple)
        XCTAssertEqual(c.hosts["outbound|9080|v1|reviews"]?.trafficPolicy.tls?.sni, "rule", "a subset without tls keeps the rule's")
        XCTAssertNil(c.hosts["outbound|9080|plain|reviews"]?.trafficPolicy.tls, "DISABLE replaces it")
        let mutual = c.hosts["outbound|9080|mutual|reviews"]?.trafficPolicy.tls
        XCTAssertEqual(mutual?.mode, .mutual)
        XCTAssertNil(mutual?.sni, "the subset's tls replaces the whole part")
        let withPort = try load(rules: """
            [{"host":"reviews","trafficPolicy":{"tls":{"mode":"SIMPLE"},
                "portLevelSettings":[{"port":{"number":9090},"connectionPool":{"tcp":{"maxConnections":3}}}]}}]
            """)
        XCTAssertNotNil(withPort.hosts["reviews"]?.trafficPolicy.tls, "SIMPLE without caCertificates: the system trust store")
        // Port-level settings replace every part: one without tls is plaintext.
        let routed = try ConfigLoader.decode(Array("""
            {\(base.replacingOccurrences(of: "\"destination\":{\"host\":\"reviews\"}", with: "\"destination\":{\"host\":\"reviews\",\"port\":{\"number\":9090}}")),
             "destinationRules":[{"host":"reviews","trafficPolicy":{"tls":{"mode":"SIMPLE"},
                "portLevelSettings":[{"port":{"number":9090},"connectionPool":{"tcp":{"maxConnections":3}}}]}}]}
            """.utf8))
        XCTAssertNil(routed.hosts["outbound|9090||reviews"]?.trafficPolicy.tls)
        XCTAssertTrue(ConfigReport.render(c).contains("SIMPLE, verified against"), ConfigReport.render(c))
    }

    func testAReloadWithRenewedFilesComparesUnequal() throws {
        let a = try load(gateways: "[{\"servers\":[\(https())]}]")
        let b = try load(gateways: "[{\"servers\":[\(https())]}]")
        XCTAssertEqual(a.gatewayListeners, b.gatewayListeners)
        let f = try TLSFixture.shared()
        let copy = f.certificate + ".copy"
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: f.certificate, toPath: copy)
        defer { try? FileManager.default.removeItem(atPath: copy) }
        let c = try load(gateways: "[{\"servers\":[\(https(tls: "{\"mode\":\"SIMPLE\",\"serverCertificate\":\"\(copy)\",\"privateKey\":\"@KEY\"}"))]}]")
        XCTAssertNotEqual(a.gatewayListeners, c.gatewayListeners, "another path")
    }
}
