import NIOCore

/// The checked configuration the data plane runs on.
///
/// Produced only by `ConfigLoader` from the Istio-shaped JSON (SPEC §4): every default is filled in,
/// every duration parsed and every cross reference (route → host) resolved, so nothing downstream
/// has to validate again. Values follow Istio's field names; the comments give Istio's defaults.
public struct GatewayConfig: Sendable, Equatable {
    public var listener: BindAddress
    /// The `listener` block's downstream limits and timeouts (Envoy's edge defaults).
    public var downstream: DownstreamLimits
    public var admin: BindAddress
    /// Upstream services keyed by host name (ServiceEntry endpoints + DestinationRule policy).
    public var hosts: [String: HostConfig]
    /// Every HTTP route of every VirtualService, in file order: the first match wins.
    public var routes: [RouteConfig]

    public init(listener: BindAddress, admin: BindAddress, hosts: [String: HostConfig], routes: [RouteConfig],
                downstream: DownstreamLimits = DownstreamLimits()) {
        self.listener = listener
        self.downstream = downstream
        self.admin = admin
        self.hosts = hosts
        self.routes = routes
    }
}

public struct BindAddress: Sendable, Equatable {
    public var address: String
    public var port: Int
    public init(address: String, port: Int) {
        self.address = address
        self.port = port
    }
}

/// What one client may hold of the gateway, with Envoy's names (HTTP connection manager and
/// listener) and the defaults of its edge deployment guide. A nil timeout is off.
public struct DownstreamLimits: Sendable, Equatable {
    /// request_headers_timeout: from a request's first byte to the end of its head; past it
    /// the client gets `408` and the connection is closed.
    public var requestHeadersTimeout: TimeAmount?
    /// stream_idle_timeout: an active request with no bytes either way (a client that stopped
    /// sending its body or stopped reading its response) is ended.
    public var streamIdleTimeout: TimeAmount?
    /// common_http_protocol_options.idle_timeout: a keep-alive connection with no request.
    public var idleTimeout: TimeAmount?
    /// max_connection_duration: a connection is closed after its current request past this age.
    public var maxConnectionDuration: TimeAmount?
    /// Listener-wide open connections; past it a new connection is closed at once
    /// (`downstream_cx_overflow`). nil: half the process's descriptor limit, so upstream
    /// connections always find descriptors.
    public var maxConnections: Int?
    /// max_request_headers_kb: the request line and headers together.
    public var maxRequestHeadersKb: Int
    /// max_headers_count.
    public var maxHeadersCount: Int
    /// per_connection_buffer_limit_bytes: unprocessed bytes read from one client (pipelined
    /// requests included) before the gateway stops reading it.
    public var perConnectionBufferLimitBytes: Int

    public init(
        requestHeadersTimeout: TimeAmount? = .seconds(10),
        streamIdleTimeout: TimeAmount? = .minutes(5),
        idleTimeout: TimeAmount? = .hours(1),
        maxConnectionDuration: TimeAmount? = nil,
        maxConnections: Int? = nil,
        maxRequestHeadersKb: Int = 60,
        maxHeadersCount: Int = 100,
        perConnectionBufferLimitBytes: Int = 1 << 20
    ) {
        self.requestHeadersTimeout = requestHeadersTimeout
        self.streamIdleTimeout = streamIdleTimeout
        self.idleTimeout = idleTimeout
        self.maxConnectionDuration = maxConnectionDuration
        self.maxConnections = maxConnections
        self.maxRequestHeadersKb = maxRequestHeadersKb
        self.maxHeadersCount = maxHeadersCount
        self.perConnectionBufferLimitBytes = perConnectionBufferLimitBytes
    }
}

public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    public var address: String
    public var port: Int
    /// ServiceEntry endpoint weight (default 1); used by the load balancers.
    public var weight: Int
    public init(address: String, port: Int, weight: Int = 1) {
        self.address = address
        self.port = port
        self.weight = weight
    }
    public var description: String { "\(address):\(port)" }
}

public struct HostConfig: Sendable, Equatable {
    public var name: String
    public var endpoints: [Endpoint]
    public var trafficPolicy: TrafficPolicy
    public init(name: String, endpoints: [Endpoint], trafficPolicy: TrafficPolicy = TrafficPolicy()) {
        self.name = name
        self.endpoints = endpoints
        self.trafficPolicy = trafficPolicy
    }
}

