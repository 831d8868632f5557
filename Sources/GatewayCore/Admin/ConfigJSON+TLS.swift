/// `/config_dump` sections for TLS, present only when the config has some: the Gateway's
/// listeners with their servers, and the clusters that speak TLS to their endpoints.
extension ConfigJSON {
    static func tlsSections(_ c: GatewayConfig) -> [(String, String)] {
        var out: [(String, String)] = []
        if !c.gatewayListeners.isEmpty {
            out.append(("gatewayListeners", "[" + c.gatewayListeners.map { g -> String in
                var fields: [(String, String)] = [
                    ("address", jsonString(g.address)), ("port", "\(g.port)"), ("scheme", jsonString(g.scheme)), ("declared", jsonString(g.path)),
                    ("http2", g.http2 ? "true" : "false"),
                ]
                switch g.kind {
                case .plaintext(let redirect):
                    fields.append(("httpsRedirect", redirect ? "true" : "false"))
                case .tls(let table):
                    fields.append(("servers", "[" + table.servers.map { s in
                        object([
                            ("hosts", "[" + s.hosts.map(jsonString).joined(separator: ",") + "]"),
                            ("mode", jsonString(s.mode.rawValue)),
                            ("serverCertificate", jsonString(s.serverCertificate)), ("privateKey", jsonString(s.privateKey)),
                            ("caCertificates", s.caCertificates.map(jsonString) ?? "null"),
                            ("minProtocolVersion", jsonString(ConfigReport.versionText(s.minProtocolVersion, auto: "1.2"))),
                            ("maxProtocolVersion", jsonString(ConfigReport.versionText(s.maxProtocolVersion, auto: "1.3"))),
                            ("cipherSuites", "[" + s.cipherSuites.map(jsonString).joined(separator: ",") + "]"),
                            ("alpn", s.offersH2 ? "[\"h2\",\"http/1.1\"]" : "[\"http/1.1\"]"),
                        ])
                    }.joined(separator: ",") + "]"))
                }
                return object(fields)
            }.joined(separator: ",") + "]"))
        }
        let tlsClusters = c.hosts.sorted { $0.key < $1.key }.compactMap { name, h in h.trafficPolicy.tls.map { (name, $0) } }
        if !tlsClusters.isEmpty {
            out.append(("upstreamTLS", object(tlsClusters.map { name, t in
                (name, object([
                    ("mode", jsonString(t.mode.rawValue)),
                    ("caCertificates", t.caCertificates.map(jsonString) ?? "null"),
                    ("clientCertificate", t.clientCertificate.map(jsonString) ?? "null"),
                    ("sni", t.sni.map(jsonString) ?? "null"),
                    ("subjectAltNames", "[" + t.subjectAltNames.map(jsonString).joined(separator: ",") + "]"),
                    ("insecureSkipVerify", t.insecureSkipVerify ? "true" : "false"),
                ]))
            })))
        }
        return out
    }
}
