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

    /// `http://host[:port][/path]` (siege also takes a bare `host/path`).
    public static func parseURL(_ text: String) throws -> Target {
        var rest = Substring(text)
        if rest.hasPrefix("https://") { throw OptionError("https is not supported: \(text)") }
        if rest.hasPrefix("http://") { rest = rest.dropFirst(7) }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        let path = slash == rest.endIndex ? "/" : String(rest[slash...])
        guard !authority.isEmpty else { throw OptionError("no host in URL '\(text)'") }
        var host = String(authority)
        var port = 80
        if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else {
                throw OptionError("bad port in URL '\(text)'")
            }
            port = p
        }
        return Target(host: host, port: port, path: path)
    }

    /// A URL-file line: `URL`, `URL POST {json}`, `URL POST < file` (comments with #).
    public static func parseLine(_ line: String, relativeTo dir: String = ".") throws -> Target? {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty || trimmed.hasPrefix("#") { return nil }
        let parts = trimmed.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        var t = try parseURL(String(parts[0]))
        guard parts.count > 1 else { return t }
        let method = parts[1].uppercased()
        guard ["POST", "PUT", "PATCH", "DELETE", "GET"].contains(method) else {
            throw OptionError("unknown method '\(parts[1])' in '\(line)'")
        }
        t.method = method
        if parts.count > 2 {
            let arg = parts[2].trimmingCharacters(in: .whitespaces)
            if arg.hasPrefix("<") {
                let file = arg.dropFirst().trimmingCharacters(in: .whitespaces)
                let path = file.hasPrefix("/") ? file : dir + "/" + file
                guard let data = FileManager.default.contents(atPath: path) else { throw OptionError("cannot read body file '\(path)'") }
                t.body = Array(data)
            } else {
                t.body = Array(arg.utf8)
            }
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
    /// `-R`: total requests per second across users, latency counted from the intended send time.
    public var rate: Double?
    public var targets: [Target] = []

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
            s += "User-Agent: loadtest\r\nAccept: */*\r\n"
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
