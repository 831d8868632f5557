import Foundation
import NIOCore

/// Why the command line or a URL file was refused: one line for the user.
public struct OptionError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// One request a simulated user sends: siege's URL plus an optional `POST {json}` / `POST < file`.
public struct Target: Equatable, Sendable {
    public var method: String
    public var host: String
    public var port: Int
    public var path: String
    public var body: [UInt8]?

    public init(method: String = "GET", host: String, port: Int, path: String, body: [UInt8]? = nil) {
        self.method = method
        self.host = host
        self.port = port
        self.path = path
        self.body = body
    }

    /// The methods a URL may be followed by (siege's: POST, PUT, PATCH, DELETE, OPTIONS; and
    /// GET and HEAD).
    public static let methods: Set<String> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

    /// `http://host[:port][/path]` (siege also takes a bare `host/path`). What may not stand in a
    /// request line (spaces, control characters, quotes, braces, non-ASCII...) is percent-encoded,
    /// as siege's url-escaping does, so the request line is always well formed; a `#fragment` is
    /// not sent.
    public static func parseURL(_ text: String) throws -> Target {
        var rest = Substring(text.trimmingCharacters(in: .whitespacesAndNewlines))
        if rest.lowercased().hasPrefix("https://") { throw OptionError("https is not supported: \(text)") }
        if rest.lowercased().hasPrefix("http://") { rest = rest.dropFirst(7) }
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let slash = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<slash]
        var path = slash == rest.endIndex ? "/" : String(rest[slash...])
        if path.hasPrefix("?") { path = "/" + path }
        guard !authority.isEmpty, !authority.contains(where: { $0.isWhitespace }) else { throw OptionError("no host in URL '\(text)'") }
        var host = String(authority)
        var port = 80
        if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else {
                throw OptionError("bad port in URL '\(text)'")
            }
            port = p
        }
        guard !host.isEmpty else { throw OptionError("no host in URL '\(text)'") }
        return Target(host: host, port: port, path: escape(path))
    }

    /// Percent-encodes the bytes that RFC 9112 does not allow in a request-target.
    static func escape(_ path: String) -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/?%[]".utf8)
        var out = ""
        for b in path.utf8 {
            if allowed.contains(b) {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out += "%" + String(b, radix: 16, uppercase: true).leftPadded(2)
            }
        }
        return out
    }

    /// A URL as siege takes it, on the command line or as a line of a URL file: `URL`,
    /// `URL POST {json}`, `URL PUT {json}`, `URL PATCH data`, `URL DELETE`, `URL POST < file`
    /// (a file relative to `dir`). Blank lines and `#` comments give nil.
    public static func parseLine(_ line: String, relativeTo dir: String = ".") throws -> Target? {
        let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty || trimmed.hasPrefix("#") { return nil }
        // The first word after the URL that is a method ends the URL (siege looks for " POST",
        // " PUT", ...); words before it belong to the URL and are escaped with it.
        var url = Substring(trimmed)
        var method: String?
        var payload: Substring = ""
        var searchFrom = trimmed.startIndex
        while let space = trimmed[searchFrom...].firstIndex(where: { $0 == " " || $0 == "\t" }) {
            let wordStart = trimmed[space...].firstIndex { $0 != " " && $0 != "\t" } ?? trimmed.endIndex
            let wordEnd = trimmed[wordStart...].firstIndex { $0 == " " || $0 == "\t" } ?? trimmed.endIndex
            let word = trimmed[wordStart..<wordEnd]
            if methods.contains(word.uppercased()) {
                url = trimmed[..<space]
                method = word.uppercased()
                payload = trimmed[wordEnd...].drop { $0 == " " || $0 == "\t" }
                break
            }
            if searchFrom == trimmed.startIndex, word.count >= 3, word.allSatisfy({ $0.isASCII && $0.isUppercase }) {
                throw OptionError("unknown method '\(word)' in '\(trimmed)': use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS")
            }
            if wordEnd == trimmed.endIndex { break }
            searchFrom = wordEnd
        }
        var t = try parseURL(String(url))
        guard let method else { return t }
        t.method = method
        if payload.hasPrefix("<") {
            let file = payload.dropFirst().trimmingCharacters(in: .whitespaces)
            guard !file.isEmpty else { throw OptionError("no file after '<' in '\(trimmed)'") }
            let path = file.hasPrefix("/") ? file : dir + "/" + file
            guard let data = FileManager.default.contents(atPath: path) else { throw OptionError("cannot read body file '\(path)'") }
            t.body = Array(data)
        } else if !payload.isEmpty || ["POST", "PUT", "PATCH"].contains(method) {
            t.body = Array(payload.utf8)
        }
        return t
    }

    public static func parseFile(_ path: String) throws -> [Target] {
        guard let data = FileManager.default.contents(atPath: path) else { throw OptionError("cannot read URL file '\(path)'") }
        let dir = (path as NSString).deletingLastPathComponent
        let targets = try String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline)
            .compactMap { try parseLine(String($0), relativeTo: dir.isEmpty ? "." : dir) }
        guard !targets.isEmpty else { throw OptionError("URL file '\(path)' has no URLs") }
        return targets
    }
}