public struct TrafficPolicy: Sendable, Equatable {
    public var connectionPool: ConnectionPoolSettings
    /// nil when the DestinationRule has no `outlierDetection`: no host is ever ejected.
    public var outlierDetection: OutlierDetectionSettings?
    public var loadBalancer: LoadBalancerKind
    public init(
        connectionPool: ConnectionPoolSettings = ConnectionPoolSettings(),
        outlierDetection: OutlierDetectionSettings? = nil,
        loadBalancer: LoadBalancerKind = .roundRobin
    ) {
        self.connectionPool = connectionPool
        self.outlierDetection = outlierDetection
        self.loadBalancer = loadBalancer
    }
}

/// Istio `connectionPool.tcp.tcpKeepalive`: SO_KEEPALIVE on upstream sockets, each field left
/// nil keeping the kernel's value (Linux: 9 probes, 7200 s, 75 s), as Envoy's `tcp_keepalive`.
public struct TCPKeepalive: Sendable, Equatable {
    public var probes: Int?
    public var time: TimeAmount?
    public var interval: TimeAmount?
    public init(probes: Int? = nil, time: TimeAmount? = nil, interval: TimeAmount? = nil) {
        self.probes = probes
        self.time = time
        self.interval = interval
    }
}

/// Istio `connectionPool.tcp` + `connectionPool.http`, mapped onto Envoy's circuit-breaker thresholds.
public struct ConnectionPoolSettings: Sendable, Equatable {
    /// Istio's "unlimited" for every threshold: 2^32-1.
    public static let unlimited = 4_294_967_295

    /// tcp.maxConnections (default 2^32-1).
    public var maxConnections: Int
    /// tcp.connectTimeout (default 10s).
    public var connectTimeout: TimeAmount
    /// http.http1MaxPendingRequests (default 2^32-1).
    public var http1MaxPendingRequests: Int
    /// http.http2MaxRequests: most active requests to the cluster (default 2^32-1).
    public var http2MaxRequests: Int
    /// http.maxRequestsPerConnection (0 = unlimited; 1 disables upstream keep-alive).
    public var maxRequestsPerConnection: Int
    /// http.maxRetries: most retries outstanding to the cluster at once (default 2^32-1).
    public var maxRetries: Int
    /// http.idleTimeout (default 1h).
    public var idleTimeout: TimeAmount
    /// tcp.tcpKeepalive: TCP keep-alive on upstream connections (nil: off, the kernel's default).
    public var tcpKeepalive: TCPKeepalive?

    public init(
        maxConnections: Int = ConnectionPoolSettings.unlimited,
        connectTimeout: TimeAmount = .seconds(10),
        http1MaxPendingRequests: Int = ConnectionPoolSettings.unlimited,
        http2MaxRequests: Int = ConnectionPoolSettings.unlimited,
        maxRequestsPerConnection: Int = 0,
        maxRetries: Int = ConnectionPoolSettings.unlimited,
        idleTimeout: TimeAmount = .hours(1),
        tcpKeepalive: TCPKeepalive? = nil
    ) {
        self.tcpKeepalive = tcpKeepalive
        self.maxConnections = maxConnections
        self.connectTimeout = connectTimeout
        self.http1MaxPendingRequests = http1MaxPendingRequests
        self.http2MaxRequests = http2MaxRequests
        self.maxRequestsPerConnection = maxRequestsPerConnection
        self.maxRetries = maxRetries
        self.idleTimeout = idleTimeout
    }
}

/// Istio `outlierDetection`, with Istio's defaults.
public struct OutlierDetectionSettings: Sendable, Equatable {
    /// consecutive5xxErrors (default 5; 0 disables).
    public var consecutive5xxErrors: Int
    /// consecutiveGatewayErrors: 502/503/504 and connect failures (default 0 = disabled).
    public var consecutiveGatewayErrors: Int
    /// interval between ejection sweeps (default 10s).
    public var interval: TimeAmount
    /// baseEjectionTime, multiplied by the times a host was ejected (default 30s).
    public var baseEjectionTime: TimeAmount
    /// maxEjectionPercent (default 10; one host may always be ejected, as in Envoy).
    public var maxEjectionPercent: Int
    /// minHealthPercent: below it the pool ignores ejections (Envoy's panic threshold; default 0).
    public var minHealthPercent: Int

