#if canImport(Glibc)
import Glibc
#endif
import HTTP1Wire
import NIOCore

/// Lower-case header names, compared with raw head bytes without making Strings.
struct HeaderNameSet: Sendable {
    let names: [[UInt8]]

    init(_ names: [String]) { self.names = names.map { Array($0.lowercased().utf8) } }

    var isEmpty: Bool { names.isEmpty }

    @inline(__always)
    func contains(_ b: UnsafeRawBufferPointer, _ name: Range<Int>) -> Bool {
        for n in names where n.count == name.count {
            var same = true
            var j = 0
            for p in name {
                if lowercased(b[p]) != n[j] {
                    same = false
                    break
                }
                j += 1
            }
            if same { return true }
        }
        return false
    }

    func contains(_ name: String) -> Bool { names.contains(Array(name.lowercased().utf8)) }
}

/// Header operations folded into what one pass over a head needs: the names whose lines are
/// left out, and the lines written after the rest. Built at config time.
struct HeaderEdit: Sendable {
    let drop: HeaderNameSet
    let pairs: [(name: String, value: String)]
    let lines: [UInt8]

    /// Applies `levels` in order, each as Envoy's HeaderParser does: `remove`, then `set`
    /// (replacing every line of that name, from the message or from an earlier level), then
    /// `add`. Envoy evaluates the weighted cluster's operations before the route's, so the
    /// route's `set` wins. nil when nothing changes.
    init?(_ levels: [HeaderOperations]) {
        var drop: [String] = []
        var pairs: [(name: String, value: String)] = []
        for ops in levels {
            for name in ops.remove {
                if !drop.contains(name) { drop.append(name) }
                pairs.removeAll { $0.name == name }
            }
            for (name, value) in ops.set {
                if !drop.contains(name) { drop.append(name) }
                pairs.removeAll { $0.name == name }
                pairs.append((name, value))
            }
            pairs += ops.add
        }
        guard !drop.isEmpty || !pairs.isEmpty else { return nil }
        self.init(drop: drop, pairs: pairs)
    }

    init(drop: [String], pairs: [(name: String, value: String)]) {
        self.drop = HeaderNameSet(drop)
        self.pairs = pairs
        var lines: [UInt8] = []
        for (name, value) in pairs { lines += Array("\(name): \(value)\r\n".utf8) }
        self.lines = lines
    }
}

/// What one response's head gets beyond the upstream's lines: the route's `headers.response`
/// and, for a CORS request whose origin is allowed, the CORS filter's lines (which Envoy
/// writes last, so they replace any of the same name).
struct ResponseHeadEdit {
    let drops: [HeaderNameSet]
    let lines: [UInt8]
    let pairs: [(name: String, value: String)]

    @inline(__always)
    func drops(_ b: UnsafeRawBufferPointer, _ name: Range<Int>) -> Bool {
        for d in drops where d.contains(b, name) { return true }
        return false
    }

    func drops(_ name: String) -> Bool { drops.contains { $0.contains(name) } }
}

/// Envoy's `regex_rewrite`: every match in the path replaced by the substitution, whose `\N`
/// names a capture group (RE2's syntax, which Istio's `uriRegexRewrite.rewrite` uses).
struct RegexRewrite: @unchecked Sendable {
    // @unchecked: Regex is immutable once compiled and safe to share between threads.
    enum Piece { case literal(String), group(Int) }
    let regex: Regex<AnyRegexOutput>
    let pieces: [Piece]

    init(match: String, rewrite: String) throws {
        regex = try Regex(match)
        var pieces: [Piece] = []
        var literal = ""
        var chars = rewrite.makeIterator()
        while let c = chars.next() {
            guard c == "\\" else {
                literal.append(c)
                continue
            }
            guard let n = chars.next() else {
                literal.append(c)
                break
            }
            if let d = n.wholeNumberValue, n.isASCII {
                if !literal.isEmpty { pieces.append(.literal(literal)) }
                literal = ""
                pieces.append(.group(d))
            } else {
                literal.append(n)
            }
        }
        if !literal.isEmpty { pieces.append(.literal(literal)) }
        self.pieces = pieces
    }