extension String {
    func leftPadded(_ width: Int, _ pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}

public enum ConnectionMode: String, Sendable { case keepAlive = "keep-alive", close }

/// What a run does, in siege's terms.
public struct LoadOptions: Sendable {
    public var concurrency = 25
    /// `-t`: run this long (nil: until repetitions are done or interrupted).
    public var duration: TimeAmount?
    /// `-r`: requests per user.
    public var repetitions: Int?
    /// `-d`: random delay in [0, delay] between a user's requests (0 with `-b`).
    public var delay: Double = 0
    public var headers: [(String, String)] = []
    public var contentType = "application/json"
    public var connection = ConnectionMode.keepAlive
    public var timeout: TimeAmount = .seconds(30)
    /// `--rate`: total requests per second across users, latency counted from the intended send time.
    public var rate: Double?
    public var targets: [Target] = []
    /// `-A`: the User-Agent header.
    public var userAgent = "loadtest"
    /// `-i`: each user picks its next URL at random (siege's internet mode) instead of in order.
    public var internet = false
    /// `failures` (.siegerc): stop the run once this many transactions failed (nil: never).
    public var failureLimit: Int?
    /// `-r once`: each user goes through the URLs once, from the first.
    public var onceEach = false
    /// At the `-t` deadline, wait for the requests in flight and count them, with the elapsed time
    /// running to the last answer (siege drops them and stops its clock at the deadline):
    /// `--sweep` uses it so that a step leaves the server's connection pools as its load had
    /// them, not torn down by the client, and every request the server counted during the step
    /// (its overflow counter, say) is one the step counted too.
    public var finishInFlight = false

    public init() {}

    /// Event loops when `--threads` is not given. Keep-alive: half the cores, at least one: a
    /// request on an open connection costs the client little next to the server that shares the
    /// machine, and on 2 cores one loop out-runs two (loadtest/bench-loadtest.sh). Connection
    /// close: one per core: connecting and closing are kernel work done on the client's thread,
    /// which a second loop spreads over the second core.
    public static func defaultEventLoops(_ connection: ConnectionMode, cores: Int) -> Int {
        switch connection {
        case .keepAlive: return max(1, cores / 2)
        case .close: return max(1, cores)
        }
    }

    /// siege's `-t` units: `10S`, `2M`, `1H` (a bare number is seconds).
    public static func parseDuration(_ s: String) throws -> TimeAmount {
        let upper = s.uppercased()
        var number = Substring(upper)
        var scale: Double = 1
        if let last = upper.last, last.isLetter {
            number = number.dropLast()
            switch last {
            case "S": scale = 1
            case "M": scale = 60
            case "H": scale = 3600
            default: throw OptionError("bad duration '\(s)': use N, NS, NM or NH")
            }
        }
        guard let n = Double(number), n > 0 else { throw OptionError("bad duration '\(s)': use N, NS, NM or NH") }
        return .nanoseconds(Int64(n * scale * 1e9))
    }

    public static func parseHeader(_ s: String) throws -> (String, String) {
        guard let colon = s.firstIndex(of: ":"), colon != s.startIndex else { throw OptionError("bad header '\(s)': use \"Name: value\"") }
        return (String(s[..<colon]).trimmingCharacters(in: .whitespaces),
                String(s[s.index(after: colon)...]).trimmingCharacters(in: .whitespaces))
    }

    /// The bytes of each target's request, encoded once.
    func encodedRequests() -> [ByteBuffer] {
        targets.map { t in
            var s = "\(t.method) \(t.path) HTTP/1.1\r\nHost: \(t.host)\(t.port == 80 ? "" : ":\(t.port)")\r\n"
            s += "User-Agent: \(userAgent)\r\nAccept: */*\r\n"
            if connection == .close { s += "Connection: close\r\n" }
            for (k, v) in headers { s += "\(k): \(v)\r\n" }
            if let body = t.body {
                if !headers.contains(where: { $0.0.lowercased() == "content-type" }) { s += "Content-Type: \(contentType)\r\n" }
                s += "Content-Length: \(body.count)\r\n"
            }
            s += "\r\n"
            var b = ByteBuffer(string: s)
            if let body = t.body { b.writeBytes(body) }
            return b
        }
    }
}