    public init(
        consecutive5xxErrors: Int = 5,
        consecutiveGatewayErrors: Int = 0,
        interval: TimeAmount = .seconds(10),
        baseEjectionTime: TimeAmount = .seconds(30),
        maxEjectionPercent: Int = 10,
        minHealthPercent: Int = 0
    ) {
        self.consecutive5xxErrors = consecutive5xxErrors
        self.consecutiveGatewayErrors = consecutiveGatewayErrors
        self.interval = interval
        self.baseEjectionTime = baseEjectionTime
        self.maxEjectionPercent = maxEjectionPercent
        self.minHealthPercent = minHealthPercent
    }
}

public enum LoadBalancerKind: String, Sendable, Equatable, CaseIterable {
    case roundRobin = "ROUND_ROBIN"
    case leastRequest = "LEAST_REQUEST"
    case random = "RANDOM"
}

/// One `http[]` entry of a VirtualService.
public struct RouteConfig: Sendable, Equatable {
    /// The route's `name`, or "<virtualService name or index>.<http index>" when it has none.
    public var name: String
    /// The VirtualService's `hosts` (empty or "*" = any Host header).
    public var virtualHosts: [String]
    /// Any one match suffices; empty = matches every request.
    public var matches: [RouteMatch]
    public var destinations: [WeightedDestination]
    /// Whole-request timeout including retries; nil = none (Istio's default).
    public var timeout: TimeAmount?
    public var retries: RetryPolicyConfig
    public var fault: FaultConfig?
    public var localRateLimit: LocalRateLimitConfig?
    /// `headers`, `rewrite`, `redirect`, `directResponse`, `corsPolicy` (Config/RouteTransforms.swift).
    public var transforms: RouteTransformsConfig

    public init(
        name: String, virtualHosts: [String] = [], matches: [RouteMatch] = [],
        destinations: [WeightedDestination], timeout: TimeAmount? = nil,
        retries: RetryPolicyConfig = .istioDefault, fault: FaultConfig? = nil,
        localRateLimit: LocalRateLimitConfig? = nil, transforms: RouteTransformsConfig = RouteTransformsConfig()
    ) {
        self.transforms = transforms
        self.name = name
        self.virtualHosts = virtualHosts
        self.matches = matches
        self.destinations = destinations
        self.timeout = timeout
        self.retries = retries
        self.fault = fault
        self.localRateLimit = localRateLimit
    }
}

public enum StringMatch: Sendable, Equatable {
    case exact(String)
    case prefix(String)
    /// RE2-style pattern, matched against the whole value.
    case regex(String)
}

/// All present conditions must hold (Istio `HTTPMatchRequest`).
public struct RouteMatch: Sendable, Equatable {
    public var uri: StringMatch?
    public var method: StringMatch?
    /// Lower-cased header name → match on its value.
    public var headers: [String: StringMatch]
    /// `queryParams`: name → match on the first value (percent-decoded, as Envoy's
    /// query_parameters); `exact: ""` only asks that the parameter be present (Istio).
    public var queryParams: [String: StringMatch]
    /// `authority`: the Host header as sent (with its port, as Envoy's `:authority`).
    public var authority: StringMatch?
    /// `scheme`: Envoy's `:scheme`, "http" on this gateway's plaintext listener.
    public var scheme: StringMatch?
    /// `port`: the port the request came in on.
    public var port: Int?
    /// `withoutHeaders`: lower-cased name → the route does not match when the header is present
    /// and matches (Envoy's `invert_match`; an absent header passes).
    public var withoutHeaders: [String: StringMatch]
    /// `ignoreUriCase`: exact and prefix uri matches compare ASCII case-insensitively (Envoy's
    /// `case_sensitive: false`).
    public var ignoreUriCase: Bool
    /// `name`: kept with the match (Istio appends it to the route's name in Envoy's config).
    public var name: String?

    public init(uri: StringMatch? = nil, method: StringMatch? = nil, headers: [String: StringMatch] = [:],
                queryParams: [String: StringMatch] = [:], authority: StringMatch? = nil, scheme: StringMatch? = nil,
                port: Int? = nil, withoutHeaders: [String: StringMatch] = [:], ignoreUriCase: Bool = false,
                name: String? = nil) {
        self.uri = uri
        self.method = method
        self.headers = headers
        self.queryParams = queryParams
        self.authority = authority
        self.scheme = scheme
        self.port = port
        self.withoutHeaders = withoutHeaders
        self.ignoreUriCase = ignoreUriCase
        self.name = name
    }

    /// Uses nothing beyond uri, method and headers (the matchers the plain path compiles).
    var isBasic: Bool {
        queryParams.isEmpty && authority == nil && scheme == nil && port == nil && withoutHeaders.isEmpty && !ignoreUriCase
    }
}

