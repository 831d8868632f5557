import NIOCore
import NIOSSL

/// Istio's TLS version names (`minProtocolVersion`, `maxProtocolVersion`).
public enum TLSProtocolVersion: String, Sendable, Equatable, CaseIterable {
    case auto = "TLS_AUTO"
    case v1_0 = "TLSV1_0"
    case v1_1 = "TLSV1_1"
    case v1_2 = "TLSV1_2"
    case v1_3 = "TLSV1_3"

    /// NIOSSL's version; `TLS_AUTO` is the default the caller picks.
    func nio(auto: TLSVersion) -> TLSVersion {
        switch self {
        case .auto: auto
        case .v1_0: .tlsv1
        case .v1_1: .tlsv11
        case .v1_2: .tlsv12
        case .v1_3: .tlsv13
        }
    }
}

/// One Gateway `servers[]` entry with `port.protocol: HTTPS`: the certificate the gateway shows
/// to clients whose SNI matches `hosts`, and what it asks of them.
///
/// The files are read and the TLS context is built when the config is loaded: a missing file, a
/// key that does not match its certificate or an unknown cipher is a config error at its path,
/// and a reload that brings one keeps the old config. A reload reads the files again, so a
/// renewed certificate is shown to every connection accepted after it; connections already open
/// keep the context they were accepted with.
public struct TLSServerConfig: Sendable, Equatable {
    public enum Mode: String, Sendable, Equatable {
        case simple = "SIMPLE"
        /// The client must present a certificate signed by `caCertificates`.
        case mutual = "MUTUAL"
    }

    /// Istio's `hosts` without their namespace part, lowercased: the SNI names this server answers.
    public var hosts: [String]
    public var mode: Mode
    public var serverCertificate: String
    public var privateKey: String
    public var caCertificates: String?
    public var minProtocolVersion: TLSProtocolVersion
    public var maxProtocolVersion: TLSProtocolVersion
    public var cipherSuites: [String]
    /// Where the server was declared (`gateways[0].servers[1]`), for logs and `/config_dump`.
    public var path: String
    /// ALPN offers `h2` before `http/1.1` (else `http/1.1` alone).
    public var offersH2: Bool
    /// Built from the files as they were read when the config was loaded.
    public let context: NIOSSLContext
    /// The bytes of every file read, so a reload with a renewed certificate compares unequal.
    let fileBytes: [UInt8]

    init(hosts: [String], mode: Mode, serverCertificate: String, privateKey: String, caCertificates: String?,
         minProtocolVersion: TLSProtocolVersion, maxProtocolVersion: TLSProtocolVersion, cipherSuites: [String],
         path: String, offersH2: Bool, context: NIOSSLContext, fileBytes: [UInt8]) {
        self.hosts = hosts
        self.offersH2 = offersH2
        self.mode = mode
        self.serverCertificate = serverCertificate
        self.privateKey = privateKey
        self.caCertificates = caCertificates
        self.minProtocolVersion = minProtocolVersion
        self.maxProtocolVersion = maxProtocolVersion
        self.cipherSuites = cipherSuites
        self.path = path
        self.context = context
        self.fileBytes = fileBytes
    }

    public static func == (a: TLSServerConfig, b: TLSServerConfig) -> Bool {
        a.hosts == b.hosts && a.mode == b.mode && a.serverCertificate == b.serverCertificate && a.privateKey == b.privateKey
            && a.caCertificates == b.caCertificates && a.minProtocolVersion == b.minProtocolVersion
            && a.maxProtocolVersion == b.maxProtocolVersion && a.cipherSuites == b.cipherSuites && a.path == b.path
            && a.offersH2 == b.offersH2 && a.fileBytes == b.fileBytes
    }
}

/// A port the Gateway's `servers` open besides the main `listener`: plaintext HTTP (possibly
/// only redirecting to https) or HTTPS with one certificate per SNI name.
public struct GatewayListenerConfig: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// `protocol: HTTP`; `httpsRedirect`: every request is answered 301 to its https URL.
        case plaintext(httpsRedirect: Bool)
        /// `protocol: HTTPS`: the servers sharing the port, picked by SNI.
        case tls(SNITable)
    }
    public var address: String
    public var port: Int
    public var kind: Kind
    /// Where the port's first server was declared.
    public var path: String
    /// HTTP/2 beside HTTP/1.1: h2c with prior knowledge on a plaintext port (protocol HTTP2 or
    /// GRPC, or `listener.http2` enabled), ALPN `h2` on an HTTPS one.
    public var http2 = false

    /// The scheme its clients speak.
    public var scheme: String {
        if case .tls = kind { return "https" }
        return "http"
    }
}

