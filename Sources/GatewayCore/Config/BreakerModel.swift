import NIOCore

/// What a cluster's connection-pool limits do to a closed-loop load (each client sends its next
/// request when the last one is answered, as siege and `loadtest` do), for an upstream that takes
/// a fixed time per request: at which client concurrency requests start to wait for a connection
/// (pending) and to be shed with 503 UO, and the most requests per second the limits let through.
///
/// The arithmetic follows the pool this gateway runs (`Cluster/HostPool.swift`, Envoy's):
/// - A request takes an idle connection, else it waits in the pending queue if
///   `http1MaxPendingRequests` allows, else it is shed (503 UO, `upstream_rq_pending_overflow`).
///   A waiting request gets a new connection if `maxConnections` allows.
/// - HTTP/1.1 carries one request per connection at a time, so the requests served at once are
///   the connections, bounded by `http2MaxRequests` (active requests; past it a request is shed,
///   also counted as pending overflow).
/// - Each event loop keeps its own pool per endpoint, and a pool with no connection may open one
///   even at `maxConnections`: with L loops and E endpoints up to `maxConnections + L×E − 1`
///   connections can be open. With one loop and one endpoint the figures are exact; otherwise
///   they are a range, depending on how the clients' connections fall on the loops.
/// - `maxRequestsPerConnection: 1` opens a new connection for every request, and a request is
///   pending until its connection is open (Envoy's pending: waiting for a *ready* connection).
///   Requests that arrive together (a closed-loop load's users start together and, held by the
///   same upstream latency, stay in step) are all pending at once, so more than
///   `http1MaxPendingRequests` of them arriving at once are shed even while connections are free:
///   the knee comes at `http1MaxPendingRequests + 1` at the latest. Istio's circuit-breaking
///   task shows it: with the same limits, two fortio connections already see some 503s.
/// - With keep-alive (`maxRequestsPerConnection` not 1), a connection that finishes a response
///   goes straight to the first waiting request, so a queue of `http1MaxPendingRequests` never
///   overflows until one more client arrives.
/// - Throughput ceiling, by Little's law (requests in service = throughput × latency):
///   served at once / latency.
public struct BreakerModel: Sendable, Equatable {
    public var maxConnections: Int
    public var http1MaxPendingRequests: Int
    public var http2MaxRequests: Int
    public var maxRequestsPerConnection: Int
    /// Endpoints of the cluster (each event loop has a pool per endpoint).
    public var endpoints: Int
    /// The gateway's event loops (`gateway serve --threads`).
    public var eventLoops: Int

    public init(maxConnections: Int, http1MaxPendingRequests: Int, http2MaxRequests: Int = ConnectionPoolSettings.unlimited,
                maxRequestsPerConnection: Int = 0, endpoints: Int = 1, eventLoops: Int = 1) {
        precondition(maxConnections >= 1 && http1MaxPendingRequests >= 1 && http2MaxRequests >= 1, "the loader refuses limits below 1")
        self.maxConnections = maxConnections
        self.http1MaxPendingRequests = http1MaxPendingRequests
        self.http2MaxRequests = http2MaxRequests
        self.maxRequestsPerConnection = maxRequestsPerConnection
        self.endpoints = max(1, endpoints)
        self.eventLoops = max(1, eventLoops)
    }

    public init(_ cp: ConnectionPoolSettings, endpoints: Int, eventLoops: Int) {
        self.init(maxConnections: cp.maxConnections, http1MaxPendingRequests: cp.http1MaxPendingRequests,
                  http2MaxRequests: cp.http2MaxRequests, maxRequestsPerConnection: cp.maxRequestsPerConnection,
                  endpoints: endpoints, eventLoops: eventLoops)
    }

    /// A new connection per request.
    public var connectionPerRequest: Bool { maxRequestsPerConnection == 1 }

    /// Connection pools that may each open a first connection at the limit.
    public var pools: Int { endpoints * eventLoops }

    /// What happens at one ceiling of open connections.
    public struct Thresholds: Sendable, Equatable {
        /// Requests served at once.
        public var served: Int
        /// The first concurrency at which requests wait for a connection to free up
        /// (`upstream_cx_overflow` counts); nil: requests past `served` are shed, not queued.
        public var queueFrom: Int?
        /// The knee: the first concurrency at which requests are shed with 503 UO.
        public var shedFrom: Int
    }

    func thresholds(connections k: Int) -> Thresholds {
        let p = http1MaxPendingRequests, r = http2MaxRequests
        if r < k {
            // Active requests bind first: the one past them gets a connection and is refused
            // when it would start on it. (At r == k a waiting request only ever gets a connection
            // another request has left, so it never finds the active requests full.)
            // With a connection per request it is pending while that connection opens, so
            // arrivals together past the pending limit are shed even sooner.
            return Thresholds(served: r, queueFrom: nil, shedFrom: connectionPerRequest ? min(r + 1, p + 1) : r + 1)
        }
        if connectionPerRequest {
            return Thresholds(served: k, queueFrom: k + 1, shedFrom: min(p + 1, k + p + 1))
        }
        return Thresholds(served: k, queueFrom: k + 1, shedFrom: k + p + 1)
    }

