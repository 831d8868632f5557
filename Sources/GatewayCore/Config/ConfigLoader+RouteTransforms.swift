import Foundation
import HTTP1Wire

/// The VirtualService route fields beyond destinations and resilience: the match conditions
/// past uri/method/headers, and `headers`, `rewrite`, `redirect`, `directResponse`, `corsPolicy`.
/// Every value that ends up in a head the gateway writes is checked here for bytes that could
/// break that head (CR, LF, controls, spaces in a request target), so the data plane can copy
/// them without looking.
extension ConfigLoader {
    // MARK: match

    /// The `HTTPMatchRequest` fields beyond uri, method and headers.
    static func routeMatchExtras(_ o: JSONObject, _ m: inout RouteMatch) throws {
        if let n = o["sourceLabels"] {
            throw n.fail("not supported by this gateway: it runs as an edge gateway, not beside workloads, so a request has no source workload labels to match")
        }
        if let n = o["sourceNamespace"] {
            throw n.fail("not supported by this gateway: it runs as an edge gateway, not beside workloads, so a request has no source namespace to match")
        }
        if let n = o["gateways"] {
            throw n.fail("not supported by this gateway: there is one gateway, so a match cannot select among gateways")
        }
        if let n = o["statPrefix"] {
            throw n.fail("not supported by this gateway: route statistics are named after the route's name (route.<name>.*), not per match")
        }
        if let n = o["name"] { m.name = try n.string() }
        if let n = o["queryParams"] {
            guard let dict = n.value as? [String: Any] else { throw n.fail("expected an object of query parameter name → match") }
            for key in dict.keys.sorted() {
                guard !key.isEmpty else { throw n.fail("a query parameter name must not be empty") }
                m.queryParams[key] = try stringMatch(JSONNode(value: dict[key]!, path: n.child(key)))
            }
        }
        if let n = o["withoutHeaders"] {
            guard let dict = n.value as? [String: Any] else { throw n.fail("expected an object of header name → match") }
            for key in dict.keys.sorted() {
                m.withoutHeaders[key.lowercased()] = try stringMatch(JSONNode(value: dict[key]!, path: n.child(key)))
            }
        }
        if let n = o["authority"] { m.authority = try stringMatch(n) }
        if let n = o["scheme"] { m.scheme = try stringMatch(n) }
        if let n = o["port"] { m.port = try n.int(in: 1...65535) }
        if let n = o["ignoreUriCase"] {
            m.ignoreUriCase = try n.bool()
            if m.ignoreUriCase, case .regex = m.uri {
                throw n.fail("not supported with a uri regex: Envoy's case_sensitive does not apply to regex matches; write (?i) in the regex instead")
            }
        }
    }

    // MARK: route transforms

    /// `headers`, `rewrite`, `redirect`, `directResponse`, `corsPolicy` of one `http[]` entry,
    /// and the checks between them and the route's other fields.
    static func routeTransforms(_ o: JSONObject) throws -> RouteTransformsConfig {
        var t = RouteTransformsConfig()
        if let n = o["headers"] { t.headers = try headersConfig(n) }
        if let n = o["rewrite"] { t.rewrite = try rewrite(n) }
        if let n = o["redirect"] { t.redirect = try redirect(n) }
        if let n = o["directResponse"] { t.directResponse = try directResponse(n) }
        if let n = o["corsPolicy"] { t.cors = try corsPolicy(n) }
        if let a = t.headers.authority {
            if t.rewrite?.authority != nil {
                throw ConfigError(path: o.node().child("headers.request.set"),
                                  reason: "sets the Host while rewrite.authority also does: keep one")
            }
            var r = t.rewrite ?? RewriteConfig()
            r.authority = a
            t.headers.authority = nil
            t.rewrite = r
        }
        guard t.redirect != nil || t.directResponse != nil else { return t }
        // A route the gateway answers itself has no upstream: fields about one would be ignored.
        let what = t.redirect != nil ? "redirect" : "directResponse"
        if t.redirect != nil, let n = o["directResponse"] { throw n.fail("a route has either redirect or directResponse, not both") }
        for key in ["route", "rewrite", "timeout", "retries", "mirror", "mirrors", "mirrorPercentage", "fault"] {
            if let n = o[key] {
                throw n.fail("not allowed with \(what): the gateway answers this route itself, with no upstream\(key == "fault" ? " (fault injection on such a route is not supported by this gateway)" : "")")
            }
        }
        if !t.headers.request.isEmpty {
            throw ConfigError(path: o.node().child("headers.request"),
                              reason: "not allowed with \(what): no request is sent upstream on this route")
        }
        return t
    }

