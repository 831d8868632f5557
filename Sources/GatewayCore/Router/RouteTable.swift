#if canImport(Glibc)
import HTTP1Wire
import Glibc
#endif
import Atomics
import NIOCore

/// A compiled `StringMatch` that can test raw request bytes without making a String.
struct BytesMatcher: @unchecked Sendable {
    // @unchecked: Regex is immutable once compiled and safe to share between threads.
    enum Kind {
        case exact([UInt8])
        case prefix([UInt8])
        case regex(Regex<AnyRegexOutput>)
        /// `ignoreUriCase` (Envoy's `case_sensitive: false`): the pattern is held lower-cased.
        case exactIgnoringCase([UInt8])
        case prefixIgnoringCase([UInt8])
    }
    let kind: Kind

    init(_ m: StringMatch, lowercased: Bool = false, ignoringCase: Bool = false) throws {
        func bytes(_ s: String) -> [UInt8] { Array((lowercased || ignoringCase ? s.lowercased() : s).utf8) }
        switch m {
        case .exact(let s): kind = ignoringCase ? .exactIgnoringCase(bytes(s)) : .exact(bytes(s))
        case .prefix(let s): kind = ignoringCase ? .prefixIgnoringCase(bytes(s)) : .prefix(bytes(s))
        case .regex(let p): kind = .regex(try Regex(p))
        }
    }

    /// ASCII case-insensitive comparison of `count` bytes with a lower-case pattern.
    @inline(__always)
    static func equalsIgnoringCase(_ b: UnsafeRawBufferPointer, at start: Int, _ pattern: [UInt8]) -> Bool {
        for k in 0..<pattern.count where lowercased(b[start + k]) != pattern[k] { return false }
        return true
    }

    /// How many bytes of the path a match of this kind takes, for Envoy's prefix_rewrite:
    /// the prefix, or the exact path; nil for a regex (the whole path without its query).
    var matchedLength: Int? {
        switch kind {
        case .exact(let e), .exactIgnoringCase(let e): return e.count
        case .prefix(let p), .prefixIgnoringCase(let p): return p.count
        case .regex: return nil
        }
    }

    @inline(__always)
    func matches(_ b: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        switch kind {
        case .exact(let e):
            return range.count == e.count && memcmp(b.baseAddress! + range.lowerBound, e, e.count) == 0
        case .prefix(let p):
            return range.count >= p.count && memcmp(b.baseAddress! + range.lowerBound, p, p.count) == 0
        case .regex(let r):
            let s = String(decoding: UnsafeRawBufferPointer(rebasing: b[range]), as: UTF8.self)
            return (try? r.wholeMatch(in: s)) != nil
        case .exactIgnoringCase(let e):
            return range.count == e.count && Self.equalsIgnoringCase(b, at: range.lowerBound, e)
        case .prefixIgnoringCase(let p):
            return range.count >= p.count && Self.equalsIgnoringCase(b, at: range.lowerBound, p)
        }
    }

    func matches(_ s: String) -> Bool {
        var s = s
        return s.withUTF8 { u in matches(UnsafeRawBufferPointer(u), 0..<u.count) }
    }

    var isExactOrRegex: Bool {
        switch kind {
        case .prefix, .prefixIgnoringCase: return false
        default: return true
        }
    }
}

/// The `HTTPMatchRequest` conditions beyond uri, method and headers. Only a match that uses one
/// carries this, so the others pay a single nil check.
struct ExtendedMatch: Sendable {
    /// nil matcher: present is enough (Istio's `exact: ""`).
    let queryParams: [(name: String, matcher: BytesMatcher?)]
    let authority: BytesMatcher?
    /// `scheme` is decided once per scheme: does it match "http", "https"?
    let schemeMatchesHTTP: Bool
    let schemeMatchesHTTPS: Bool
    let port: Int?
    let withoutHeaders: [(name: String, matcher: BytesMatcher)]