    func apply(_ path: String) -> String {
        path.replacing(regex) { match in
            var out = ""
            for piece in pieces {
                switch piece {
                case .literal(let s): out += s
                case .group(let n):
                    if n < match.output.count, let sub = match.output[n].substring { out += sub }
                }
            }
            return out
        }
    }
}

/// Envoy's RedirectAction: where the Location points, and with which code.
struct CompiledRedirect: Sendable {
    let config: RedirectConfig
    let pathHasQuery: Bool

    init(_ c: RedirectConfig) {
        config = c
        pathHasQuery = c.uri?.contains("?") ?? false
    }

    /// Envoy's `newUri`: scheme, host (the request's, its port dropped when a port is given or the
    /// scheme moves away from the one whose default it is), port, then the path (the request's
    /// query kept unless the redirect's uri has its own). nil: no Host to redirect to.
    /// `secure`: the request came over TLS, so its scheme is https.
    func location(_ head: MessageHead, _ b: UnsafeRawBufferPointer, localPort: Int, secure: Bool = false) -> String? {
        let requestScheme = secure ? "https" : "http"
        let scheme = config.scheme ?? requestScheme
        let port: String
        switch config.port {
        case .fromProtocolDefault: port = ""
        case .fromRequestPort: port = ":\(localPort)"
        case .number(let n): port = ":\(n)"
        }
        let host: String
        if let authority = config.authority {
            host = authority
        } else {
            guard let h = head.host else { return nil }
            var bytes = Array(UnsafeRawBufferPointer(rebasing: b[h]))
            var portStart: Int? = nil
            if bytes.first == UInt8(ascii: "[") {
                if let close = bytes.lastIndex(of: UInt8(ascii: "]")), close + 1 < bytes.count,
                   bytes[close + 1] == UInt8(ascii: ":") { portStart = close + 1 }
            } else {
                portStart = bytes.lastIndex(of: UInt8(ascii: ":"))
            }
            if let p = portStart {
                let requestPort = bytes[p...]
                let defaultPort = secure ? ":443" : ":80"
                if !port.isEmpty || (scheme != requestScheme && requestPort.elementsEqual(defaultPort.utf8)) { bytes.removeSubrange(p...) }
            }
            host = String(decoding: bytes, as: UTF8.self)
        }
        let target = String(decoding: UnsafeRawBufferPointer(rebasing: b[head.target]), as: UTF8.self)
        var path: String
        if let uri = config.uri {
            path = uri
            if !pathHasQuery, let q = target.firstIndex(of: "?") { path += target[q...] }
        } else {
            path = target
        }
        if !path.hasPrefix("/") { path = "/" + path }
        return "\(scheme)://\(host)\(port)\(path)"
    }
}

/// Envoy's CORS filter with one route's policy.
struct CompiledCORS: Sendable {
    let origins: [BytesMatcher]
    /// A matcher that accepts "*" accepts every origin (Envoy's isOriginAllowed).
    let anyOrigin: Bool
    let allowMethods: String
    let allowHeaders: String
    let exposeHeaders: String
    let maxAge: String?
    let allowCredentials: Bool
    let forwardNotMatchingPreflights: Bool
    /// The names an actual response's CORS lines replace.
    let actualNames: HeaderNameSet

    init(_ c: CORSPolicyConfig) throws {
        origins = try c.allowOrigins.map { try BytesMatcher($0) }
        anyOrigin = origins.contains { $0.matches("*") }
        // Istio joins the lists with "," as Envoy's fields take them.
        allowMethods = c.allowMethods.joined(separator: ",")
        allowHeaders = c.allowHeaders.joined(separator: ",")
        exposeHeaders = c.exposeHeaders.joined(separator: ",")
        maxAge = c.maxAgeSeconds.map(String.init)
        allowCredentials = c.allowCredentials
        forwardNotMatchingPreflights = c.forwardNotMatchingPreflights
        var names = ["access-control-allow-origin"]
        if allowCredentials { names.append("access-control-allow-credentials") }
        if !exposeHeaders.isEmpty { names.append("access-control-expose-headers") }
        actualNames = HeaderNameSet(names)
    }

