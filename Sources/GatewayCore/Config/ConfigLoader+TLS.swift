import NIOCore
import NIOSSL

/// Istio's Gateway `servers[]` (TLS termination) and DestinationRule `trafficPolicy.tls` (TLS to
/// upstreams). Certificate files are read here, so a bad one is an error at its JSON path.
extension ConfigLoader {
    /// A certificate or key file past this size is refused (a chain is a few KiB).
    static let maxPEMFileBytes = 1 << 20

    /// One `servers[]` entry as declared, before the servers of a port are put together.
    struct ServerDeclaration {
        var port: Int
        var address: String?
        var isTLS: Bool
        /// Protocol HTTP2 or GRPC: the port speaks HTTP/2 (h2c, or ALPN h2 with `tls`).
        var http2: Bool
        var httpsRedirect: Bool
        var tls: TLSServerConfig?
        /// The entry's path, and its `port.number`'s (errors about the port point there).
        var path: String
        var portPath: String
    }

    static let serverTLSFields = [
        "httpsRedirect", "mode", "serverCertificate", "privateKey", "caCertificates", "caCrl", "credentialName",
        "credentialNames", "tlsCertificates", "subjectAltNames", "verifyCertificateSpki", "verifyCertificateHash",
        "minProtocolVersion", "maxProtocolVersion", "cipherSuites",
    ]

    /// A Gateway object (or its bare spec): its servers. `http2Offered`: HTTP/2 is not turned off
    /// (`listener.http2.enabled: false`), so HTTPS servers offer ALPN h2.
    static func gateway(_ node: JSONNode, http2Offered: Bool = true) throws -> [ServerDeclaration] {
        let (spec, _) = try unwrapKubernetes(node, kind: "Gateway")
        let o = try spec.node().object(allowed: ["selector", "servers"])
        // The selector picks the gateway pods a Gateway programs; this process is the only one.
        if let s = o["selector"] { _ = try stringMap(s) }
        let servers = try o.required("servers").array()
        guard !servers.isEmpty else { throw ConfigError(path: o.node().child("servers"), reason: "needs at least one server") }
        return try servers.map { try server($0, http2Offered: http2Offered) }
    }

    /// Istio's protocols: HTTP (plaintext HTTP/1.1), HTTPS (TLS; ALPN h2 and http/1.1), HTTP2 and
    /// GRPC (plaintext h2c with prior knowledge beside HTTP/1.1, or with `tls` as HTTPS does).
    static func server(_ node: JSONNode, http2Offered: Bool = true) throws -> ServerDeclaration {
        let o = try node.object(allowed: ["port", "bind", "hosts", "tls", "name", "defaultEndpoint"])
        try notSupported(o, ["defaultEndpoint"], because: "it forwards to a sidecar's own workload; here VirtualServices route")
        if let n = o["name"] { _ = try n.string() }
        let p = try o.required("port").object(allowed: ["number", "name", "protocol", "targetPort"])
        try notSupported(p, ["targetPort"], because: "the gateway listens on port.number itself")
        let numberNode = try p.required("number")
        let port = try numberNode.int(in: 1...65535)
        if let n = p["name"] { _ = try n.string() }
        let protoNode = try p.required("protocol")
        let proto = try protoNode.string().uppercased()
        switch proto {
        case "HTTP", "HTTPS": break
        case "HTTP2", "GRPC":
            guard http2Offered else {
                throw protoNode.fail("protocol '\(proto)' needs HTTP/2, which listener.http2.enabled: false turns off")
            }
        default:
            throw protoNode.fail("protocol '\(proto)' is not supported: the gateway proxies HTTP only (allowed: HTTP, HTTPS, HTTP2, GRPC)")
        }
        var address: String? = nil
        if let b = o["bind"] {
            let v = try b.nonEmptyString()
            if v.hasPrefix("unix://") { throw b.fail("a unix domain socket is not supported: bind takes an IP address") }
            address = v
        }
        let hostsNode = try o.required("hosts")
        var hosts: [String] = []
        for h in try hostsNode.array() {
            var v = try h.nonEmptyString()
            // `namespace/host`: namespaces select VirtualServices in Istio; here every one applies.
            if let slash = v.firstIndex(of: "/") { v = String(v[v.index(after: slash)...]) }
            guard !v.isEmpty, v == "*" || !v.dropFirst().contains("*") else {
                throw h.fail("a host is a name, `*.suffix` or `*`, found '\(try h.string())'")
            }
            hosts.append(v.lowercased())
        }
        guard !hosts.isEmpty else { throw hostsNode.fail("needs at least one host") }
        let http2 = proto == "HTTP2" || proto == "GRPC"
        let tlsNode = o["tls"]
        // HTTP2 and GRPC are TLS when `tls` says more than httpsRedirect (Istio reads them so).
        let tlsKeys = (tlsNode?.value as? [String: Any])?.keys.filter { $0 != "httpsRedirect" } ?? []
        let isTLS = proto == "HTTPS" || (http2 && !tlsKeys.isEmpty)
        var d = ServerDeclaration(port: port, address: address, isTLS: isTLS, http2: http2, httpsRedirect: false, tls: nil,
                                  path: node.path, portPath: numberNode.path)
        if !isTLS {
            guard let tlsNode else { return d }
            let t = try tlsNode.object(allowed: serverTLSFields)
            for key in t.dict.keys.sorted() where key != "httpsRedirect" {
                throw ConfigError(path: t.node().child(key), reason: "an HTTP server takes only httpsRedirect; TLS settings belong to a server with protocol HTTPS")
            }
            d.httpsRedirect = try t["httpsRedirect"]?.bool() ?? false
            if d.httpsRedirect && http2 {
                throw ConfigError(path: t.node().child("httpsRedirect"), reason: "a redirecting server answers HTTP/1.1 only: give it protocol HTTP")
            }
            return d
        }
        guard let tlsNode else {
            throw ConfigError(path: node.child("tls"), reason: "required for protocol HTTPS (mode SIMPLE or MUTUAL, serverCertificate, privateKey)")
        }
        d.tls = try serverTLS(tlsNode, hosts: hosts, serverPath: node.path, offersH2: http2Offered)
        return d
    }