    init?(_ m: RouteMatch) throws {
        guard !m.isBasic else { return nil }
        queryParams = try m.queryParams.sorted { $0.key < $1.key }.map { name, match -> (name: String, matcher: BytesMatcher?) in
            if case .exact("") = match { return (name, nil) }
            return (name, try BytesMatcher(match))
        }
        authority = try m.authority.map { try BytesMatcher($0) }
        schemeMatchesHTTP = try m.scheme.map { try BytesMatcher($0).matches("http") } ?? true
        schemeMatchesHTTPS = try m.scheme.map { try BytesMatcher($0).matches("https") } ?? true
        port = m.port
        withoutHeaders = try m.withoutHeaders.sorted { $0.key < $1.key }.map { ($0.key, try BytesMatcher($0.value)) }
    }

    func matches(_ head: MessageHead, _ b: UnsafeRawBufferPointer, localPort: Int, secure: Bool) -> Bool {
        guard secure ? schemeMatchesHTTPS : schemeMatchesHTTP else { return false }
        if let port, port != localPort { return false }
        if let authority {
            guard let host = head.host, authority.matches(b, host) else { return false }
        }
        for (name, matcher) in queryParams {
            guard let value = head.queryParameter(name, in: b) else { return false }
            if let matcher, !matcher.matches(value) { return false }
        }
        for (name, matcher) in withoutHeaders {
            // Envoy's invert_match: an absent header passes.
            if let value = head.value(of: name, in: b), matcher.matches(value) { return false }
        }
        return true
    }
}

/// One `match` block: every condition present must hold.
struct CompiledMatch: Sendable {
    let uri: BytesMatcher?
    let method: BytesMatcher?
    let headers: [(name: String, matcher: BytesMatcher)]
    let extended: ExtendedMatch?

    init(_ m: RouteMatch) throws {
        uri = try m.uri.map { try BytesMatcher($0, ignoringCase: m.ignoreUriCase) }
        method = try m.method.map { try BytesMatcher($0) }
        headers = try m.headers.sorted { $0.key < $1.key }.map { ($0.key, try BytesMatcher($0.value)) }
        extended = try ExtendedMatch(m)
    }

    /// `secure`: the request came over TLS (its scheme is https).
    @inline(__always)
    func matches(_ head: MessageHead, _ b: UnsafeRawBufferPointer, localPort: Int, secure: Bool) -> Bool {
        if let uri {
            // Envoy: prefix sees the whole :path, exact and regex the path without its query.
            var range = head.target
            if uri.isExactOrRegex, let q = range.firstIndex(where: { b[$0] == UInt8(ascii: "?") }) {
                range = range.lowerBound..<q
            }
            if !uri.matches(b, range) { return false }
        }
        if let method, !method.matches(b, head.method) { return false }
        for (name, matcher) in headers {
            guard let value = head.value(of: name, in: b), matcher.matches(value) else { return false }
        }
        if let extended, !extended.matches(head, b, localPort: localPort, secure: secure) { return false }
        return true
    }

    /// How much of the target this match took, for prefix_rewrite: the prefix or exact path, the
    /// path without its query for a regex, and "/" without a uri match (Istio's catch-all prefix).
    func matchedLength(_ head: MessageHead, _ b: UnsafeRawBufferPointer) -> Int {
        guard let uri else { return 1 }
        if let n = uri.matchedLength { return n }
        var end = head.target.lowerBound
        while end < head.target.upperBound && b[end] != UInt8(ascii: "?") { end += 1 }
        return end - head.target.lowerBound
    }
}

/// Per-route counters that outlive reloads (keyed by route name).
public final class RouteStats: Sendable {
    public let name: String
    let rateLimited = ManagedAtomic<Int>(0)
    let rateLimitOK = ManagedAtomic<Int>(0)
    /// Per-client buckets dropped for room while not full (their clients start over full).
    let rateLimitClientsEvicted = ManagedAtomic<Int>(0)
    let faultDelays = ManagedAtomic<Int>(0)
    let faultAborts = ManagedAtomic<Int>(0)
    /// Shadow copies started, and shadows not sent: the body was past what the gateway keeps
    /// (`RouterFilter.maxReplayBytes`), or the event loop had `ShadowRequest.maxInFlight` already.
    let mirrorSent = ManagedAtomic<Int>(0)
    let mirrorDropped = ManagedAtomic<Int>(0)
    /// `upstream_rq_time` of the requests this route sent (as the cluster's, Envoy's
    /// route-level `vhost.<vhost>.route.<stat_prefix>.upstream_rq_time`).
    public let upstreamRqTime: LatencyHistogram
    init(name: String, histogramRows: HistogramRows = .any) {
        self.name = name
        upstreamRqTime = LatencyHistogram(rows: histogramRows)
    }

