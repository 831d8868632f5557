/// `gateway validate` lines for Gateway servers and upstream TLS.
extension ConfigReport {
    /// One line per port a Gateway opens, and one per HTTPS server on it.
    static func gatewayListenersText(_ config: GatewayConfig) -> String {
        var out = ""
        for g in config.gatewayListeners {
            switch g.kind {
            case .plaintext(let redirect):
                out += "gateway listener http://\(g.address):\(g.port)" + (redirect ? " (every request 301 to https)" : "")
                    + (g.http2 ? ", HTTP/1.1 and h2c" : "") + " (\(g.path))\n"
            case .tls(let table):
                out += "gateway listener https://\(g.address):\(g.port), ALPN \(g.http2 ? "h2, http/1.1" : "http/1.1"), certificate by SNI:\n"
                for s in table.servers {
                    out += "  \(s.hosts.joined(separator: ", ")): \(s.mode.rawValue) \(s.serverCertificate)"
                        + (s.caCertificates.map { ", client certificates from \($0)" } ?? "")
                        + ", TLS \(versionText(s.minProtocolVersion, auto: "1.2"))-\(versionText(s.maxProtocolVersion, auto: "1.3"))"
                        + (s.cipherSuites.isEmpty ? "" : ", ciphers \(s.cipherSuites.joined(separator: ":"))") + " (\(s.path))\n"
                }
            }
        }
        return out
    }

    static func versionText(_ v: TLSProtocolVersion, auto: String) -> String {
        switch v {
        case .auto: auto
        case .v1_0: "1.0"
        case .v1_1: "1.1"
        case .v1_2: "1.2"
        case .v1_3: "1.3"
        }
    }

    /// The `tls` row of a cluster that speaks TLS to its endpoints (none for plaintext ones).
    static func upstreamTLSRows(_ policy: TrafficPolicy) -> [(String, String)] {
        guard let t = policy.tls else { return [] }
        var text = t.mode.rawValue
        if t.insecureSkipVerify {
            text += ", certificate not verified"
        } else {
            text += ", verified against \(t.caCertificates ?? "the system trust store")"
            text += t.subjectAltNames.isEmpty ? " for the SNI name" : ", SAN one of \(t.subjectAltNames.joined(separator: ", "))"
        }
        text += ", SNI \(t.sni ?? "the ServiceEntry host")"
        if let c = t.clientCertificate { text += ", presenting \(c)" }
        return [("tls", text)]
    }
}