    /// `offersH2`: ALPN offers `h2` before `http/1.1` (Istio's gateway servers do unless HTTP/2 is off).
    static func serverTLS(_ node: JSONNode, hosts: [String], serverPath: String, offersH2: Bool = true) throws -> TLSServerConfig {
        let t = try node.object(allowed: serverTLSFields)
        try notSupported(t, ["credentialName", "credentialNames", "tlsCertificates"],
                         because: "certificates come from files (serverCertificate, privateKey), not from Kubernetes secrets or SDS")
        try notSupported(t, ["caCrl"], because: "certificate revocation lists are not checked")
        try notSupported(t, ["subjectAltNames", "verifyCertificateSpki", "verifyCertificateHash"],
                         because: "client certificates are checked against caCertificates only")
        if let r = t["httpsRedirect"], try r.bool() {
            throw r.fail("only on a server with protocol HTTP: this server already speaks HTTPS")
        }
        guard let modeNode = t["mode"] else {
            throw ConfigError(path: node.child("mode"), reason: "required: Istio's default is PASSTHROUGH, which this gateway does not support (allowed: SIMPLE, MUTUAL)")
        }
        let modeText = try modeNode.string()
        guard let mode = TLSServerConfig.Mode(rawValue: modeText) else {
            let why = ["PASSTHROUGH", "AUTO_PASSTHROUGH"].contains(modeText)
                ? "the gateway terminates TLS; it does not route by SNI without decrypting"
                : ["ISTIO_MUTUAL", "OPTIONAL_MUTUAL"].contains(modeText)
                    ? "Istio's mesh certificates and optional client certificates are not supported"
                    : "unknown mode"
            throw modeNode.fail("mode '\(modeText)' is not supported: \(why) (allowed: SIMPLE, MUTUAL)")
        }
        let certNode = try t.required("serverCertificate")
        let keyNode = try t.required("privateKey")
        let (certBytes, chain) = try certificates(certNode)
        let (keyBytes, key) = try privateKey(keyNode)
        var fileBytes = certBytes + keyBytes
        var config = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        var caPath: String? = nil
        if let caNode = t["caCertificates"] {
            guard mode == .mutual else { throw caNode.fail("only with mode MUTUAL: a SIMPLE server asks for no client certificate") }
            let (caBytes, cas) = try certificates(caNode)
            fileBytes += caBytes
            caPath = try caNode.string()
            config.trustRoots = .certificates(cas)
            // Client certificates are checked against the CA; a client has no host name to check.
            config.certificateVerification = .noHostnameVerification
        } else if mode == .mutual {
            throw ConfigError(path: node.child("caCertificates"), reason: "required with mode MUTUAL: the CA client certificates must be signed by")
        }
        let (minVersion, maxVersion) = try versions(t)
        config.minimumTLSVersion = minVersion.nio(auto: .tlsv12)
        config.maximumTLSVersion = maxVersion.nio(auto: .tlsv13)
        // Istio's ingress offers h2 and http/1.1 on every terminated server (Envoy's
        // `alpn_protocols`); a client without ALPN speaks HTTP/1.1.
        config.applicationProtocols = offersH2 ? ["h2", "http/1.1"] : ["http/1.1"]
        let ciphers = try cipherSuites(t, into: &config)
        let context = try makeContext(config, t, blaming: keyNode)
        return TLSServerConfig(hosts: hosts, mode: mode, serverCertificate: try certNode.string(), privateKey: try keyNode.string(),
                               caCertificates: caPath, minProtocolVersion: minVersion, maxProtocolVersion: maxVersion,
                               cipherSuites: ciphers, path: serverPath, offersH2: offersH2, context: context, fileBytes: fileBytes)
    }