    public var histograms: [(String, LatencyHistogram)] { [("upstream_rq_time", upstreamRqTime)] }

    /// Envoy's route-level counters (`RouteStats` and the code stats charged to a route),
    /// bumped on every request the route sends, so kept in per-loop rows like the cluster's.
    /// Each counts as the cluster counter of the same name does, for this route's tries.
    enum Upstream: Int, CaseIterable {
        case upstream_rq_total, upstream_rq_completed
        case upstream_rq_1xx, upstream_rq_2xx, upstream_rq_3xx, upstream_rq_4xx, upstream_rq_5xx
        case upstream_rq_timeout, upstream_rq_retry
    }

    private let upstream = ShardedCounters(count: Upstream.allCases.count)

    @inline(__always) func inc(_ c: Upstream, row: Int) { upstream.increment(c.rawValue, row: row) }
    subscript(_ c: Upstream) -> Int { upstream[c.rawValue] }

    @inline(__always) func countResponse(_ status: Int, row: Int) {
        assert(Upstream.upstream_rq_5xx.rawValue - Upstream.upstream_rq_1xx.rawValue == 4, "the class counters are in order")
        guard let codeClass = responseCodeClass(status) else { return }
        upstream.increment(Upstream.upstream_rq_1xx.rawValue + codeClass, row: row)
    }

    public var counters: [(String, Int)] {
        Upstream.allCases.map { ("\($0)", self[$0]) } + [
            ("local_rate_limit.rate_limited", rateLimited.load(ordering: .relaxed)),
            ("local_rate_limit.ok", rateLimitOK.load(ordering: .relaxed)),
            ("local_rate_limit.clients_evicted", rateLimitClientsEvicted.load(ordering: .relaxed)),
            ("fault.delays_injected", faultDelays.load(ordering: .relaxed)),
            ("fault.aborts_injected", faultAborts.load(ordering: .relaxed)),
            ("mirror.sent", mirrorSent.load(ordering: .relaxed)),
            ("mirror.dropped", mirrorDropped.load(ordering: .relaxed)),
        ]
    }
}

/// A route ready to serve: matchers compiled, destinations resolved to clusters, policies built.
public final class Route: Sendable {
    public let config: RouteConfig
    let matches: [CompiledMatch]
    let destinations: [(cluster: ClusterSnapshot, weight: Int)]
    let totalWeight: Int
    let rateLimiter: LocalRateLimiter?
    let stats: RouteStats
    // Read by every request; held here so reading them copies no part of `config`.
    let timeout: TimeAmount?
    let perTryTimeout: TimeAmount?
    let retries: RetryPolicyConfig
    let hasFault: Bool
    /// Shadow clusters with their share in millionths (Envoy's runtime_fraction denominator).
    let mirrors: [(cluster: ClusterSnapshot, millionths: Int)]
    let hasMirrors: Bool
    /// headers, rewrite, redirect, directResponse, corsPolicy; nil when the route has none.
    let transforms: CompiledTransforms?

    init(config: RouteConfig, clusters: [String: ClusterSnapshot], stats: RouteStats, rateLimiter: LocalRateLimiter?) throws {
        self.config = config
        matches = try config.matches.map(CompiledMatch.init)
        let present = config.destinations.filter { clusters[$0.host] != nil }
        destinations = present.map { (clusters[$0.host]!, $0.weight) }
        transforms = try CompiledTransforms(config, destinations: present.map(\.headers))
        totalWeight = destinations.reduce(0) { $0 + $1.weight }
        self.rateLimiter = rateLimiter
        self.stats = stats
        timeout = config.timeout
        perTryTimeout = config.retries.perTryTimeout
        retries = config.retries
        hasFault = config.fault != nil
        mirrors = config.mirrors.compactMap { m in
            clusters[m.host].map { ($0, Int((m.percentage * 10_000).rounded())) }
        }
        hasMirrors = !mirrors.isEmpty
    }