    static func headersConfig(_ node: JSONNode) throws -> HeadersConfig {
        let o = try node.object(allowed: ["request", "response"])
        var h = HeadersConfig()
        if let n = o["request"] {
            h.request = try headerOperations(n, request: true)
            // `host` in set is Istio's way to write the authority.
            let hosts = h.request.set.filter { $0.name == "host" || $0.name == ":authority" }
            if hosts.count > 1 { throw ConfigError(path: n.child("set"), reason: "sets the Host twice (host and :authority): keep one") }
            if let a = hosts.first?.value {
                try checkAuthority(a, at: JSONNode(value: a, path: n.child("set")))
                h.authority = a
                h.request.set.removeAll { $0.name == "host" || $0.name == ":authority" }
            }
        }
        if let n = o["response"] { h.response = try headerOperations(n, request: false) }
        return h
    }

    /// Headers the gateway frames a message with or writes itself: changing them would break the
    /// framing or forge the gateway's own lines (Envoy refuses `:`-names and `host` here too).
    static func reservedHeader(_ name: String, request: Bool) -> String? {
        switch name {
        case "connection", "keep-alive", "te", "trailer", "upgrade", "proxy-connection", "transfer-encoding", "content-length":
            return "a framing or hop-by-hop header, which the gateway writes itself"
        case "x-forwarded-for", "x-forwarded-proto", "x-request-id", "traceparent", "tracestate":
            return request ? "the gateway writes this header itself" : nil
        case "x-envoy-upstream-service-time":
            return request ? nil : "the gateway writes this header itself"
        case "host":
            return request ? nil : "not a response header"
        default:
            return name.hasPrefix(":") ? "pseudo-headers cannot be changed (only :authority, in request set)" : nil
        }
    }

    static func headerOperations(_ node: JSONNode, request: Bool) throws -> HeaderOperations {
        let o = try node.object(allowed: ["set", "add", "remove"])
        var ops = HeaderOperations()
        func pairs(_ key: String) throws -> [(name: String, value: String)] {
            guard let n = o[key] else { return [] }
            guard let dict = n.value as? [String: Any] else { throw n.fail("expected an object of header name → value") }
            return try dict.keys.sorted().map { raw -> (name: String, value: String) in
                let at = JSONNode(value: dict[raw]!, path: n.child(raw))
                let name = try headerName(raw, at: at)
                let value = try at.string()
                try checkHeaderValue(value, at: at)
                let isAuthority = request && key == "set" && (name == "host" || name == ":authority")
                if !isAuthority, let why = reservedHeader(name, request: request) {
                    throw at.fail("header '\(name)' cannot be \(key == "set" ? "set" : "added"): \(why)")
                }
                return (name, value)
            }
        }
        ops.set = try pairs("set")
        ops.add = try pairs("add")
        if let n = o["remove"] {
            ops.remove = try n.array().map { item -> String in
                let name = try headerName(try item.string(), at: item)
                if let why = reservedHeader(name, request: request) ?? (name == "host" ? "the Host is rewritten with rewrite.authority" : nil) {
                    throw item.fail("header '\(name)' cannot be removed: \(why)")
                }
                return name
            }
        }
        return ops
    }

    /// A header name: an RFC 9110 token (or Istio's `:authority`), lower-cased.
    static func headerName(_ raw: String, at node: JSONNode) throws -> String {
        let bytes = Array(raw.utf8)
        let body = raw.hasPrefix(":") ? bytes.dropFirst() : bytes[...]
        guard !body.isEmpty, body.allSatisfy(isTokenChar) else { throw node.fail("'\(raw)' is not a valid header name") }
        return raw.lowercased()
    }

    /// A header value: no CR, LF or other controls (they would end or split the line).
    static func checkHeaderValue(_ value: String, at node: JSONNode) throws {
        for b in value.utf8 where (b < 0x20 && b != 0x09) || b == 0x7F {
            throw node.fail("header values cannot hold control characters (CR, LF, ...)")
        }
    }

    /// Visible ASCII without spaces: what may stand in a request target or a Location.
    static func checkURIText(_ value: String, at node: JSONNode) throws {
        for b in value.utf8 where b <= 0x20 || b >= 0x7F {
            throw node.fail("must be visible ASCII without spaces (percent-encode other bytes), found '\(value)'")
        }
    }

    /// uri-host [":" port], the characters HeadParser accepts in a Host.
    static func checkAuthority(_ value: String, at node: JSONNode) throws {
        let ok = !value.isEmpty && value.utf8.allSatisfy { b in
            switch b {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
            default: return "-._~!$&'()*+,;=:%[]".utf8.contains(b)
            }
        }
        guard ok else { throw node.fail("'\(value)' is not a valid authority (host[:port])") }
    }

    static func rewrite(_ node: JSONNode) throws -> RewriteConfig {
        let o = try node.object(allowed: ["uri", "authority", "uriRegexRewrite"])
        var r = RewriteConfig()
        if let n = o["uri"] {
            let v = try n.nonEmptyString()
            try checkURIText(v, at: n)
            r.uri = v
        }
        if let n = o["authority"] {
            let v = try n.string()
            try checkAuthority(v, at: n)
            r.authority = v
        }
        if let n = o["uriRegexRewrite"] {
            if o["uri"] != nil { throw n.fail("rewrite has either uri or uriRegexRewrite, not both") }
            let x = try n.object(allowed: ["match", "rewrite"])
            let m = try x.required("match")
            let pattern = try m.nonEmptyString()
            do { _ = try Regex(pattern) } catch { throw m.fail("invalid regex '\(pattern)': \(error)") }
            let w = try x.required("rewrite")
            let substitution = try w.string()
            try checkURIText(substitution, at: w)
            r.uriRegex = (pattern, substitution)
        }
        return r
    }