    /// The servers of every Gateway, one listener per port. Servers sharing a port share its
    /// protocol; HTTPS ones are picked by SNI and must not share a host; HTTP ones must agree on
    /// `httpsRedirect`. `mainPort`: the `listener` block's port, which stays plaintext.
    /// `mainSpeaksH2C`: `listener.http2` is enabled, so plaintext HTTP ports take h2c too.
    static func gatewayListeners(_ declarations: [ServerDeclaration], listener: BindAddress,
                                 mainSpeaksH2C: Bool = false) throws -> [GatewayListenerConfig] {
        var byPort: [Int: [ServerDeclaration]] = [:]
        var order: [Int] = []
        for d in declarations {
            if byPort[d.port] == nil { order.append(d.port) }
            byPort[d.port, default: []].append(d)
        }
        var listeners: [GatewayListenerConfig] = []
        for port in order {
            let servers = byPort[port]!
            let first = servers[0]
            for s in servers.dropFirst() {
                if s.isTLS != first.isTLS {
                    throw ConfigError(path: s.portPath, reason: "port \(port) is \(first.isTLS ? "HTTPS" : "HTTP") at \(first.path); servers sharing a port share its protocol")
                }
                if s.address != first.address {
                    throw ConfigError(path: s.portPath, reason: "port \(port) is bound to \(first.address ?? listener.address) at \(first.path); servers sharing a port share its bind address")
                }
                if s.httpsRedirect != first.httpsRedirect {
                    throw ConfigError(path: s.path + ".tls.httpsRedirect", reason: "not supported per host: every HTTP server on port \(port) must agree on httpsRedirect")
                }
            }
            let address = first.address ?? listener.address
            if first.isTLS {
                if port == listener.port {
                    throw ConfigError(path: first.portPath, reason: "port \(port) is the plaintext listener's (listener.port); give HTTPS another port")
                }
                var seen: [String: String] = [:]
                for s in servers {
                    for h in s.tls!.hosts {
                        if let other = seen[h] { throw ConfigError(path: s.path + ".hosts", reason: "host '\(h)' on port \(port) is already served by \(other): SNI could not choose") }
                        seen[h] = s.path
                    }
                }
                listeners.append(.init(address: address, port: port, kind: .tls(SNITable(servers: servers.map { $0.tls! })), path: first.path,
                                       http2: servers[0].tls!.offersH2))
            } else {
                // The main listener's port: a server there can only make it redirect.
                // HTTP2 and GRPC servers make the port take h2c; a redirecting port stays HTTP/1.1.
                let h2c = !first.httpsRedirect && (mainSpeaksH2C || servers.contains { $0.http2 })
                if port == listener.port && h2c && !mainSpeaksH2C {
                    throw ConfigError(path: first.portPath, reason: "port \(port) is the plaintext listener's: enable listener.http2 for HTTP/2 on it")
                }
                listeners.append(.init(address: address, port: port, kind: .plaintext(httpsRedirect: first.httpsRedirect), path: first.path,
                                       http2: h2c))
            }
        }
        return listeners
    }

    // MARK: upstream

