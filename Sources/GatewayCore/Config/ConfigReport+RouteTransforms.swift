/// `gateway validate` and `/config_dump` for the route fields of Config/RouteTransforms.swift and
/// the match conditions beyond uri, method and headers.
extension ConfigReport {
    static func matchExtrasText(_ m: RouteMatch) -> [String] {
        var parts: [String] = []
        for (k, v) in m.queryParams.sorted(by: { $0.key < $1.key }) {
            parts.append(v == .exact("") ? "query \(k) present" : "query \(k) \(match(v))")
        }
        if let a = m.authority { parts.append("authority \(match(a))") }
        if let s = m.scheme { parts.append("scheme \(match(s))" + ((try? BytesMatcher(s).matches("http")) == true ? "" : " (never: the listener is http)")) }
        if let p = m.port { parts.append("port \(p)") }
        for (k, v) in m.withoutHeaders.sorted(by: { $0.key < $1.key }) { parts.append("no header \(k) \(match(v))") }
        if m.ignoreUriCase { parts.append("uri case ignored") }
        if let n = m.name { parts.append("(match '\(n)')") }
        return parts
    }

    static func operationsText(_ ops: HeaderOperations) -> String {
        var parts: [String] = []
        if !ops.remove.isEmpty { parts.append("remove " + ops.remove.joined(separator: ", ")) }
        if !ops.set.isEmpty { parts.append("set " + ops.set.map { "\($0.name): \($0.value)" }.joined(separator: ", ")) }
        if !ops.add.isEmpty { parts.append("add " + ops.add.map { "\($0.name): \($0.value)" }.joined(separator: ", ")) }
        return parts.joined(separator: "; ")
    }

    /// The lines `render` prints under a route for its transforms, in the order they act.
    static func transformsText(_ r: RouteConfig) -> String {
        let t = r.transforms
        var out = ""
        if let c = t.cors {
            let origins = c.allowOrigins.map(match).joined(separator: ", ")
            out += "    CORS: origins \(origins.isEmpty ? "none" : origins); preflights from them answered by the gateway"
            out += c.forwardNotMatchingPreflights ? ", others forwarded upstream\n" : ", others answered 200 without CORS headers\n"
        }
        if let rd = t.redirect {
            var to = "\(rd.scheme ?? "http")://\(rd.authority ?? "<request host>")"
            switch rd.port {
            case .fromProtocolDefault: break
            case .fromRequestPort: to += ":<listener port>"
            case .number(let n): to += ":\(n)"
            }
            out += "    redirect \(rd.redirectCode) to \(to)\(rd.uri ?? "<request path>")\n"
        }
        if let d = t.directResponse { out += "    direct response \(d.status), \(d.body?.count ?? 0)-byte body\n" }
        if let rw = t.rewrite {
            if let u = rw.uri { out += "    path: the matched part becomes \(u)\n" }
            if let x = rw.uriRegex { out += "    path: \(x.match) replaced by \(x.rewrite)\n" }
            if let a = rw.authority { out += "    Host sent upstream: \(a)\n" }
        }
        if !t.headers.request.isEmpty { out += "    request headers: \(operationsText(t.headers.request))\n" }
        if !t.headers.response.isEmpty { out += "    response headers: \(operationsText(t.headers.response))\n" }
        for d in r.destinations where !d.headers.isEmpty {
            if let a = d.headers.authority { out += "    to \(d.host), Host sent upstream: \(a)\n" }
            if !d.headers.request.isEmpty { out += "    to \(d.host), request headers first: \(operationsText(d.headers.request))\n" }
            if !d.headers.response.isEmpty { out += "    from \(d.host), response headers first: \(operationsText(d.headers.response))\n" }
        }
        return out
    }
}

extension ConfigJSON {
    static func matchExtras(_ m: RouteMatch) -> [(String, String)] {
        var p: [(String, String)] = []
        if let n = m.name { p.append(("name", jsonString(n))) }
        if !m.queryParams.isEmpty { p.append(("queryParams", object(m.queryParams.sorted { $0.key < $1.key }.map { ($0.key, match($0.value)) }))) }
        if let a = m.authority { p.append(("authority", match(a))) }
        if let s = m.scheme { p.append(("scheme", match(s))) }
        if let port = m.port { p.append(("port", "\(port)")) }
        if !m.withoutHeaders.isEmpty {
            p.append(("withoutHeaders", object(m.withoutHeaders.sorted { $0.key < $1.key }.map { ($0.key, match($0.value)) })))
        }
        if m.ignoreUriCase { p.append(("ignoreUriCase", "true")) }
        return p
    }

    static func operations(_ ops: HeaderOperations) -> String {
        object([
            ("set", object(ops.set.map { ($0.name, jsonString($0.value)) })),
            ("add", object(ops.add.map { ($0.name, jsonString($0.value)) })),
            ("remove", "[" + ops.remove.map(jsonString).joined(separator: ",") + "]"),
        ])
    }

    static func transforms(_ r: RouteConfig) -> [(String, String)] {
        let t = r.transforms
        var p: [(String, String)] = []
        if !t.headers.isEmpty {
            p.append(("headers", object([("request", operations(t.headers.request)), ("response", operations(t.headers.response))])))
        }
        if let rw = t.rewrite {
            p.append(("rewrite", object(
                (rw.uri.map { [("uri", jsonString($0))] } ?? []) + (rw.authority.map { [("authority", jsonString($0))] } ?? [])
                    + (rw.uriRegex.map { [("uriRegexRewrite", object([("match", jsonString($0.match)), ("rewrite", jsonString($0.rewrite))]))] } ?? []))))
        }
        if let rd = t.redirect {
            var q: [(String, String)] = [("redirectCode", "\(rd.redirectCode)")]
            if let u = rd.uri { q.append(("uri", jsonString(u))) }
            if let a = rd.authority { q.append(("authority", jsonString(a))) }
            if let s = rd.scheme { q.append(("scheme", jsonString(s))) }
            switch rd.port {
            case .fromProtocolDefault: q.append(("derivePort", "\"FROM_PROTOCOL_DEFAULT\""))
            case .fromRequestPort: q.append(("derivePort", "\"FROM_REQUEST_PORT\""))
            case .number(let n): q.append(("port", "\(n)"))
            }
            p.append(("redirect", object(q)))
        }
        if let d = t.directResponse {
            p.append(("directResponse", object([("status", "\(d.status)"), ("bodyBytes", "\(d.body?.count ?? 0)")])))
        }
        if let c = t.cors {
            func list(_ l: [String]) -> String { "[" + l.map(jsonString).joined(separator: ",") + "]" }
            p.append(("corsPolicy", object([
                ("allowOrigins", "[" + c.allowOrigins.map(match).joined(separator: ",") + "]"),
                ("allowMethods", list(c.allowMethods)), ("allowHeaders", list(c.allowHeaders)),
                ("exposeHeaders", list(c.exposeHeaders)), ("maxAge", c.maxAgeSeconds.map { "\"\($0)s\"" } ?? "null"),
                ("allowCredentials", "\(c.allowCredentials)"),
                ("unmatchedPreflights", c.forwardNotMatchingPreflights ? "\"FORWARD\"" : "\"IGNORE\""),
            ])))
        }
        return p
    }
}