/// The HTTPS servers of one port, picked by a client's SNI as Envoy picks a filter chain by
/// `server_names`: an exact name, else the longest `*.suffix` wildcard, else a `*` server. A
/// client whose SNI matches none (or that sends none, without a `*` server) is refused.
public struct SNITable: Sendable, Equatable {
    public let servers: [TLSServerConfig]
    private let exact: [String: Int]
    /// Wildcard suffixes (`.example.com` for `*.example.com`), longest first.
    private let wildcards: [(suffix: String, server: Int)]
    private let any: Int?

    /// `servers` must not share a host (the loader refuses that at its path).
    init(servers: [TLSServerConfig]) {
        self.servers = servers
        var exact: [String: Int] = [:]
        var wildcards: [(String, Int)] = []
        var any: Int? = nil
        for (i, s) in servers.enumerated() {
            for h in s.hosts {
                if h == "*" {
                    precondition(any == nil, "two servers answer every name")
                    any = i
                } else if h.hasPrefix("*.") {
                    wildcards.append((String(h.dropFirst()), i))
                } else {
                    precondition(exact[h] == nil, "two servers answer \(h)")
                    exact[h] = i
                }
            }
        }
        self.exact = exact
        self.wildcards = wildcards.sorted { $0.0.count > $1.0.count }
        self.any = any
    }

    /// The server for a client's SNI name (nil: it sent none).
    public func server(for sni: String?) -> TLSServerConfig? {
        guard let sni else { return any.map { servers[$0] } }
        let name = sni.lowercased()
        if let i = exact[name] { return servers[i] }
        for w in wildcards where name.hasSuffix(w.suffix) && name.count > w.suffix.count { return servers[w.server] }
        return any.map { servers[$0] }
    }

    public static func == (a: SNITable, b: SNITable) -> Bool { a.servers == b.servers }
}

/// DestinationRule `trafficPolicy.tls` with mode SIMPLE or MUTUAL: how the gateway speaks TLS to
/// a cluster's endpoints (DISABLE is no setting at all). Read and built when loaded, as
/// `TLSServerConfig` is.
public struct UpstreamTLSConfig: Sendable, Equatable {
    public enum Mode: String, Sendable, Equatable {
        case simple = "SIMPLE"
        /// The gateway presents `clientCertificate`.
        case mutual = "MUTUAL"
    }
    public var mode: Mode
    /// nil: the system's trust store, as Istio's SIMPLE without caCertificates.
    public var caCertificates: String?
    public var clientCertificate: String?
    public var privateKey: String?
    /// The SNI sent; the ServiceEntry host when the rule names none.
    public var sni: String?
    /// The peer certificate must carry one of these (DNS, URI or IP SANs) instead of `sni`'s name.
    public var subjectAltNames: [String]
    /// No verification of the peer's certificate at all.
    public var insecureSkipVerify: Bool
    /// ALPN `http/1.1`.
    public let context: NIOSSLContext
    /// ALPN `h2`: the same settings for a cluster whose connections speak HTTP/2.
    public let h2Context: NIOSSLContext
    let fileBytes: [UInt8]

    init(mode: Mode, caCertificates: String?, clientCertificate: String?, privateKey: String?, sni: String?,
         subjectAltNames: [String], insecureSkipVerify: Bool, context: NIOSSLContext, h2Context: NIOSSLContext,
         fileBytes: [UInt8]) {
        self.mode = mode
        self.caCertificates = caCertificates
        self.clientCertificate = clientCertificate
        self.privateKey = privateKey
        self.sni = sni
        self.subjectAltNames = subjectAltNames
        self.insecureSkipVerify = insecureSkipVerify
        self.context = context
        self.h2Context = h2Context
        self.fileBytes = fileBytes
    }

    public static func == (a: UpstreamTLSConfig, b: UpstreamTLSConfig) -> Bool {
        a.mode == b.mode && a.caCertificates == b.caCertificates && a.clientCertificate == b.clientCertificate
            && a.privateKey == b.privateKey && a.sni == b.sni && a.subjectAltNames == b.subjectAltNames
            && a.insecureSkipVerify == b.insecureSkipVerify && a.fileBytes == b.fileBytes
    }
}
