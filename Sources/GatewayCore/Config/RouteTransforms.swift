/// VirtualService `http[]` fields that change a request or answer it without an upstream:
/// `headers`, `rewrite`, `redirect`, `directResponse` and `corsPolicy`, with the meaning Envoy
/// gives the route fields Istio turns them into (`request_headers_to_add`, `prefix_rewrite`,
/// `regex_rewrite`, `host_rewrite_literal`, `redirect`, `direct_response`, the CORS filter).
public struct RouteTransformsConfig: Sendable, Equatable {
    /// Route-level `headers`.
    public var headers: HeadersConfig
    public var rewrite: RewriteConfig?
    public var redirect: RedirectConfig?
    public var directResponse: DirectResponseConfig?
    public var cors: CORSPolicyConfig?

    public init(headers: HeadersConfig = HeadersConfig(), rewrite: RewriteConfig? = nil, redirect: RedirectConfig? = nil,
                directResponse: DirectResponseConfig? = nil, cors: CORSPolicyConfig? = nil) {
        self.headers = headers
        self.rewrite = rewrite
        self.redirect = redirect
        self.directResponse = directResponse
        self.cors = cors
    }

    public var isEmpty: Bool { self == RouteTransformsConfig() }
}

/// Istio `Headers`: operations on the request sent upstream and on the response sent back.
public struct HeadersConfig: Sendable, Equatable {
    public var request: HeaderOperations
    public var response: HeaderOperations
    /// `host` (or `:authority`) in `request.set`: Istio makes it the authority sent upstream
    /// (Envoy's host_rewrite_literal, on the route or on the weighted cluster), not a second Host line.
    public var authority: String?
    public init(request: HeaderOperations = HeaderOperations(), response: HeaderOperations = HeaderOperations(),
                authority: String? = nil) {
        self.request = request
        self.response = response
        self.authority = authority
    }
    public var isEmpty: Bool { request.isEmpty && response.isEmpty && authority == nil }
}

/// Istio `HeaderOperations`. Envoy applies `remove` first, then `set` (OVERWRITE_IF_EXISTS_OR_ADD)
/// and `add` (APPEND_IF_EXISTS_OR_ADD). Names are lower-cased; `set` and `add` keep file order
/// (Istio's maps have none; sorted by name here, so the same file always writes the same head).
public struct HeaderOperations: Sendable, Equatable {
    public var set: [(name: String, value: String)]
    public var add: [(name: String, value: String)]
    public var remove: [String]

    public init(set: [(name: String, value: String)] = [], add: [(name: String, value: String)] = [], remove: [String] = []) {
        self.set = set
        self.add = add
        self.remove = remove
    }

    public var isEmpty: Bool { self.set.isEmpty && add.isEmpty && remove.isEmpty }

    public static func == (a: HeaderOperations, b: HeaderOperations) -> Bool {
        a.remove == b.remove && a.set.map { [$0.name, $0.value] } == b.set.map { [$0.name, $0.value] }
            && a.add.map { [$0.name, $0.value] } == b.add.map { [$0.name, $0.value] }
    }
}

/// Istio `HTTPRewrite`.
public struct RewriteConfig: Sendable, Equatable {
    /// Envoy `prefix_rewrite`: the part of the path the route matched (the prefix of a prefix
    /// match, the whole path of an exact or regex match, "/" without a uri match) is replaced.
    public var uri: String?
    /// Envoy `host_rewrite_literal`: the Host sent upstream.
    public var authority: String?
    /// Envoy `regex_rewrite`: every match of `match` in the path (query kept) replaced by `rewrite`
    /// (`\1`-style group references, as RE2 writes them).
    public var uriRegex: (match: String, rewrite: String)?

    public init(uri: String? = nil, authority: String? = nil, uriRegex: (match: String, rewrite: String)? = nil) {
        self.uri = uri
        self.authority = authority
        self.uriRegex = uriRegex
    }

    public static func == (a: RewriteConfig, b: RewriteConfig) -> Bool {
        a.uri == b.uri && a.authority == b.authority && a.uriRegex?.match == b.uriRegex?.match
            && a.uriRegex?.rewrite == b.uriRegex?.rewrite
    }
}

/// Istio `HTTPRedirect`, as Envoy's `RedirectAction` answers it.
public struct RedirectConfig: Sendable, Equatable {
    public enum Port: Sendable, Equatable {
        /// Istio's default (`FROM_PROTOCOL_DEFAULT`): no port_redirect; the request's Host keeps
        /// its port unless the scheme changes away from that port's default.
        case fromProtocolDefault
        /// `FROM_REQUEST_PORT`: the port the request came in on (the listener's).
        case fromRequestPort
        case number(Int)
    }
    /// Envoy `path_redirect` (nil: the request's path); the request's query is kept unless
    /// this one carries its own.
    public var uri: String?
    public var authority: String?
    public var port: Port
    public var scheme: String?
    /// 301 (default), 302, 303, 307 or 308: the codes Envoy's RedirectAction has.
    public var redirectCode: Int

    public init(uri: String? = nil, authority: String? = nil, port: Port = .fromProtocolDefault, scheme: String? = nil,
                redirectCode: Int = 301) {
        self.uri = uri
        self.authority = authority
        self.port = port
        self.scheme = scheme
        self.redirectCode = redirectCode
    }
}

/// Istio `HTTPDirectResponse`: the gateway answers with this status and body.
public struct DirectResponseConfig: Sendable, Equatable {
    public var status: Int
    public var body: [UInt8]?
    public init(status: Int, body: [UInt8]? = nil) {
        self.status = status
        self.body = body
    }
}

/// Istio `CorsPolicy`, enforced as Envoy's CORS filter does.
public struct CORSPolicyConfig: Sendable, Equatable {
    public var allowOrigins: [StringMatch]
    public var allowMethods: [String]
    public var allowHeaders: [String]
    public var exposeHeaders: [String]
    /// Seconds, as Istio writes `access-control-max-age`.
    public var maxAgeSeconds: Int?
    public var allowCredentials: Bool
    /// Envoy `forward_not_matching_preflights` (Istio `unmatchedPreflights: FORWARD`, the
    /// default): a preflight whose origin does not match goes to the upstream. false (`IGNORE`):
    /// the gateway answers it 200 without `access-control-allow-origin`.
    public var forwardNotMatchingPreflights: Bool

    public init(allowOrigins: [StringMatch] = [], allowMethods: [String] = [], allowHeaders: [String] = [],
                exposeHeaders: [String] = [], maxAgeSeconds: Int? = nil, allowCredentials: Bool = false,
                forwardNotMatchingPreflights: Bool = true) {
        self.allowOrigins = allowOrigins
        self.allowMethods = allowMethods
        self.allowHeaders = allowHeaders
        self.exposeHeaders = exposeHeaders
        self.maxAgeSeconds = maxAgeSeconds
        self.allowCredentials = allowCredentials
        self.forwardNotMatchingPreflights = forwardNotMatchingPreflights
    }
}
