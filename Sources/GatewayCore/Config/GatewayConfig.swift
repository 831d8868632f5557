import NIOCore
import TraceWire

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
    /// Upstream clusters keyed by cluster name (ServiceEntry endpoints + DestinationRule policy):
    /// one per ServiceEntry host, named after it, and one per DestinationRule subset or
    /// non-default port, named as Envoy names Istio's clusters (`outbound|PORT|SUBSET|HOST`).
    public var hosts: [String: HostConfig]
    /// Every HTTP route of every VirtualService, in file order: the first match wins.
    public var routes: [RouteConfig]
    /// Top-level `dnsRefreshRate` (not an Istio field; Envoy's cluster dns_refresh_rate, default
    /// 5s): how often endpoint names of DNS-resolved ServiceEntries are resolved again.
    public var dnsRefreshRate: TimeAmount
    /// Top-level `tracing` (not an Istio field; Istio's mesh `tracing` settings): sampling and
    /// where spans go.
    public var tracing = TracingConfig()
    /// The ports Istio Gateway `servers` open besides `listener` (HTTPS, or plaintext that may
    /// only redirect to https); empty: the plaintext `listener` alone.
    public var gatewayListeners: [GatewayListenerConfig] = []

    public init(listener: BindAddress, admin: BindAddress, hosts: [String: HostConfig], routes: [RouteConfig],
                downstream: DownstreamLimits = DownstreamLimits(), dnsRefreshRate: TimeAmount = .seconds(5)) {
        self.dnsRefreshRate = dnsRefreshRate
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
    /// HTTP/2 on the plaintext listener (h2c with prior knowledge), beside HTTP/1.1; nil: off.
    /// Its settings are those of every HTTP/2 connection (the defaults when nil).
    public var http2: HTTP2Options?
    /// HTTP/2 may be spoken at all: HTTPS servers offer ALPN `h2` (as Istio's ingress does) and
    /// Gateway ports with protocol HTTP2 or GRPC take h2c. False only with
    /// `listener.http2.enabled: false`, the opt-out.
    public var http2Offered = true
    /// The kernel hands a connection to the gateway only once its first bytes have arrived
    /// (TCP_DEFER_ACCEPT, nginx's `deferred`, HAProxy's `defer-accept`), or about a second after
    /// the handshake if none come: a connection per request costs a few percent less CPU.
    /// Connections that send nothing are not counted (`maxConnections`, `downstream_cx_active`)
    /// during that second. Set when the listening sockets open.
    public var deferAccept = false

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

/// Envoy's `http2_protocol_options` for client connections, with the values Envoy's edge
/// best practices recommend (its own defaults suit a mesh: 2^31-1 streams, 256 MiB windows).
public struct HTTP2Options: Sendable, Equatable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: open streams one client connection may have.
    public var maxConcurrentStreams: Int
    /// SETTINGS_INITIAL_WINDOW_SIZE: request body bytes a stream may send ahead of the gateway's reads.
    public var initialStreamWindowSize: Int
    /// The connection's receive window: request body bytes all its streams together may send ahead.
    public var initialConnectionWindowSize: Int

    public init(maxConcurrentStreams: Int = 100, initialStreamWindowSize: Int = 65536,
                initialConnectionWindowSize: Int = 1 << 20) {
        self.maxConcurrentStreams = maxConcurrentStreams
        self.initialStreamWindowSize = initialStreamWindowSize
        self.initialConnectionWindowSize = initialConnectionWindowSize
    }
}

public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    public var address: String
    public var port: Int
    /// ServiceEntry endpoint weight (default 1); used by the load balancers.
    public var weight: Int
    /// The endpoint's (WorkloadEntry's) labels, which DestinationRule subsets select on.
    public var labels: [String: String]
    public init(address: String, port: Int, weight: Int = 1, labels: [String: String] = [:]) {
        self.address = address
        self.port = port
        self.weight = weight
        self.labels = labels
    }
    public var description: String { "\(address):\(port)" }
}

/// One upstream cluster: a ServiceEntry host, or one subset or port of it.
public struct HostConfig: Sendable, Equatable {
    /// The cluster's name: the ServiceEntry host for its default cluster, otherwise Envoy's
    /// `outbound|PORT|SUBSET|HOST`.
    public var name: String
    /// The ServiceEntry host this cluster serves (the Host header a request without one gets).
    public var service: String
    /// The service port this cluster carries (nil: the ServiceEntry declares no ports).
    public var port: Int?
    /// The DestinationRule subset (nil: every endpoint of the host).
    public var subset: String?
    public var endpoints: [Endpoint]
    public var trafficPolicy: TrafficPolicy
    /// How endpoint addresses become hosts (ServiceEntry `resolution`).
    public var resolution: Resolution
    public init(name: String, endpoints: [Endpoint], trafficPolicy: TrafficPolicy = TrafficPolicy(),
                resolution: Resolution = .static, service: String? = nil, port: Int? = nil, subset: String? = nil) {
        self.resolution = resolution
        self.name = name
        self.service = service ?? name
        self.port = port
        self.subset = subset
        self.endpoints = endpoints
        self.trafficPolicy = trafficPolicy
    }