    /// DestinationRule `trafficPolicy.tls` (nil: DISABLE).
    static func upstreamTLS(_ node: JSONNode) throws -> UpstreamTLSConfig? {
        let t = try node.object(allowed: [
            "mode", "clientCertificate", "privateKey", "caCertificates", "credentialName", "subjectAltNames", "sni",
            "insecureSkipVerify", "caCrl",
        ])
        try notSupported(t, ["credentialName"], because: "certificates come from files (clientCertificate, privateKey, caCertificates), not from Kubernetes secrets")
        try notSupported(t, ["caCrl"], because: "certificate revocation lists are not checked")
        let modeNode = try t.required("mode")
        let modeText = try modeNode.string()
        if modeText == "DISABLE" {
            for key in t.dict.keys.sorted() where key != "mode" {
                throw ConfigError(path: t.node().child(key), reason: "has no effect with mode DISABLE (upstream connections are plaintext)")
            }
            return nil
        }
        guard let mode = UpstreamTLSConfig.Mode(rawValue: modeText) else {
            let why = modeText == "ISTIO_MUTUAL" ? "Istio's mesh certificates are not available to this gateway" : "unknown mode"
            throw modeNode.fail("mode '\(modeText)' is not supported: \(why) (allowed: DISABLE, SIMPLE, MUTUAL)")
        }
        var config = TLSConfiguration.makeClientConfiguration()
        config.minimumTLSVersion = .tlsv12
        config.applicationProtocols = ["http/1.1"]
        var fileBytes: [UInt8] = []
        var clientCert: String? = nil, clientKey: String? = nil
        if mode == .mutual {
            let certNode = try t.required("clientCertificate")
            let keyNode = try t.required("privateKey")
            let (certBytes, chain) = try certificates(certNode)
            let (keyBytes, key) = try privateKey(keyNode)
            fileBytes += certBytes + keyBytes
            config.certificateChain = chain.map { .certificate($0) }
            config.privateKey = .privateKey(key)
            clientCert = try certNode.string()
            clientKey = try keyNode.string()
        } else {
            for key in ["clientCertificate", "privateKey"] {
                if let n = t[key] { throw n.fail("only with mode MUTUAL: a SIMPLE connection presents no client certificate") }
            }
        }
        let skip = try t["insecureSkipVerify"]?.bool() ?? false
        var caPath: String? = nil
        if let caNode = t["caCertificates"] {
            if skip { throw caNode.fail("has no effect with insecureSkipVerify: the upstream's certificate is not checked") }
            let (caBytes, cas) = try certificates(caNode)
            fileBytes += caBytes
            config.trustRoots = .certificates(cas)
            caPath = try caNode.string()
        }
        var sans: [String] = []
        if let s = t["subjectAltNames"] {
            if skip { throw s.fail("has no effect with insecureSkipVerify: the upstream's certificate is not checked") }
            sans = try s.array().map { try $0.nonEmptyString() }
        }
        // Without subjectAltNames the certificate must be for the SNI name (Istio's
        // VERIFY_CERTIFICATE_AT_CLIENT); with them, one of its SANs must be listed instead.
        config.certificateVerification = skip ? .none : sans.isEmpty ? .fullVerification : .noHostnameVerification
        var sni: String? = nil
        if let n = t["sni"] {
            let v = try n.nonEmptyString()
            do { try v.validateSNIName() } catch { throw n.fail("'\(v)' cannot be sent as SNI (an IP address or an invalid name)") }
            sni = v
        }
        let context = try makeContext(config, t, blaming: t["privateKey"] ?? t["caCertificates"] ?? modeNode)
        // The same settings offering ALPN h2, for clusters whose connections speak HTTP/2.
        config.applicationProtocols = ["h2"]
        let h2Context = try makeContext(config, t, blaming: t["privateKey"] ?? t["caCertificates"] ?? modeNode)
        return UpstreamTLSConfig(mode: mode, caCertificates: caPath, clientCertificate: clientCert, privateKey: clientKey, sni: sni,
                                 subjectAltNames: sans, insecureSkipVerify: skip, context: context, h2Context: h2Context,
                                 fileBytes: fileBytes)
    }

    // MARK: files