    func allows(_ origin: String) -> Bool { anyOrigin || origins.contains { $0.matches(origin) } }

    /// The gateway's answer to a preflight (Envoy's decodeHeaders): the origin only when it is allowed.
    func preflightHeaders(origin: String?, requestMethod: String, requestHeaders: String?) -> [(String, String)] {
        var h: [(String, String)] = []
        if let origin { h.append(("access-control-allow-origin", origin)) }
        if allowCredentials { h.append(("access-control-allow-credentials", "true")) }
        if !allowMethods.isEmpty { h.append(("access-control-allow-methods", allowMethods == "*" ? requestMethod : allowMethods)) }
        if !allowHeaders.isEmpty {
            h.append(("access-control-allow-headers", allowHeaders == "*" ? requestHeaders ?? "" : allowHeaders))
        }
        if let maxAge { h.append(("access-control-max-age", maxAge)) }
        return h
    }

    /// The lines an actual response to an allowed origin gets (Envoy's encodeHeaders).
    func actualHeaders(origin: String) -> [(name: String, value: String)] {
        var h: [(name: String, value: String)] = [("access-control-allow-origin", origin)]
        if allowCredentials { h.append(("access-control-allow-credentials", "true")) }
        if !exposeHeaders.isEmpty { h.append(("access-control-expose-headers", exposeHeaders)) }
        return h
    }
}

/// A route's transforms ready to serve. Only routes that have some carry one (`Route.transforms`
/// is nil otherwise), so a plain route pays one nil check.
final class CompiledTransforms: Sendable {
    /// Per destination (the route's `destinations` order): its `headers.request` then the route's.
    let requestEdits: [HeaderEdit?]
    /// Per destination: its `headers.response` then the route's.
    let responseEdits: [HeaderEdit?]
    /// The route's own `headers.response`: answers the gateway makes before a destination is chosen.
    let routeResponseEdit: HeaderEdit?
    /// Envoy's prefix_rewrite value.
    let prefixRewrite: [UInt8]?
    let regexRewrite: RegexRewrite?
    /// host_rewrite_literal per destination: the destination's (`route[].headers` setting
    /// `host`), else the route's `rewrite.authority`.
    let authorities: [[UInt8]?]
    /// The request head sent upstream differs from the client's beyond the usual proxy lines.
    let rewritesRequest: Bool
    let redirect: CompiledRedirect?
    let directResponse: DirectResponseConfig?
    let cors: CompiledCORS?
    /// Some `match` entry has a `name`, which the access log shows.
    let namedMatches: Bool

    init?(_ config: RouteConfig, destinations: [HeadersConfig]) throws {
        let t = config.transforms
        namedMatches = config.matches.contains { $0.name != nil }
        guard !t.isEmpty || destinations.contains(where: { !$0.isEmpty }) || namedMatches else { return nil }
        requestEdits = destinations.map { HeaderEdit([$0.request, t.headers.request]) }
        responseEdits = destinations.map { HeaderEdit([$0.response, t.headers.response]) }
        routeResponseEdit = HeaderEdit([t.headers.response])
        prefixRewrite = t.rewrite?.uri.map { Array($0.utf8) }
        regexRewrite = try t.rewrite?.uriRegex.map { try RegexRewrite(match: $0.match, rewrite: $0.rewrite) }
        authorities = destinations.map { ($0.authority ?? t.rewrite?.authority).map { Array($0.utf8) } }
        rewritesRequest = prefixRewrite != nil || regexRewrite != nil || authorities.contains { $0 != nil }
            || requestEdits.contains { $0 != nil }
        redirect = t.redirect.map(CompiledRedirect.init)
        directResponse = t.directResponse
        cors = try t.cors.map(CompiledCORS.init)
    }