    static func redirect(_ node: JSONNode) throws -> RedirectConfig {
        let o = try node.object(allowed: ["uri", "authority", "port", "derivePort", "scheme", "redirectCode"])
        var r = RedirectConfig()
        if let n = o["uri"] {
            let v = try n.string()
            try checkURIText(v, at: n)
            if !v.isEmpty { r.uri = v }
        }
        if let n = o["authority"] {
            let v = try n.string()
            try checkAuthority(v, at: n)
            r.authority = v
        }
        if let n = o["port"] { r.port = .number(try n.int(in: 1...65535)) }
        if let n = o["derivePort"] {
            if o["port"] != nil { throw n.fail("redirect has either port or derivePort, not both") }
            switch try n.string() {
            case "FROM_PROTOCOL_DEFAULT": r.port = .fromProtocolDefault
            case "FROM_REQUEST_PORT": r.port = .fromRequestPort
            case let v: throw n.fail("unknown derivePort '\(v)' (allowed: FROM_PROTOCOL_DEFAULT, FROM_REQUEST_PORT)")
            }
        }
        if let n = o["scheme"] {
            let v = try n.nonEmptyString()
            let bytes = Array(v.utf8)
            let isLetter: (UInt8) -> Bool = { (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }
            guard isLetter(bytes[0]), bytes.allSatisfy({ isLetter($0) || (0x30...0x39).contains($0) || "+-.".utf8.contains($0) })
            else { throw n.fail("'\(v)' is not a URI scheme") }
            r.scheme = v
        }
        if let n = o["redirectCode"] {
            let code = try n.int(in: 0...999)
            guard [301, 302, 303, 307, 308].contains(code) else {
                throw n.fail("must be 301, 302, 303, 307 or 308 (the redirect codes Envoy sends), found \(code)")
            }
            r.redirectCode = code
        }
        return r
    }

    /// Envoy's own limit is 4 KiB unless raised; a gateway answer of a megabyte is plenty.
    static let maxDirectResponseBody = 1 << 20

    static func directResponse(_ node: JSONNode) throws -> DirectResponseConfig {
        let o = try node.object(allowed: ["status", "body"])
        var d = DirectResponseConfig(status: try o.required("status").int(in: 200...599))
        if let b = o["body"] {
            let bo = try b.object(allowed: ["string", "bytes"])
            guard bo.dict.count == 1 else { throw b.fail("needs exactly one of string, bytes") }
            if let s = bo["string"] {
                d.body = Array(try s.string().utf8)
            } else if let s = bo["bytes"] {
                guard let data = Data(base64Encoded: try s.string()) else { throw s.fail("expected base64 (as protobuf JSON writes bytes)") }
                d.body = Array(data)
            }
            if let body = d.body, body.count > maxDirectResponseBody {
                throw b.fail("at most \(maxDirectResponseBody) bytes, found \(body.count)")
            }
        }
        return d
    }

    static func corsPolicy(_ node: JSONNode) throws -> CORSPolicyConfig {
        let o = try node.object(allowed: [
            "allowOrigins", "allowOrigin", "allowMethods", "allowHeaders", "exposeHeaders", "maxAge", "allowCredentials",
            "unmatchedPreflights",
        ])
        var c = CORSPolicyConfig()
        if let n = o["allowOrigins"] { c.allowOrigins = try n.array().map(stringMatch) }
        // Istio's deprecated form: exact origins.
        if let n = o["allowOrigin"] { c.allowOrigins += try n.array().map { StringMatch.exact(try $0.string()) } }
        func list(_ key: String) throws -> [String] {
            try o[key]?.array().map { item -> String in
                let v = try item.nonEmptyString()
                try checkHeaderValue(v, at: item)
                if v.contains(",") { throw item.fail("one entry per item: Envoy joins them with ','") }
                return v
            } ?? []
        }
        c.allowMethods = try list("allowMethods")
        c.allowHeaders = try list("allowHeaders")
        c.exposeHeaders = try list("exposeHeaders")
        if let n = o["maxAge"] { c.maxAgeSeconds = Int(try n.duration(allowZero: true).nanoseconds / 1_000_000_000) }
        if let n = o["allowCredentials"] { c.allowCredentials = try n.bool() }
        if let n = o["unmatchedPreflights"] {
            switch try n.string() {
            case "UNSPECIFIED", "FORWARD": c.forwardNotMatchingPreflights = true
            case "IGNORE": c.forwardNotMatchingPreflights = false
            case let v: throw n.fail("unknown unmatchedPreflights '\(v)' (allowed: UNSPECIFIED, FORWARD, IGNORE)")
            }
        }
        return c
    }
}