    /// Several `match` entries are OR-ed: the first that holds decides.
    @inline(__always)
    func matches(_ head: MessageHead, _ b: UnsafeRawBufferPointer, localPort: Int = 0, secure: Bool = false) -> Bool {
        if matches.isEmpty { return true }
        for m in matches where m.matches(head, b, localPort: localPort, secure: secure) { return true }
        return false
    }

    /// Some `match` entry has a `name` (then the access log names the entry that matched).
    var hasNamedMatches: Bool { transforms?.namedMatches ?? false }

    /// "<route>.<match name>" for the entry that took this request, as Istio names Envoy's routes.
    func logName(_ head: MessageHead, _ b: UnsafeRawBufferPointer, localPort: Int, secure: Bool = false) -> String {
        for (i, m) in matches.enumerated() where m.matches(head, b, localPort: localPort, secure: secure) {
            return config.matches[i].name.map { "\(config.name).\($0)" } ?? config.name
        }
        return config.name
    }

    /// How much of the target the match that took this request matched (prefix_rewrite).
    func matchedPathLength(_ head: MessageHead, _ b: UnsafeRawBufferPointer, localPort: Int, secure: Bool = false) -> Int {
        for m in matches where m.matches(head, b, localPort: localPort, secure: secure) { return m.matchedLength(head, b) }
        return 1
    }

    /// Weighted choice among the route's destinations.
    @inline(__always)
    func pickDestination(_ random: inout FastRandom) -> ClusterSnapshot? {
        pickDestinationIndex(&random).map { destinations[$0].cluster }
    }

    /// The index in `destinations` of a weighted choice (the index finds its header operations).
    @inline(__always)
    func pickDestinationIndex(_ random: inout FastRandom) -> Int? {
        if destinations.count == 1 { return 0 }
        guard !destinations.isEmpty else { return nil }
        guard totalWeight > 0 else { return 0 }
        var r = random.below(totalWeight)
        for (i, d) in destinations.enumerated() {
            if r < d.weight { return i }
            r -= d.weight
        }
        return destinations.count - 1
    }
}

/// First match wins. When the request's Host names a VirtualService's `hosts`, only that
/// service's routes are considered (Envoy's virtual host); otherwise every route, in file order.
public struct RouteTable: Sendable {
    let routes: [Route]
    /// nil when no VirtualService names hosts (the usual gateway): a copy of the table then copies
    /// no dictionary, whose empty form is one object every event loop shares.
    let byHost: [String: [Route]]?
    /// Some match asks for the port the request came in on (`port`, which the caller then looks up).
    let usesLocalPort: Bool

    /// Some match asks for the request's scheme (then the caller asks whether it came over TLS).
    let usesScheme: Bool

    init(routes: [Route]) {
        self.routes = routes
        usesLocalPort = routes.contains { $0.config.matches.contains { $0.port != nil } }
        usesScheme = routes.contains { $0.config.matches.contains { $0.scheme != nil } }
        var byHost: [String: [Route]] = [:]
        for r in routes {
            for h in r.config.virtualHosts where h != "*" { byHost[h.lowercased(), default: []].append(r) }
        }
        self.byHost = byHost.isEmpty ? nil : byHost
    }

    @inline(__always)
    func match(_ head: MessageHead, _ b: UnsafeRawBufferPointer, localPort: Int = 0, secure: Bool = false) -> Route? {
        if let byHost, let hostRange = head.host {
            var end = hostRange.upperBound
            if let colon = hostRange.lastIndex(where: { b[$0] == UInt8(ascii: ":") }) { end = colon }
            let host = String(decoding: UnsafeRawBufferPointer(rebasing: b[hostRange.lowerBound..<end]), as: UTF8.self)
                .lowercased()
            if let named = byHost[host] {
                for r in named where r.matches(head, b, localPort: localPort, secure: secure) { return r }
                return nil
            }
        }
        // Walked in place: a copy of the array would retain its storage, which every event loop shares.
        for r in routes where r.matches(head, b, localPort: localPort, secure: secure) { return r }
        return nil
    }
}
