import NIOCore

/// The checked config as JSON, for `/config_dump`: every default filled in, durations as Istio strings.
enum ConfigJSON {
    static func duration(_ t: TimeAmount?) -> String { t.map { "\"\(ConfigReport.duration($0))\"" } ?? "null" }

    static func match(_ m: StringMatch) -> String {
        switch m {
        case .exact(let s): return "{\"exact\":\(jsonString(s))}"
        case .prefix(let s): return "{\"prefix\":\(jsonString(s))}"
        case .regex(let s): return "{\"regex\":\(jsonString(s))}"
        }
    }

    static func object(_ pairs: [(String, String)]) -> String {
        "{" + pairs.map { "\(jsonString($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }

    /// A route destination as written (host, subset, port), with the cluster it resolved to.
    static func destination(_ d: WeightedDestination) -> String {
        var dest: [(String, String)] = [("host", jsonString(d.service))]
        if let s = d.subset { dest.append(("subset", jsonString(s))) }
        if let p = d.port { dest.append(("port", object([("number", "\(p)")]))) }
        return object([("destination", object(dest)), ("weight", "\(d.weight)"), ("cluster", jsonString(d.host))])
    }

    static func encode(_ c: GatewayConfig) -> String {
        let hosts = c.hosts.sorted { $0.key < $1.key }.map { (_, h) -> String in
            let cp = h.trafficPolicy.connectionPool
            let od = h.trafficPolicy.outlierDetection.map { o in
                object([
                    ("consecutive5xxErrors", "\(o.consecutive5xxErrors)"),
                    ("consecutiveGatewayErrors", "\(o.consecutiveGatewayErrors)"),
                    ("interval", duration(o.interval)), ("baseEjectionTime", duration(o.baseEjectionTime)),
                    ("maxEjectionPercent", "\(o.maxEjectionPercent)"), ("minHealthPercent", "\(o.minHealthPercent)"),
                ] + localOriginSplit(o))
            } ?? "null"
            return object([
                ("cluster", jsonString(h.name)),
                ("host", jsonString(h.service)),
                ("port", h.port.map(String.init) ?? "null"),
                ("subset", h.subset.map(jsonString) ?? "null"),
                ("resolution", jsonString(h.resolution.rawValue)),
                // What upstream connections speak: HTTP/1.1, HTTP/2, or the client's protocol.
                ("upstreamProtocol", jsonString(h.trafficPolicy.upstreamProtocol.rawValue)),
                ("endpoints", "[" + h.endpoints.map { e in
                    object([("address", jsonString(e.address)), ("port", "\(e.port)"), ("weight", "\(e.weight)")]
                        + (e.labels.isEmpty ? [] : [("labels", object(e.labels.sorted { $0.key < $1.key }.map { ($0.key, jsonString($0.value)) }))]))
                }.joined(separator: ",") + "]"),
                ("trafficPolicy", object([
                    ("connectionPool", object([
                        ("tcp", object([("maxConnections", "\(cp.maxConnections)"), ("connectTimeout", duration(cp.connectTimeout)),
                                        ("maxConnectionDuration", duration(cp.maxConnectionDuration))]
                            + (cp.tcpKeepalive.map { k in
                                [("tcpKeepalive", object(
                                    (k.probes.map { [("probes", "\($0)")] } ?? [])
                                    + (k.time.map { [("time", duration($0))] } ?? [])
                                    + (k.interval.map { [("interval", duration($0))] } ?? [])))]
                            } ?? []))),
                        ("http", object([
                            ("http1MaxPendingRequests", "\(cp.http1MaxPendingRequests)"),
                            ("http2MaxRequests", "\(cp.http2MaxRequests)"),
                            ("maxRequestsPerConnection", "\(cp.maxRequestsPerConnection)"),
                            ("maxRetries", "\(cp.maxRetries)"), ("idleTimeout", duration(cp.idleTimeout)),
                            ("h2UpgradePolicy", jsonString(cp.h2UpgradePolicy.rawValue)),
                            ("useClientProtocol", cp.useClientProtocol ? "true" : "false"),
                            ("maxConcurrentStreams", "\(cp.maxConcurrentStreams)"),
                        ])),
                    ])),
                    ("outlierDetection", od),
                    ("loadBalancer", loadBalancer(h.trafficPolicy)),
                ] + retryBudget(h.trafficPolicy))),
            ])
        }
        let routes = c.routes.map { r -> String in
            let matches = r.matches.map { m in
                var p: [(String, String)] = []
                if let u = m.uri { p.append(("uri", match(u))) }
                if let me = m.method { p.append(("method", match(me))) }
                if !m.headers.isEmpty {
                    p.append(("headers", object(m.headers.sorted { $0.key < $1.key }.map { ($0.key, match($0.value)) })))
                }
                return object(p + matchExtras(m))
            }
            var retryOn: [String] = []
            let names: [(RetryOn, String)] = [
                (.fiveXX, "5xx"), (.gatewayError, "gateway-error"), (.connectFailure, "connect-failure"), (.reset, "reset"),
                (.refusedStream, "refused-stream"), (.retriable4xx, "retriable-4xx"),
                (.retriableStatusCodes, "retriable-status-codes"), (.unavailable, "unavailable"), (.cancelled, "cancelled"),
            ]
            for (flag, name) in names where r.retries.retryOn.contains(flag) { retryOn.append(name) }
            retryOn += r.retries.retriableStatusCodes.map(String.init)
            var p: [(String, String)] = [
                ("name", jsonString(r.name)),
                ("hosts", "[" + r.virtualHosts.map(jsonString).joined(separator: ",") + "]"),
                ("match", "[" + matches.joined(separator: ",") + "]"),
                ("route", "[" + r.destinations.map(destination).joined(separator: ",") + "]"),
                ("timeout", duration(r.timeout)),
                ("retries", object([
                    ("attempts", "\(r.retries.attempts)"), ("perTryTimeout", duration(r.retries.perTryTimeout)),
                    ("retryOn", jsonString(retryOn.joined(separator: ","))),
                ] + retryExtras(r.retries))),
            ]
            if let f = r.fault {
                var fp: [(String, String)] = []
                if let d = f.delay { fp.append(("delay", object([("fixedDelay", duration(d.fixedDelay)), ("percentage", object([("value", "\(d.percentage)")]))]))) }
                if let a = f.abort {
                    fp.append(("abort", object([("httpStatus", "\(a.httpStatus)"), ("grpcStatus", a.grpcStatus.map { "\($0)" } ?? "null"),
                                                ("percentage", object([("value", "\(a.percentage)")]))])))
                }
                p.append(("fault", object(fp)))
            }
            if let rl = r.localRateLimit {
                p.append(("localRateLimit", object([
                    ("tokenBucket", object([("maxTokens", "\(rl.maxTokens)"), ("tokensPerFill", "\(rl.tokensPerFill)"), ("fillInterval", duration(rl.fillInterval))])),
                    ("perClient", rl.perClient ? "\"remoteAddress\"" : "null"),
                ] + (rl.perClient ? [("maxTrackedClients", "\(rl.maxTrackedClients)")] : []))))
            }
            if !r.mirrors.isEmpty {
                p.append(("mirrors", "[" + r.mirrors.map { m in
                    object([("destination", object([("host", jsonString(m.host))])), ("percentage", object([("value", "\(m.percentage)")]))])
                }.joined(separator: ",") + "]"))
            }
            return object(p + transforms(r))
        }
        let sections: [(String, String)] = [
            ("listener", object([
                ("address", jsonString(c.listener.address)), ("port", "\(c.listener.port)"),
                ("requestHeadersTimeout", duration(c.downstream.requestHeadersTimeout)),
                ("streamIdleTimeout", duration(c.downstream.streamIdleTimeout)),
                ("idleTimeout", duration(c.downstream.idleTimeout)),
                ("maxConnectionDuration", duration(c.downstream.maxConnectionDuration)),
                ("maxConnections", "\(c.downstream.effectiveMaxConnections)"),
                ("maxRequestHeadersKb", "\(c.downstream.maxRequestHeadersKb)"),
                ("maxHeadersCount", "\(c.downstream.maxHeadersCount)"),
                ("perConnectionBufferLimitBytes", "\(c.downstream.perConnectionBufferLimitBytes)"),
                ("deferAccept", "\(c.downstream.deferAccept)"),
            ])),
            ("admin", object([("address", jsonString(c.admin.address)), ("port", "\(c.admin.port)")])),
            ("tracing", object([
                ("otlpEndpoint", c.tracing.otlpEndpoint.map { jsonString($0.description) } ?? "null"),
                ("sampling", "\(c.tracing.sampling)"), ("serviceName", jsonString(c.tracing.serviceName)),
            ])),
            ("hosts", "[" + hosts.joined(separator: ",") + "]"),
            ("routes", "[" + routes.joined(separator: ",") + "]"),
        ]
        return object(sections + tlsSections(c))
    }
}