    /// With every busy connection on one pool and every other pool opening its first one anyway.
    public var most: Thresholds { thresholds(connections: saturatingAdd(maxConnections, pools - 1)) }
    /// With the connections spread as the limit counts them (one loop, one endpoint: exact).
    public var least: Thresholds { thresholds(connections: maxConnections) }

    /// True when the figures do not depend on how connections fall on loops and endpoints.
    public var exact: Bool { least == most }

    /// Requests per second the limits let through at most: served at once / latency (Little's
    /// law), from the lower to the upper ceiling of open connections.
    public func ceiling(latency seconds: Double) -> ClosedRange<Double> {
        precondition(seconds > 0)
        return Double(least.served) / seconds...Double(most.served) / seconds
    }

    /// What is expected at `concurrency` clients (with the lower connection ceiling, `least`).
    public enum Regime: String, Sendable { case served, queued, shed }

    public func regime(concurrency n: Int) -> Regime {
        let t = least
        if n >= t.shedFrom { return .shed }
        if let q = t.queueFrom, n >= q { return .queued }
        return .served
    }

    /// Successful requests per second expected at `concurrency` clients: each is in service for
    /// `latency`, at most `served` at once (from the lower to the upper connection ceiling).
    public func rate(concurrency n: Int, latency seconds: Double) -> ClosedRange<Double> {
        Double(min(n, least.served)) / seconds...Double(min(n, most.served)) / seconds
    }

    func saturatingAdd(_ a: Int, _ b: Int) -> Int { a > Int.max - b ? Int.max : a + b }

    /// `50ms`, `0.05s`, `1s` (Istio's duration spellings), or a bare number of milliseconds.
    public static func parseLatency(_ text: String) -> Double? {
        if let ms = Double(text), ms > 0, ms.isFinite { return ms / 1000 }
        guard let t = IstioDuration.parse(text), t.nanoseconds > 0 else { return nil }
        return Double(t.nanoseconds) / 1e9
    }

    /// The explanation `gateway validate --explain` prints for one cluster.
    public func explain(latency seconds: Double) -> [String] {
        let unlimited = ConnectionPoolSettings.unlimited
        func n(_ v: Int) -> String { v >= unlimited ? "unlimited" : "\(v)" }
        func range(_ a: Int, _ b: Int) -> String { a == b ? "\(a)" : "\(a) to \(b)" }
        func rate(_ v: Double) -> String { v >= 1000 ? String(Int(v.rounded())) : String(format: "%.1f", v) }
        var out: [String] = []
        let lo = least, hi = most
        let ms = seconds * 1000
        let latencyText = ms == ms.rounded() ? "\(Int(ms))ms" : String(format: "%.3gms", ms)
        out.append("limits: maxConnections \(n(maxConnections)), http1MaxPendingRequests \(n(http1MaxPendingRequests)), "
            + "http2MaxRequests \(n(http2MaxRequests)), maxRequestsPerConnection \(maxRequestsPerConnection == 0 ? "unlimited" : "\(maxRequestsPerConnection)"); "
            + "\(endpoints) endpoint\(endpoints == 1 ? "" : "s") × \(eventLoops) event loop\(eventLoops == 1 ? "" : "s"); upstream latency \(latencyText)")
        if maxConnections >= unlimited && http1MaxPendingRequests >= unlimited && http2MaxRequests >= unlimited {
            out.append("no limit is set: requests are never queued nor shed by the breaker")
            return out
        }
        out.append("served at once: \(range(lo.served, hi.served)) request\(hi.served == 1 ? "" : "s")"
            + (exact ? "" : " (each of the \(pools) pools may open its first connection at the limit)"))
        if let q = lo.queueFrom, let qh = hi.queueFrom {
            out.append("queue (pending) from: concurrency \(range(q, qh))")
        } else {
            out.append("queue (pending) from: never; past \(n(http2MaxRequests)) active requests (http2MaxRequests) requests are shed at once")
        }
        out.append("knee (first 503 UO) at: concurrency \(range(lo.shedFrom, hi.shedFrom))")
        if connectionPerRequest {
            out.append("why: maxRequestsPerConnection 1 opens a connection per request and a request is pending until its "
                + "connection is open, so clients that send together need a pending slot each: more than "
                + "\(n(http1MaxPendingRequests)) at once are shed (upstream_rq_pending_overflow)")
        } else if lo.queueFrom != nil {
            out.append("why: \(range(lo.served, hi.served)) in service + \(n(http1MaxPendingRequests)) pending; the next "
                + "concurrent request finds the pending queue full (upstream_rq_pending_overflow)")
        }
        let c = ceiling(latency: seconds)
        out.append("throughput ceiling (Little's law, served at once / latency): \(c.lowerBound == c.upperBound ? rate(c.lowerBound) : "\(rate(c.lowerBound)) to \(rate(c.upperBound))") req/s")
        return out
    }
}