    /// Envoy's name for Istio's cluster of a host, port and subset.
    public static func clusterName(service: String, port: Int?, subset: String?) -> String {
        "outbound|\(port.map(String.init) ?? "")|\(subset ?? "")|\(service)"
    }
}

/// ServiceEntry `resolution`, as Istio maps it onto Envoy's cluster types.
public enum Resolution: String, Sendable, Equatable {
    /// STATIC: every endpoint address is an IP address, used as it is.
    case `static` = "STATIC"
    /// DNS (Envoy's STRICT_DNS): every address a name resolves to is a host; names are resolved
    /// again every `dnsRefreshRate`, hosts that appear are added and hosts that go drain.
    case dns = "DNS"
    /// DNS_ROUND_ROBIN (Envoy's LOGICAL_DNS): one host per name, at the first address of the
    /// latest resolution; new connections go to that address.
    case dnsRoundRobin = "DNS_ROUND_ROBIN"
}

public struct TrafficPolicy: Sendable, Equatable {
    public var connectionPool: ConnectionPoolSettings
    /// nil when the DestinationRule has no `outlierDetection`: no host is ever ejected.
    public var outlierDetection: OutlierDetectionSettings?
    public var loadBalancer: LoadBalancerKind
    /// `loadBalancer.consistentHash` (nil: `loadBalancer` picks); Istio's oneof with `simple`.
    /// Istio's one `loadBalancer` object is `loadBalancer`, `consistentHash` and `warmup` here:
    /// a policy that replaces the `loadBalancer` field (a subset's) replaces all three.
    public var consistentHash: ConsistentHashSettings?
    /// `loadBalancer.warmup` / `warmupDurationSecs` (slow start; nil: off).
    public var warmup: WarmupSettings?
    /// `retryBudget` (nil: `connectionPool.http.maxRetries` bounds retries).
    public var retryBudget: RetryBudgetSettings?
    /// `tls` (nil: mode DISABLE, plaintext to the endpoints).
    public var tls: UpstreamTLSConfig? = nil
    /// The protocol requests go upstream in, resolved once per cluster from the service port's
    /// `protocol` and `connectionPool.http` (`h2UpgradePolicy`, `useClientProtocol`) as Istio's
    /// cluster builder resolves them.
    public var upstreamProtocol: UpstreamProtocol = .http1
    public init(
        connectionPool: ConnectionPoolSettings = ConnectionPoolSettings(),
        outlierDetection: OutlierDetectionSettings? = nil,
        loadBalancer: LoadBalancerKind = .roundRobin,
        consistentHash: ConsistentHashSettings? = nil,
        warmup: WarmupSettings? = nil,
        retryBudget: RetryBudgetSettings? = nil
    ) {
        self.connectionPool = connectionPool
        self.outlierDetection = outlierDetection
        self.loadBalancer = loadBalancer
        self.consistentHash = consistentHash
        self.warmup = warmup
        self.retryBudget = retryBudget
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

/// Istio's `connectionPool.http.h2UpgradePolicy`.
public enum H2UpgradePolicy: String, Sendable, Equatable {
    case `default` = "DEFAULT"
    case doNotUpgrade = "DO_NOT_UPGRADE"
    case upgrade = "UPGRADE"
}

/// What upstream connections of a cluster speak.
public enum UpstreamProtocol: String, Sendable, Equatable {
    /// HTTP/1.1, one request per connection at a time.
    case http1 = "HTTP/1.1"
    /// HTTP/2 (h2c with prior knowledge; ALPN h2 over the rule's TLS): requests are streams
    /// multiplexed over few connections.
    case http2 = "HTTP/2"
    /// The client's protocol: HTTP/2 for an HTTP/2 stream, HTTP/1.1 for the others (useClientProtocol).
    case client = "client"
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
    /// Envoy's common_http_protocol_options.idle_timeout on upstream connections (default 1h):
    /// a pooled connection with no request for this long is closed. Istio programs
    /// http.idleTimeout here, and tcp.idleTimeout when http.idleTimeout is not set (upstream
    /// connections are HTTP, so that one setting is the connection's idle timeout).
    public var idleTimeout: TimeAmount
    /// tcp.tcpKeepalive: TCP keep-alive on upstream connections (nil: off, the kernel's default).
    public var tcpKeepalive: TCPKeepalive?
    /// tcp.maxConnectionDuration, Envoy's common_http_protocol_options.max_connection_duration:
    /// an upstream connection older than this (from its connect) is closed, at once when idle,
    /// after its current response when busy (`upstream_cx_max_duration_reached`). nil: no limit.
    public var maxConnectionDuration: TimeAmount?
    /// http.h2UpgradePolicy (DEFAULT: the mesh default, which is not to upgrade).
    public var h2UpgradePolicy: H2UpgradePolicy = .default
    /// http.useClientProtocol: an HTTP/2 client's request goes upstream over HTTP/2, any other's
    /// over HTTP/1.1 (Envoy's use_downstream_protocol_config); h2UpgradePolicy is then ignored.
    public var useClientProtocol = false
    /// http.maxConcurrentStreams: most streams on one HTTP/2 upstream connection, together with
    /// the upstream's SETTINGS_MAX_CONCURRENT_STREAMS (default 2^31-1; no effect on HTTP/1.1).
    public var maxConcurrentStreams = 2_147_483_647

    public init(
        maxConnections: Int = ConnectionPoolSettings.unlimited,
        connectTimeout: TimeAmount = .seconds(10),
        http1MaxPendingRequests: Int = ConnectionPoolSettings.unlimited,
        http2MaxRequests: Int = ConnectionPoolSettings.unlimited,
        maxRequestsPerConnection: Int = 0,
        maxRetries: Int = ConnectionPoolSettings.unlimited,
        idleTimeout: TimeAmount = .hours(1),
        tcpKeepalive: TCPKeepalive? = nil,
        maxConnectionDuration: TimeAmount? = nil
    ) {
        self.tcpKeepalive = tcpKeepalive
        self.maxConnectionDuration = maxConnectionDuration
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
    /// splitExternalLocalOriginErrors: local-origin failures (connect failure, reset, timeout)
    /// count only toward `consecutiveLocalOriginFailures`, no longer as 503/504 (default false).
    public var splitExternalLocalOriginErrors: Bool
    /// consecutiveLocalOriginFailures (default 5; 0 disables; only read when split).
    public var consecutiveLocalOriginFailures: Int

    public init(
        consecutive5xxErrors: Int = 5,
        consecutiveGatewayErrors: Int = 0,
        interval: TimeAmount = .seconds(10),
        baseEjectionTime: TimeAmount = .seconds(30),
        maxEjectionPercent: Int = 10,
        minHealthPercent: Int = 0,
        splitExternalLocalOriginErrors: Bool = false,
        consecutiveLocalOriginFailures: Int = 5
    ) {
        self.splitExternalLocalOriginErrors = splitExternalLocalOriginErrors
        self.consecutiveLocalOriginFailures = consecutiveLocalOriginFailures
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
    /// `mirror` + `mirrorPercentage`, or `mirrors`: Envoy's request_mirror_policies.
    public var mirrors: [MirrorPolicy]
    /// `headers`, `rewrite`, `redirect`, `directResponse`, `corsPolicy` (Config/RouteTransforms.swift).
    public var transforms: RouteTransformsConfig

    public init(
        name: String, virtualHosts: [String] = [], matches: [RouteMatch] = [],
        destinations: [WeightedDestination], timeout: TimeAmount? = nil,
        retries: RetryPolicyConfig = .istioDefault, fault: FaultConfig? = nil,
        localRateLimit: LocalRateLimitConfig? = nil, mirrors: [MirrorPolicy] = [],
        transforms: RouteTransformsConfig = RouteTransformsConfig()
    ) {
        self.mirrors = mirrors
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
    /// The cluster (a key of `GatewayConfig.hosts`): the host's own, or its subset's or port's.
    public var host: String
    /// Istio weight; a single destination without weight gets 100.
    public var weight: Int
    /// As written in the route, for display: the ServiceEntry host, `subset` and `port.number`.
    public var service: String
    public var subset: String?
    public var port: Int?
    /// `route[].headers`: applied before the route's own (Envoy's weighted-cluster level).
    public var headers: HeadersConfig
    public init(host: String, weight: Int = 100, service: String? = nil, subset: String? = nil, port: Int? = nil,
                headers: HeadersConfig = HeadersConfig()) {
        self.host = host
        self.weight = weight
        self.service = service ?? host
        self.subset = subset
        self.port = port
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
    /// gRPC conditions (two of them in Istio's default): a gRPC call's trailers-only answer
    /// whose `grpc-status` is UNAVAILABLE (14), CANCELLED (1), DEADLINE_EXCEEDED (4), INTERNAL
    /// (13) or RESOURCE_EXHAUSTED (8) is retried. Never match other requests.
    public static let unavailable = RetryOn(rawValue: 1 << 7)         // "unavailable"
    public static let cancelled = RetryOn(rawValue: 1 << 8)           // "cancelled"
    public static let deadlineExceeded = RetryOn(rawValue: 1 << 9)    // "deadline-exceeded"
    public static let `internal` = RetryOn(rawValue: 1 << 10)         // "internal"
    public static let resourceExhausted = RetryOn(rawValue: 1 << 11)  // "resource-exhausted"
    public static let grpcConditions: RetryOn = [.unavailable, .cancelled, .deadlineExceeded, .internal, .resourceExhausted]

    /// Whether a gRPC call's response head needs its `grpc-status` read.
    @inline(__always) public var hasGRPCConditions: Bool { !isDisjoint(with: Self.grpcConditions) }

    /// Whether these conditions retry a call that answered `grpcStatus` (Envoy's `retry_on` gRPC names).
    public func retries(grpcStatus: Int) -> Bool {
        switch grpcStatus {
        case 1: return contains(.cancelled)
        case 4: return contains(.deadlineExceeded)
        case 8: return contains(.resourceExhausted)
        case 13: return contains(.internal)
        case 14: return contains(.unavailable)
        default: return false
        }
    }
}

/// VirtualService `retries`.
public struct RetryPolicyConfig: Sendable, Equatable {
    /// Retries after the first try (Istio `attempts`); 0 disables retries.
    public var attempts: Int
    /// nil = each try bounded only by the route timeout.
    public var perTryTimeout: TimeAmount?
    public var retryOn: RetryOn
    /// Numeric entries of `retryOn` (Istio puts status codes in the same string).
    public var retriableStatusCodes: StatusCodeSet
    /// `backoff`: Envoy's `retry_back_off.base_interval` (default 25 ms); the cap is 10 × it.
    public var backoffBase: TimeAmount
    /// `retryIgnorePreviousHosts` (Istio's default true): a retry avoids the hosts tried before.
    public var ignorePreviousHosts: Bool

    public init(attempts: Int, perTryTimeout: TimeAmount? = nil, retryOn: RetryOn, retriableStatusCodes: StatusCodeSet = [],
                backoffBase: TimeAmount = .milliseconds(25), ignorePreviousHosts: Bool = true) {
        self.backoffBase = backoffBase
        self.ignorePreviousHosts = ignorePreviousHosts
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
        /// The reply's status: `httpStatus`, or 200 for an abort with a `grpcStatus`.
        public var httpStatus: Int
        public var percentage: Double
        /// Istio's `grpcStatus` (Envoy's `abort.grpc_status`): the reply is a 200 that a gRPC
        /// call receives as this status.
        public var grpcStatus: Int?
        public init(httpStatus: Int, percentage: Double, grpcStatus: Int? = nil) {
            self.httpStatus = httpStatus
            self.percentage = percentage
            self.grpcStatus = grpcStatus
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

/// One shadow destination of a route (Istio `mirror`/`mirrors`, Envoy's RequestMirrorPolicy):
/// a copy of each sampled request goes to `host` with `-shadow` appended to its Host, its
/// answer dropped.
public struct MirrorPolicy: Sendable, Equatable {
    /// The cluster the copies go to.
    public var host: String
    /// Share of requests mirrored, 0...100 (Istio's default 100), as Envoy's runtime_fraction
    /// in millionths.
    public var percentage: Double
    public init(host: String, percentage: Double = 100) {
        self.host = host
        self.percentage = percentage
    }
}

/// Traces: the gateway always propagates W3C trace context (a valid client `traceparent`
/// continues, else a new trace starts); spans are exported only with an `otlpEndpoint`.
public struct TracingConfig: Sendable, Equatable {
    /// OTLP/HTTP JSON collector (`http://host:4318/v1/traces`); nil exports nothing.
    public var otlpEndpoint: OTLPExporter.Endpoint? = nil
    /// Percent of new traces marked sampled (Envoy's `random_sampling`, default 100); a client's
    /// valid `traceparent` keeps its own decision.
    public var sampling: Double = 100
    /// The resource's `service.name` in exported spans.
    public var serviceName = "gateway"

    public init() {}
}