    /// What a response to this request gets beyond the upstream's (or the gateway's) lines.
    /// `destination`: nil for an answer made before one was chosen.
    func responseEdit(destination: Int?, corsOrigin: String?) -> ResponseHeadEdit? {
        let edit = destination.map { responseEdits[$0] } ?? routeResponseEdit
        guard let cors, let corsOrigin else {
            return edit.map { ResponseHeadEdit(drops: [$0.drop], lines: $0.lines, pairs: $0.pairs) }
        }
        let corsPairs = cors.actualHeaders(origin: corsOrigin)
        // The route's lines of the names CORS writes give way to the CORS filter's.
        let routePairs = (edit?.pairs ?? []).filter { !cors.actualNames.contains($0.name) }
        let pairs = routePairs + corsPairs
        var lines: [UInt8] = []
        for (name, value) in pairs { lines += Array("\(name): \(value)\r\n".utf8) }
        return ResponseHeadEdit(drops: [edit?.drop, cors.actualNames].compactMap { $0 }, lines: lines, pairs: pairs)
    }

    /// The request target sent upstream, or nil to send the client's. `matchedLength`: how much
    /// of the target the route's match took (see `Route.matchedPathLength`).
    func rewrittenTarget(_ head: MessageHead, _ b: UnsafeRawBufferPointer, matchedLength: () -> Int) -> [UInt8]? {
        let target = head.target
        guard b[target.lowerBound] == UInt8(ascii: "/") else { return nil }  // OPTIONS *
        if let prefixRewrite {
            let n = min(matchedLength(), target.count)
            return prefixRewrite + Array(UnsafeRawBufferPointer(rebasing: b[(target.lowerBound + n)..<target.upperBound]))
        }
        if let regexRewrite {
            var pathEnd = target.lowerBound
            while pathEnd < target.upperBound && b[pathEnd] != UInt8(ascii: "?") { pathEnd += 1 }
            let path = String(decoding: UnsafeRawBufferPointer(rebasing: b[target.lowerBound..<pathEnd]), as: UTF8.self)
            var out = Array(regexRewrite.apply(path).utf8)
            out += UnsafeRawBufferPointer(rebasing: b[pathEnd..<target.upperBound])
            // The substitution was checked at load and the path's bytes are the client's visible
            // ASCII: the result cannot split the request line.
            assert(out.allSatisfy { $0 > 0x20 && $0 < 0x7F } || out.isEmpty, "a rewritten target with a space or control")
            return out.isEmpty ? Array("/".utf8) : out
        }
        return nil
    }
}

extension MessageHead {
    /// The first `name=value` of the query with that (percent-decoded) name, decoded; "" for a
    /// name without `=`. Only routes that match on query parameters ask.
    func queryParameter(_ name: String, in b: UnsafeRawBufferPointer) -> String? {
        var i = target.lowerBound
        while i < target.upperBound && b[i] != UInt8(ascii: "?") { i += 1 }
        guard i < target.upperBound else { return nil }
        i += 1
        while i < target.upperBound {
            let start = i
            while i < target.upperBound && b[i] != UInt8(ascii: "&") { i += 1 }
            let pair = start..<i
            i += 1
            guard !pair.isEmpty else { continue }
            var eq = pair.lowerBound
            while eq < pair.upperBound && b[eq] != UInt8(ascii: "=") { eq += 1 }
            guard percentDecoded(b, pair.lowerBound..<eq) == name else { continue }
            return eq < pair.upperBound ? percentDecoded(b, (eq + 1)..<pair.upperBound) : ""
        }
        return nil
    }
}

/// `%XX` decoded (a malformed escape is kept as it is), as Envoy decodes query parameters.
func percentDecoded(_ b: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(range.count)
    var i = range.lowerBound
    func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }
    while i < range.upperBound {
        if b[i] == UInt8(ascii: "%"), i + 2 < range.upperBound, let h = hex(b[i + 1]), let l = hex(b[i + 2]) {
            out.append(h << 4 | l)
            i += 3
        } else {
            out.append(b[i])
            i += 1
        }
    }
    return String(decoding: out, as: UTF8.self)
}
