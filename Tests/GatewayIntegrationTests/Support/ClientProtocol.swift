import Foundation
import GatewayCore
import XCTest

/// The protocol a test's client speaks to the gateway, so one resilience scenario (breaker,
/// outlier ejection, retries, timeouts, rate limit, faults) is checked over each: a policy must
/// behave per HTTP/2 stream and per TLS connection exactly as per HTTP/1.1 request.
enum ClientProtocol: String, Sendable {
    /// Plaintext HTTP/1.1 from the test's own socket client.
    case http1
    /// HTTP/2 with prior knowledge on the plaintext listener, from curl.
    case h2c
    /// HTTP/1.1 over TLS to a Gateway HTTPS server, from curl.
    case https
    /// HTTP/2 over TLS (ALPN h2) to the same HTTPS server, from curl.
    case h2

    /// `config` made to serve this protocol: HTTP/2 enabled on the listener, or an HTTPS
    /// server (a self-signed certificate for `localhost`) on a port of its own.
    func adapt(_ config: GatewayConfig) throws -> (GatewayConfig, httpsPort: Int?) {
        var config = config
        switch self {
        case .http1:
            return (config, nil)
        case .h2c:
            config.downstream.http2 = HTTP2Options()
            return (config, nil)
        case .https, .h2:
            let port = try refusedPort()
            let tls = try LocalhostCertificate.shared()
            let json = """
                {"gateways": [{"servers": [{"port": {"number": \(port), "name": "https", "protocol": "HTTPS"},
                  "hosts": ["*"],
                  "tls": {"mode": "SIMPLE", "serverCertificate": "\(tls.certificate)", "privateKey": "\(tls.key)"}}]}]}
                """
            config.gatewayListeners = try ConfigLoader.decode(Array(json.utf8)).gatewayListeners
            return (config, port)
        }
    }

    /// One request on a new connection (curl's for HTTP/2 and TLS); nil when none came back.
    func request(port: Int, method: String = "GET", path: String, headers: [String: String] = [:],
                 body: String? = nil) -> RawResponse? {
        var args = ["-s", "-i", "--max-time", "10", "-X", method]
        let url: String
        switch self {
        case .http1:
            return httpRequest(port: port, method: method, path: path, headers: headers, body: body)
        case .h2c:
            args.append("--http2-prior-knowledge")
            url = "http://127.0.0.1:\(port)\(path)"
        case .https, .h2:
            guard let tls = try? LocalhostCertificate.shared() else { return nil }
            args += [self == .h2 ? "--http2" : "--http1.1", "--cacert", tls.certificate,
                     "--resolve", "localhost:\(port):127.0.0.1"]
            url = "https://localhost:\(port)\(path)"
        }
        for (name, value) in headers { args += ["-H", "\(name): \(value)"] }
        if let body { args += ["--data-binary", body] }
        guard let out = try? outputOf(URL(fileURLWithPath: "/usr/bin/curl"), args + [url]),
              let response = Self.parse(String(decoding: out, as: UTF8.self))
        else { return nil }
        // An answer in another version would mean the scenario did not run over this protocol.
        return response.statusLine.hasPrefix(statusLineVersion) ? response : nil
    }

    /// How the status line of an answer in this protocol begins (as curl prints HTTP/2's).
    var statusLineVersion: String { self == .h2c || self == .h2 ? "HTTP/2 " : "HTTP/1.1 " }

    /// curl's `-i` output: the final response's status line, header lines, then the body.
    static func parse(_ text: String) -> RawResponse? {
        var rest = Substring(text)
        while true {
            guard let end = rest.range(of: "\r\n\r\n") else { return nil }
            let lines = rest[..<end.lowerBound].components(separatedBy: "\r\n")
            rest = rest[end.upperBound...]
            let statusParts = lines[0].split(separator: " ")
            guard statusParts.count >= 2, let status = Int(statusParts[1]) else { return nil }
            if (100..<200).contains(status) { continue }  // an interim answer: the final one follows
            let headers = lines.dropFirst().compactMap { line -> (String, String)? in
                guard let colon = line.firstIndex(of: ":") else { return nil }
                return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
            }
            return RawResponse(status: status, headers: headers, body: String(rest), closed: false, statusLine: lines[0])
        }
    }
}

/// A self-signed certificate for `localhost`, made once per test run with the `openssl` CLI.
struct LocalhostCertificate {
    let certificate: String
    let key: String

    private static let made: Result<LocalhostCertificate, Error> = Result {
        for tool in ["/usr/bin/openssl", "/usr/bin/curl"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw XCTSkip("\(tool) is not installed")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("localhost-tls-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let cert = LocalhostCertificate(certificate: "\(dir)/cert.pem", key: "\(dir)/key.pem")
        _ = try outputOf(URL(fileURLWithPath: "/usr/bin/openssl"), [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", cert.key, "-out", cert.certificate, "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost",
        ])
        guard FileManager.default.fileExists(atPath: cert.certificate) else {
            throw XCTSkip("openssl could not make a certificate for localhost")
        }
        return cert
    }

    static func shared() throws -> LocalhostCertificate { try made.get() }
}
