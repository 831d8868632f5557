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
    }
    let kind: Kind

    init(_ m: StringMatch, lowercased: Bool = false) throws {
        func bytes(_ s: String) -> [UInt8] { Array((lowercased ? s.lowercased() : s).utf8) }
        switch m {
        case .exact(let s): kind = .exact(bytes(s))
        case .prefix(let s): kind = .prefix(bytes(s))
        case .regex(let p): kind = .regex(try Regex(p))
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
        }
    }

    func matches(_ s: String) -> Bool {
        var s = s
        return s.withUTF8 { u in matches(UnsafeRawBufferPointer(u), 0..<u.count) }
    }

    var isExactOrRegex: Bool {
        if case .prefix = kind { return false }
        return true
    }
}

/// One `match` block: every condition present must hold.
struct CompiledMatch: Sendable {
    let uri: BytesMatcher?
    let method: BytesMatcher?
    let headers: [(name: String, matcher: BytesMatcher)]

    init(_ m: RouteMatch) throws {
        uri = try m.uri.map { try BytesMatcher($0) }
        method = try m.method.map { try BytesMatcher($0) }
        headers = try m.headers.sorted { $0.key < $1.key }.map { ($0.key, try BytesMatcher($0.value)) }
    }

    @inline(__always)
    func matches(_ head: MessageHead, _ b: UnsafeRawBufferPointer) -> Bool {
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
        return true
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
    init(name: String) { self.name = name }

    public var counters: [(String, Int)] {
        [
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
    let hasFault: Bool
    /// Shadow clusters with their share in millionths (Envoy's runtime_fraction denominator).
    let mirrors: [(cluster: ClusterSnapshot, millionths: Int)]
    let hasMirrors: Bool

    init(config: RouteConfig, clusters: [String: ClusterSnapshot], stats: RouteStats, rateLimiter: LocalRateLimiter?) throws {
        self.config = config
        matches = try config.matches.map(CompiledMatch.init)
        destinations = config.destinations.compactMap { d in clusters[d.host].map { ($0, d.weight) } }
        totalWeight = destinations.reduce(0) { $0 + $1.weight }
        self.rateLimiter = rateLimiter
        self.stats = stats
        timeout = config.timeout
        perTryTimeout = config.retries.perTryTimeout
        hasFault = config.fault != nil
        mirrors = config.mirrors.compactMap { m in
            clusters[m.host].map { ($0, Int((m.percentage * 10_000).rounded())) }
        }
        hasMirrors = !mirrors.isEmpty
    }

    @inline(__always)
    func matches(_ head: MessageHead, _ b: UnsafeRawBufferPointer) -> Bool {
        if matches.isEmpty { return true }
        for m in matches where m.matches(head, b) { return true }
        return false
    }

    /// Weighted choice among the route's destinations.
    @inline(__always)
    func pickDestination(_ random: inout FastRandom) -> ClusterSnapshot? {
        if destinations.count == 1 { return destinations[0].cluster }
        guard totalWeight > 0 else { return destinations.first?.cluster }
        var r = random.below(totalWeight)
        for d in destinations {
            if r < d.weight { return d.cluster }
            r -= d.weight
        }
        return destinations.last?.cluster
    }
}

/// First match wins. When the request's Host names a VirtualService's `hosts`, only that
/// service's routes are considered (Envoy's virtual host); otherwise every route, in file order.
public struct RouteTable: Sendable {
    let routes: [Route]
    let byHost: [String: [Route]]

    init(routes: [Route]) {
        self.routes = routes
        var byHost: [String: [Route]] = [:]
        for r in routes {
            for h in r.config.virtualHosts where h != "*" { byHost[h.lowercased(), default: []].append(r) }
        }
        self.byHost = byHost
    }

    @inline(__always)
    func match(_ head: MessageHead, _ b: UnsafeRawBufferPointer) -> Route? {
        var candidates = routes
        if !byHost.isEmpty, let hostRange = head.host {
            var end = hostRange.upperBound
            if let colon = hostRange.lastIndex(where: { b[$0] == UInt8(ascii: ":") }) { end = colon }
            let host = String(decoding: UnsafeRawBufferPointer(rebasing: b[hostRange.lowerBound..<end]), as: UTF8.self)
                .lowercased()
            if let named = byHost[host] { candidates = named }
        }
        for r in candidates where r.matches(head, b) { return r }
        return nil
    }
}
