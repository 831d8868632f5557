import NIOCore

/// What `gateway validate` prints: the limits in force per host with Istio's defaults filled in,
/// and the warnings someone tuning a circuit breaker needs.
public enum ConfigReport {
    static func limit(_ v: Int) -> String { v >= ConnectionPoolSettings.unlimited ? "\(v) (unlimited)" : "\(v)" }

    static func duration(_ t: TimeAmount?) -> String {
        guard let t else { return "none" }
        let ns = t.nanoseconds
        if ns % 3_600_000_000_000 == 0 { return "\(ns / 3_600_000_000_000)h" }
        if ns % 60_000_000_000 == 0 { return "\(ns / 60_000_000_000)m" }
        if ns % 1_000_000_000 == 0 { return "\(ns / 1_000_000_000)s" }
        if ns % 1_000_000 == 0 { return "\(ns / 1_000_000)ms" }
        return "\(ns / 1000)us"
    }

    static func match(_ m: StringMatch) -> String {
        switch m {
        case .exact(let s): return "= \(s)"
        case .prefix(let s): return "\(s)*"
        case .regex(let s): return "~ \(s)"
        }
    }

    public static func render(_ config: GatewayConfig) -> String {
        var out = "listener \(config.listener.address):\(config.listener.port), admin \(config.admin.address):\(config.admin.port)\n"
        let d = config.downstream
        out += "  requestHeadersTimeout \(duration(d.requestHeadersTimeout)), streamIdleTimeout \(duration(d.streamIdleTimeout)), "
            + "idleTimeout \(duration(d.idleTimeout)), maxConnectionDuration \(duration(d.maxConnectionDuration))\n"
        out += "  maxConnections \(d.maxConnections.map(String.init) ?? "\(d.effectiveMaxConnections) (half the descriptor limit)"), "
            + "maxRequestHeadersKb \(d.maxRequestHeadersKb), maxHeadersCount \(d.maxHeadersCount), "
            + "perConnectionBufferLimitBytes \(d.perConnectionBufferLimitBytes)"
            + (d.deferAccept ? ", deferAccept on" : "") + "\n"
        out += gatewayListenersText(config)
        for (name, h) in config.hosts.sorted(by: { $0.key < $1.key }) {
            let cp = h.trafficPolicy.connectionPool
            if h.subset == nil && h.name == h.service {
                out += "\nhost \(name)\n"
            } else {
                out += "\ncluster \(name): host \(h.service)" + (h.subset.map { " subset \($0)" } ?? "") + (h.port.map { " port \($0)" } ?? "") + "\n"
            }
            let rows: [(String, String)] = [
                ("endpoints", h.endpoints.isEmpty ? "none (every request gets 503 UH)" : h.endpoints.map(endpointText).joined(separator: ", ")),
                ("resolution", h.resolution == .static ? "STATIC"
                    : "\(h.resolution.rawValue): names resolved at start and every \(duration(config.dnsRefreshRate))"
                        + (h.resolution == .dnsRoundRobin ? ", one host at the first address" : ", a host per address")),
                ("loadBalancer", loadBalancerText(h.trafficPolicy)),
                ("maxConnections", limit(cp.maxConnections)),
                ("http1MaxPendingRequests", limit(cp.http1MaxPendingRequests)),
                ("http2MaxRequests", limit(cp.http2MaxRequests)),
                ("maxRequestsPerConnection", cp.maxRequestsPerConnection == 0 ? "0 (unlimited)" : "\(cp.maxRequestsPerConnection)"),
                ("maxRetries", retryLimitText(h.trafficPolicy)),
                ("connectTimeout", duration(cp.connectTimeout)),
                ("idleTimeout", duration(cp.idleTimeout)),
                ("maxConnectionDuration", duration(cp.maxConnectionDuration)),
                ("outlierDetection", h.trafficPolicy.outlierDetection.map { od in
                    "consecutive5xxErrors \(od.consecutive5xxErrors == 0 ? "off" : "\(od.consecutive5xxErrors)"), "
                        + "consecutiveGatewayErrors \(od.consecutiveGatewayErrors == 0 ? "off" : "\(od.consecutiveGatewayErrors)"), "
                        + "interval \(duration(od.interval)), baseEjectionTime \(duration(od.baseEjectionTime)), "
                        + "maxEjectionPercent \(od.maxEjectionPercent), minHealthPercent \(od.minHealthPercent)"
                        + localOriginText(od)
                } ?? "off"),
            ]
            for (k, v) in rows + upstreamTLSRows(h.trafficPolicy) { out += "  \(k.padding(26))\(v)\n" }
        }
        out += "\nroutes (first match wins)\n"
        for r in config.routes {
            let m = r.matches.isEmpty ? "any request" : r.matches.map { m in
                var parts: [String] = []
                if let u = m.uri { parts.append("uri \(match(u))") }
                if let me = m.method { parts.append("method \(match(me))") }
                for (k, v) in m.headers.sorted(by: { $0.key < $1.key }) { parts.append("header \(k) \(match(v))") }
                parts += matchExtrasText(m)
                return parts.joined(separator: " and ")
            }.joined(separator: " or ")
            if r.destinations.isEmpty {
                // redirect or directResponse: no upstream, so no timeout or retries either.
                out += "  \(r.name): \(m) -> answered by the gateway\n"
            } else {
                out += "  \(r.name): \(m) -> \(r.destinations.map { "\(destinationText($0)) (\($0.weight)%)" }.joined(separator: ", "))\n"
                if r.destinations.count > 1 || r.destinations.contains(where: { $0.subset != nil }) {
                    // Which endpoints each share reaches: the split a canary is written for.
                    for d in r.destinations {
                        let endpoints = config.hosts[d.host]?.endpoints ?? []
                        out += "    \(d.weight)% of its requests go to \(destinationText(d)): "
                            + (endpoints.isEmpty ? "no endpoint (503 UH)" : "\(endpoints.count) endpoint\(endpoints.count == 1 ? "" : "s") (\(endpoints.map(\.description).joined(separator: ", ")))")
                            + (d.host == d.service ? "" : ", cluster \(d.host)") + "\n"
                    }
                }
                out += "    timeout \(duration(r.timeout)); retries \(r.retries.attempts)"
                if r.retries.attempts > 0 {
                    out += " on \(retryOnText(r.retries)), perTryTimeout \(duration(r.retries.perTryTimeout))"
                        + retryExtrasText(r.retries)
                }
                out += "\n"
            }
            if let f = r.fault {
                if let d = f.delay { out += "    fault delay \(duration(d.fixedDelay)) for \(d.percentage)%\n" }
                if let a = f.abort {
                    out += "    fault abort \(a.grpcStatus.map { "gRPC status \($0)" } ?? String(a.httpStatus)) for \(a.percentage)%\n"
                }
            }
            if let rl = r.localRateLimit {
                out += "    rate limit \(rl.maxTokens) tokens, +\(rl.tokensPerFill) every \(duration(rl.fillInterval))"
                out += rl.perClient ? " per client address (at most \(rl.maxTrackedClients) tracked)\n" : " for the route\n"
            }
            for m in r.mirrors {
                out += "    mirror \(m.percentage)% of requests to \(m.host) (Host suffixed -shadow, answers dropped; "
                    + "not for bodies over \(RouterFilter.maxReplayBytes) bytes)\n"
            }
            out += transformsText(r)
        }
        return out
    }