    static func pemFile(_ node: JSONNode) throws -> [UInt8] {
        let path = try node.nonEmptyString()
        let bytes: [UInt8]
        do {
            bytes = try readConfigFile(path)
        } catch let e as ConfigError {
            throw node.fail(e.reason.replacingOccurrences(of: "config file", with: "file"))
        }
        guard bytes.count <= maxPEMFileBytes else { throw node.fail("file '\(path)' is larger than 1 MiB: not a certificate or key") }
        return bytes
    }

    static func certificates(_ node: JSONNode) throws -> ([UInt8], [NIOSSLCertificate]) {
        let bytes = try pemFile(node)
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(bytes)
        } catch {
            throw node.fail("'\(try node.string())' holds no PEM certificate (\(error))")
        }
        guard !chain.isEmpty else { throw node.fail("'\(try node.string())' holds no PEM certificate") }
        return (bytes, chain)
    }

    static func privateKey(_ node: JSONNode) throws -> ([UInt8], NIOSSLPrivateKey) {
        let bytes = try pemFile(node)
        do {
            return (bytes, try NIOSSLPrivateKey(bytes: bytes, format: .pem))
        } catch {
            throw node.fail("'\(try node.string())' holds no PEM private key (\(error))")
        }
    }

    static func versions(_ t: JSONObject) throws -> (TLSProtocolVersion, TLSProtocolVersion) {
        func version(_ key: String) throws -> TLSProtocolVersion {
            guard let n = t[key] else { return .auto }
            let v = try n.string()
            guard let version = TLSProtocolVersion(rawValue: v) else {
                throw n.fail("unknown version '\(v)' (allowed: \(TLSProtocolVersion.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return version
        }
        let minVersion = try version("minProtocolVersion"), maxVersion = try version("maxProtocolVersion")
        let order: [TLSProtocolVersion] = [.v1_0, .v1_1, .v1_2, .v1_3]
        let lo = order.firstIndex(of: minVersion == .auto ? .v1_2 : minVersion)!
        let hi = order.firstIndex(of: maxVersion == .auto ? .v1_3 : maxVersion)!
        if lo > hi { throw ConfigError(path: t.node().child("maxProtocolVersion"), reason: "is below minProtocolVersion") }
        return (minVersion, maxVersion)
    }

    /// The TLS 1.2 suites BoringSSL has (OpenSSL names), PSK ones left out: nothing here uses PSK.
    static let knownCipherSuites: Set<String> = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA",
        "ECDHE-ECDSA-AES128-SHA256", "ECDHE-RSA-AES128-SHA256", "AES128-GCM-SHA256", "AES256-GCM-SHA384",
        "AES128-SHA", "AES256-SHA", "DES-CBC3-SHA",
    ]

    /// Istio's `cipherSuites`: OpenSSL names for TLS 1.2 and below (TLS 1.3's are fixed). Each is
    /// checked by name here: NIOSSL stops the process on a cipher list BoringSSL refuses.
    static func cipherSuites(_ t: JSONObject, into config: inout TLSConfiguration) throws -> [String] {
        guard let n = t["cipherSuites"] else { return [] }
        let names = try n.array().map { try $0.nonEmptyString() }
        guard !names.isEmpty else { throw n.fail("needs at least one cipher suite (leave it out for the defaults)") }
        for (i, name) in names.enumerated() where !knownCipherSuites.contains(name) {
            throw ConfigError(path: "\(n.path)[\(i)]",
                              reason: "unknown cipher suite '\(name)' (known: \(knownCipherSuites.sorted().joined(separator: ", ")))")
        }
        config.cipherSuites = names.joined(separator: ":")
        return names
    }

    /// The context; what BoringSSL refuses here (a key that does not match its certificate) is
    /// reported at `node`.
    static func makeContext(_ config: TLSConfiguration, _ t: JSONObject, blaming node: JSONNode) throws -> NIOSSLContext {
        do {
            return try NIOSSLContext(configuration: config)
        } catch {
            throw node.fail("the TLS context cannot be built: \(error) (does the private key match the certificate?)")
        }
    }
}

extension String {
    /// NIOSSL's rule for an SNI name: not an IP address, no NUL, 1...255 bytes.
    func validateSNIName() throws {
        struct Invalid: Error {}
        if (try? SocketAddress(ipAddress: self, port: 0)) != nil { throw Invalid() }
        guard !utf8.contains(0), (1...255).contains(utf8.count) else { throw Invalid() }
    }
}