public struct WeightedDestination: Sendable, Equatable {
    public var host: String
    /// Istio weight; a single destination without weight gets 100.
    public var weight: Int
    /// `route[].headers`: applied before the route's own (Envoy's weighted-cluster level).
    public var headers: HeadersConfig
    public init(host: String, weight: Int = 100, headers: HeadersConfig = HeadersConfig()) {
        self.host = host
        self.weight = weight
        self.headers = headers
    }
}

/// The `retryOn` conditions Envoy knows (SPEC §4).
public struct RetryOn: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let fiveXX = RetryOn(rawValue: 1 << 0)              // "5xx"
    public static let gatewayError = RetryOn(rawValue: 1 << 1)        // "gateway-error"
    public static let connectFailure = RetryOn(rawValue: 1 << 2)      // "connect-failure"
    public static let reset = RetryOn(rawValue: 1 << 3)               // "reset"
    public static let refusedStream = RetryOn(rawValue: 1 << 4)       // "refused-stream"
    public static let retriable4xx = RetryOn(rawValue: 1 << 5)        // "retriable-4xx" (409)
    public static let retriableStatusCodes = RetryOn(rawValue: 1 << 6) // "retriable-status-codes"
    /// gRPC-only conditions Istio puts in its default; accepted, never match HTTP/1.1 answers.
    public static let unavailable = RetryOn(rawValue: 1 << 7)         // "unavailable"
    public static let cancelled = RetryOn(rawValue: 1 << 8)           // "cancelled"
}

/// VirtualService `retries`.
public struct RetryPolicyConfig: Sendable, Equatable {
    /// Retries after the first try (Istio `attempts`); 0 disables retries.
    public var attempts: Int
    /// nil = each try bounded only by the route timeout.
    public var perTryTimeout: TimeAmount?
    public var retryOn: RetryOn
    /// Numeric entries of `retryOn` (Istio puts status codes in the same string).
    public var retriableStatusCodes: [Int]

    public init(attempts: Int, perTryTimeout: TimeAmount? = nil, retryOn: RetryOn, retriableStatusCodes: [Int] = []) {
        self.attempts = attempts
        self.perTryTimeout = perTryTimeout
        self.retryOn = retryOn
        self.retriableStatusCodes = retriableStatusCodes
    }

    /// What Istio programs when a route has no `retries`: 2 attempts on
    /// "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes" with 503.
    public static let istioDefault = RetryPolicyConfig(
        attempts: 2, retryOn: [.connectFailure, .refusedStream, .unavailable, .cancelled, .retriableStatusCodes],
        retriableStatusCodes: [503])
    public static let disabled = RetryPolicyConfig(attempts: 0, retryOn: [])
}

/// VirtualService `fault`. Percentages are 0...100.
public struct FaultConfig: Sendable, Equatable {
    public struct Delay: Sendable, Equatable {
        public var fixedDelay: TimeAmount
        public var percentage: Double
        public init(fixedDelay: TimeAmount, percentage: Double) {
            self.fixedDelay = fixedDelay
            self.percentage = percentage
        }
    }
    public struct Abort: Sendable, Equatable {
        public var httpStatus: Int
        public var percentage: Double
        public init(httpStatus: Int, percentage: Double) {
            self.httpStatus = httpStatus
            self.percentage = percentage
        }
    }
    public var delay: Delay?
    public var abort: Abort?
    public init(delay: Delay? = nil, abort: Abort? = nil) {
        self.delay = delay
        self.abort = abort
    }
}

/// Envoy's local rate limit filter: a token bucket per route, or per client address.
public struct LocalRateLimitConfig: Sendable, Equatable {
    public var maxTokens: Int
    public var tokensPerFill: Int
    public var fillInterval: TimeAmount
    /// true: one bucket per downstream remote address (`"perClient": "remoteAddress"`).
    public var perClient: Bool
    /// With `perClient`: most client addresses whose buckets are kept (`maxTrackedClients`,
    /// default 10,000). Past it, full buckets are dropped first, then the least recently used.
    public var maxTrackedClients: Int
    public static let defaultMaxTrackedClients = 10_000
    public init(maxTokens: Int, tokensPerFill: Int, fillInterval: TimeAmount, perClient: Bool = false,
                maxTrackedClients: Int = LocalRateLimitConfig.defaultMaxTrackedClients) {
        self.maxTokens = maxTokens
        self.tokensPerFill = tokensPerFill
        self.fillInterval = fillInterval
        self.perClient = perClient
        self.maxTrackedClients = maxTrackedClients
    }
}