    /// `validate --explain`: each cluster's breaker model (`BreakerModel`) for closed-loop
    /// clients against an upstream answering in `latency` seconds.
    public static func explain(_ config: GatewayConfig, latency: Double, eventLoops: Int, only: String? = nil) -> String {
        var out = "breaker model: closed-loop clients (each sends when answered), all to one cluster, upstream latency "
            + "\(duration(.nanoseconds(Int64((latency * 1e9).rounded()))))\n"
        for (name, h) in config.hosts.sorted(by: { $0.key < $1.key }) where only == nil || only == name {
            let model = BreakerModel(h.trafficPolicy.connectionPool, endpoints: h.endpoints.count, eventLoops: eventLoops)
            out += "\ncluster \(name)\n"
            for line in model.explain(latency: latency) { out += "  \(line)\n" }
        }
        return out
    }

    static func endpointText(_ e: Endpoint) -> String {
        var extras: [String] = []
        if e.weight != 1 { extras.append("weight \(e.weight)") }
        if !e.labels.isEmpty { extras.append(e.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")) }
        return extras.isEmpty ? "\(e)" : "\(e) (\(extras.joined(separator: "; ")))"
    }

    static func destinationText(_ d: WeightedDestination) -> String {
        d.service + (d.subset.map { " subset \($0)" } ?? "") + (d.port.map { " port \($0)" } ?? "")
    }

    static func retryOnText(_ p: RetryPolicyConfig) -> String {
        let names = ConfigLoader.retryConditions.filter { p.retryOn.contains($0.value) }.map(\.key).sorted()
        return (names + p.retriableStatusCodes.map(String.init)).joined(separator: ",")
    }

    public static func warnings(_ config: GatewayConfig) -> [String] {
        var w: [String] = []
        let unlimited = ConnectionPoolSettings.unlimited
        // A host is in use when a route or a mirror reaches any of its clusters (its subsets are
        // there to be picked from, not all at once).
        let reached = Set(config.routes.flatMap { r in r.destinations.map(\.host) + r.mirrors.map(\.host) })
        for (name, h) in config.hosts.sorted(by: { $0.key < $1.key }) {
            let cp = h.trafficPolicy.connectionPool
            if cp.maxConnections < unlimited && cp.http1MaxPendingRequests < unlimited {
                let capacity = cp.maxConnections + cp.http1MaxPendingRequests
                w.append("\(name): maxConnections \(cp.maxConnections) + http1MaxPendingRequests \(cp.http1MaxPendingRequests): "
                    + "a \(ordinal(capacity + 1)) concurrent request is shed with 503 UO (upstream_rq_pending_overflow); "
                    + "as in Envoy, each event loop's pool may still open its first connection at the limit")
            }
            if cp.maxRequestsPerConnection == 1 {
                w.append("\(name): maxRequestsPerConnection 1 disables upstream keep-alive: every request opens a new connection"
                    + (cp.maxConnections < unlimited
                        ? ", and with maxConnections \(cp.maxConnections) it waits (pending) until the previous one has closed" : ""))
            }
            if cp.http2MaxRequests < cp.maxConnections && cp.http2MaxRequests < unlimited {
                w.append("\(name): http2MaxRequests \(cp.http2MaxRequests) < maxConnections \(cp.maxConnections): "
                    + "active requests, not connections, are the limit")
            }
            if let od = h.trafficPolicy.outlierDetection {
                if od.consecutive5xxErrors == 1 || od.consecutiveGatewayErrors == 1 {
                    w.append("\(name): a single 5xx ejects an endpoint for \(duration(od.baseEjectionTime)) (× times ejected)")
                }
                if h.endpoints.count == 1 && (od.consecutive5xxErrors > 0 || od.consecutiveGatewayErrors > 0) {
                    w.append("\(name): its only endpoint can be ejected; while it is, every request gets 503 UH (no healthy upstream)")
                } else if od.maxEjectionPercent < 100 && h.endpoints.count * od.maxEjectionPercent < 100 {
                    w.append("\(name): maxEjectionPercent \(od.maxEjectionPercent) of \(h.endpoints.count) endpoints is under one; "
                        + "as in Envoy, one endpoint can still be ejected")
                }
            }
            if h.name == h.service, !config.hosts.values.contains(where: { $0.service == h.service && reached.contains($0.name) }) {
                w.append("\(name): no route sends traffic to it")
            } else if reached.contains(name), h.endpoints.isEmpty, let subset = h.subset {
                w.append("\(name): subset \(subset) selects no endpoint of \(h.service): every request routed to it gets 503 UH")
            }
        }
        for r in config.routes {
            let p = r.retries
            if p.attempts > 0 {
                for d in r.destinations {
                    // A retry budget replaces maxRetries (Envoy ignores max_retries when retry_budget is set).
                    if let tp = config.hosts[d.host]?.trafficPolicy, tp.retryBudget == nil,
                       case let max = tp.connectionPool.maxRetries, max < p.attempts {
                        w.append("route \(r.name): retries.attempts \(p.attempts) > \(d.host) maxRetries \(max): "
                            + "retries past \(max) in flight are refused (upstream_rq_retry_overflow)")
                    }
                }
                if let t = r.timeout, let per = p.perTryTimeout, per >= t {
                    w.append("route \(r.name): perTryTimeout \(duration(per)) >= timeout \(duration(t)): no retry can start before the route times out")
                } else if let t = r.timeout, let per = p.perTryTimeout,
                          per.nanoseconds * Int64(p.attempts + 1) > t.nanoseconds {
                    w.append("route \(r.name): \(p.attempts + 1) tries × perTryTimeout \(duration(per)) exceed timeout \(duration(t)): the last tries may be cut short (504 UT)")
                }
            }
            if let f = r.fault, f.abort?.percentage == 100 {
                w.append("route \(r.name): fault abort at 100%: no request reaches the upstream")
            }
        }
        return w
    }

    static func ordinal(_ n: Int) -> String {
        let suffix: String
        switch (n % 10, n % 100) {
        case (1, let t) where t != 11: suffix = "st"
        case (2, let t) where t != 12: suffix = "nd"
        case (3, let t) where t != 13: suffix = "rd"
        default: suffix = "th"
        }
        return "\(n)\(suffix)"
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
}
