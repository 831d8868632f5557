import Foundation
import NIOCore

/// Turns the Istio-shaped JSON (SPEC §4) into a checked `GatewayConfig`: Istio's defaults filled
/// in, durations parsed, references resolved. Anything it does not understand is refused with the
/// JSON path, never ignored: a typo in a breaker setting must not silently mean "unlimited".
public enum ConfigLoader {
    static let maxUInt32 = ConnectionPoolSettings.unlimited

    public static func load(contentsOf path: String) throws -> GatewayConfig {
        try decode(readConfigFile(path))
    }

    public static func decode(_ bytes: [UInt8]) throws -> GatewayConfig {
        let any: Any
        do {
            any = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            throw ConfigError(path: "", reason: "not valid JSON (\(error.localizedDescription))")
        }
        let root = try JSONNode(value: any, path: "").object(
            allowed: ["listener", "admin", "serviceEntries", "virtualServices", "destinationRules"])
        let (listener, downstream) = try listenerBlock(root["listener"])
        let admin = try bindAddress(root["admin"], default: BindAddress(address: "127.0.0.1", port: 9901))

        var hosts: [String: HostConfig] = [:]
        for entry in try root["serviceEntries"]?.array() ?? [] {
            let (spec, _) = try unwrapKubernetes(entry, kind: "ServiceEntry")
            for host in try serviceEntry(spec) {
                if hosts[host.name] != nil {
                    throw spec.node().fail("host '\(host.name)' is declared by more than one serviceEntry")
                }
                hosts[host.name] = host
            }
        }
        var ruled: Set<String> = []
        for entry in try root["destinationRules"]?.array() ?? [] {
            let (spec, _) = try unwrapKubernetes(entry, kind: "DestinationRule")
            let (hostNode, policy) = try destinationRule(spec)
            let name = try resolveHost(try hostNode.nonEmptyString(), hosts, at: hostNode)
            if ruled.contains(name) { throw hostNode.fail("host '\(name)' already has a destinationRule") }
            ruled.insert(name)
            hosts[name]!.trafficPolicy = policy
        }
        var routes: [RouteConfig] = []
        for (i, entry) in (try root["virtualServices"]?.array() ?? []).enumerated() {
            let (spec, name) = try unwrapKubernetes(entry, kind: "VirtualService")
            routes += try virtualService(spec, name: name ?? "vs\(i)", hosts: hosts)
        }
        var names: Set<String> = []
        for r in routes {
            if names.contains(r.name) { throw ConfigError(path: "virtualServices", reason: "duplicate route name '\(r.name)'") }
            names.insert(r.name)
        }
        return GatewayConfig(listener: listener, admin: admin, hosts: hosts, routes: routes, downstream: downstream)
    }

    // MARK: pieces

    static func bindAddress(_ node: JSONNode?, default d: BindAddress, also extra: [String] = []) throws -> BindAddress {
        guard let node else { return d }
        let o = try node.object(allowed: ["address", "port"] + extra)
        return BindAddress(address: try o["address"]?.nonEmptyString() ?? d.address,
                           port: try o["port"]?.int(in: 0...65535) ?? d.port)
    }

    /// `listener`: where to listen, and what one client may hold (Envoy's names). A duration of
    /// "0s" turns a timeout off, as in Envoy.
    static func listenerBlock(_ node: JSONNode?) throws -> (BindAddress, DownstreamLimits) {
        let limitKeys = [
            "requestHeadersTimeout", "streamIdleTimeout", "idleTimeout", "maxConnectionDuration", "maxConnections",
            "maxRequestHeadersKb", "maxHeadersCount", "perConnectionBufferLimitBytes",
        ]
        let address = try bindAddress(node, default: BindAddress(address: "0.0.0.0", port: 8080), also: limitKeys)
        var d = DownstreamLimits()
        guard let node else { return (address, d) }
        let o = try node.object(allowed: ["address", "port"] + limitKeys)
        func timeout(_ key: String, _ value: inout TimeAmount?) throws {
            guard let n = o[key] else { return }
            let t = try n.duration(allowZero: true, min: .milliseconds(1))
            value = t.nanoseconds == 0 ? nil : t
        }
        try timeout("requestHeadersTimeout", &d.requestHeadersTimeout)
        try timeout("streamIdleTimeout", &d.streamIdleTimeout)
        try timeout("idleTimeout", &d.idleTimeout)
        try timeout("maxConnectionDuration", &d.maxConnectionDuration)
        if let n = o["maxConnections"] { d.maxConnections = try n.int(in: 1...maxUInt32) }
        // Envoy's bounds: 1..8192 KiB of head, at least one header.
        if let n = o["maxRequestHeadersKb"] { d.maxRequestHeadersKb = try n.int(in: 1...8192) }
        if let n = o["maxHeadersCount"] { d.maxHeadersCount = try n.int(in: 1...maxUInt32) }
        if let n = o["perConnectionBufferLimitBytes"] { d.perConnectionBufferLimitBytes = try n.int(in: 1024...maxUInt32) }
        return (address, d)
    }

    /// A bare spec, or a whole Kubernetes object as `kubectl get -o json` prints it.
    static func unwrapKubernetes(_ node: JSONNode, kind: String) throws -> (JSONObject, String?) {
        guard let dict = node.value as? [String: Any] else { throw node.fail("expected an object, found \(JSONNode.describe(node.value))") }
        guard dict["apiVersion"] != nil || dict["kind"] != nil || dict["spec"] != nil else {
            return (JSONObject(dict: dict, path: node.path), nil)
        }
        let o = try node.object(allowed: ["apiVersion", "kind", "metadata", "spec", "status"])
        let k = try o.required("kind")
        guard try k.string() == kind else { throw k.fail("expected kind '\(kind)', found '\(try k.string())'") }
        if let api = o["apiVersion"] {
            let v = try api.string()
            guard v.hasPrefix("networking.istio.io/") else {
                throw api.fail("expected apiVersion networking.istio.io/v1 (or v1beta1, v1alpha3), found '\(v)'")
            }
        }
        var name: String? = nil
        if let meta = o["metadata"] {
            guard let m = meta.value as? [String: Any] else { throw meta.fail("expected an object") }
            name = m["name"] as? String
        }
        let spec = try o.required("spec")
        guard let specDict = spec.value as? [String: Any] else { throw spec.fail("expected an object") }
        return (JSONObject(dict: specDict, path: spec.path), name)
    }

    /// `delivery` matches `delivery` and `delivery.<ns>.svc.cluster.local`, as Istio's short names do.
    static func resolveHost(_ name: String, _ hosts: [String: HostConfig], at node: JSONNode) throws -> String {
        if hosts[name] != nil { return name }
        if let short = name.split(separator: ".").first.map(String.init), hosts[short] != nil { return short }
        for known in hosts.keys where known.split(separator: ".").first.map(String.init) == name { return known }
        throw node.fail("unknown host '\(name)': no serviceEntry declares it (known: \(hosts.keys.sorted().joined(separator: ", ")))")
    }

    static func serviceEntry(_ spec: JSONObject) throws -> [HostConfig] {
        let o = try spec.node().object(allowed: ["host", "hosts", "ports", "endpoints", "resolution", "location", "addresses", "exportTo"])
        var names: [String] = []
        if let h = o["host"] { names.append(try h.nonEmptyString()) }
        if let hs = o["hosts"] { names += try hs.array().map { try $0.nonEmptyString() } }
        guard !names.isEmpty else { throw ConfigError(path: o.node().child("host"), reason: "required field is missing (host or hosts)") }
        var servicePorts: [(name: String?, number: Int)] = []
        for p in try o["ports"]?.array() ?? [] {
            let po = try p.object(allowed: ["number", "name", "protocol", "targetPort"])
            servicePorts.append((try po["name"]?.string(), try po.required("number").int(in: 1...65535)))
        }
        if let r = o["resolution"] {
            let v = try r.string()
            guard ["STATIC", "DNS", "NONE", "DNS_ROUND_ROBIN"].contains(v) else {
                throw r.fail("unknown resolution '\(v)' (allowed: STATIC, DNS, DNS_ROUND_ROBIN, NONE)")
            }
        }
        var endpoints: [Endpoint] = []
        for e in try o["endpoints"]?.array() ?? [] {
            let eo = try e.object(allowed: ["address", "port", "ports", "weight", "labels", "network", "locality", "serviceAccount"])
            let address = try eo.required("address").nonEmptyString()
            var port: Int? = try eo["port"]?.int(in: 1...65535)
            if port == nil, let ports = eo["ports"] {
                guard let dict = ports.value as? [String: Any] else { throw ports.fail("expected an object of port name → number") }
                let byName = try dict.keys.sorted().map { ($0, try JSONNode(value: dict[$0]!, path: ports.child($0)).int(in: 1...65535)) }
                port = byName.first { name, _ in servicePorts.contains { $0.name == name } }?.1 ?? byName.first?.1
            }
            port = port ?? servicePorts.first?.number
            guard let port else { throw e.fail("endpoint needs a port (port, ports, or the serviceEntry's ports)") }
            endpoints.append(Endpoint(address: address, port: port, weight: try eo["weight"]?.int(in: 1...maxUInt32) ?? 1))
        }
        if endpoints.isEmpty {
            // Istio's DNS resolution without endpoints: the host name itself, on the service port.
            guard let p = servicePorts.first else {
                throw ConfigError(path: o.node().child("endpoints"), reason: "needs at least one endpoint (or ports with DNS resolution)")
            }
            return names.map { HostConfig(name: $0, endpoints: [Endpoint(address: $0, port: p.number)]) }
        }
        return names.map { HostConfig(name: $0, endpoints: endpoints) }
    }

    static func notSupported(_ o: JSONObject, _ keys: [String]) throws {
        for k in keys { if let n = o[k] { throw n.fail("not supported by this gateway") } }
    }

    static func destinationRule(_ spec: JSONObject) throws -> (JSONNode, TrafficPolicy) {
        let o = try spec.node().object(allowed: ["host", "trafficPolicy", "subsets", "exportTo", "workloadSelector"])
        try notSupported(o, ["subsets", "workloadSelector"])
        let host = try o.required("host")
        guard let tp = o["trafficPolicy"] else { return (host, TrafficPolicy()) }
        let t = try tp.object(allowed: ["connectionPool", "outlierDetection", "loadBalancer", "portLevelSettings", "tls", "tunnel", "proxyProtocol"])
        try notSupported(t, ["portLevelSettings", "tls", "tunnel", "proxyProtocol"])
        var policy = TrafficPolicy()
        if let cp = t["connectionPool"] { policy.connectionPool = try connectionPool(cp) }
        if let od = t["outlierDetection"] { policy.outlierDetection = try outlierDetection(od) }
        if let lb = t["loadBalancer"] {
            let l = try lb.object(allowed: ["simple", "consistentHash", "localityLbSetting", "warmupDurationSecs", "warmup"])
            try notSupported(l, ["consistentHash", "localityLbSetting", "warmupDurationSecs", "warmup"])
            if let s = l["simple"] {
                let v = try s.string()
                switch v {
                case "ROUND_ROBIN", "UNSPECIFIED": policy.loadBalancer = .roundRobin
                case "LEAST_REQUEST", "LEAST_CONN": policy.loadBalancer = .leastRequest
                case "RANDOM": policy.loadBalancer = .random
                case "PASSTHROUGH": throw s.fail("PASSTHROUGH is not supported by this gateway")
                default: throw s.fail("unknown load balancer '\(v)' (allowed: ROUND_ROBIN, LEAST_REQUEST, RANDOM)")
                }
            }
        }
        return (host, policy)
    }

    static func connectionPool(_ node: JSONNode) throws -> ConnectionPoolSettings {
        let o = try node.object(allowed: ["tcp", "http"])
        var s = ConnectionPoolSettings()
        if let tcp = o["tcp"] {
            let t = try tcp.object(allowed: ["maxConnections", "connectTimeout", "tcpKeepalive", "maxConnectionDuration", "idleTimeout"])
            try notSupported(t, ["maxConnectionDuration"])
            if let n = t["maxConnections"] { s.maxConnections = try n.int(in: 1...maxUInt32) }
            if let n = t["connectTimeout"] { s.connectTimeout = try n.duration(min: .milliseconds(1)) }
            if let n = t["tcpKeepalive"] {
                let k = try n.object(allowed: ["probes", "time", "interval"])
                var keepalive = TCPKeepalive()
                // Linux's limits: TCP_KEEPCNT 1...127, TCP_KEEPIDLE and TCP_KEEPINTVL 1...32767 s.
                if let p = k["probes"] { keepalive.probes = try p.int(in: 1...127) }
                func seconds(_ d: JSONNode) throws -> TimeAmount {
                    let t = try d.duration(min: .seconds(1))
                    guard t <= .seconds(32767) else { throw d.fail("at most 32767s, the kernel's limit") }
                    return t
                }
                if let d = k["time"] { keepalive.time = try seconds(d) }
                if let d = k["interval"] { keepalive.interval = try seconds(d) }
                s.tcpKeepalive = keepalive
            }
            if let n = t["idleTimeout"] { s.idleTimeout = try n.duration() }
        }
        if let http = o["http"] {
            let h = try http.object(allowed: [
                "http1MaxPendingRequests", "http2MaxRequests", "maxRequestsPerConnection", "maxRetries", "idleTimeout",
                "h2UpgradePolicy", "useClientProtocol", "maxConcurrentStreams",
            ])
            if let n = h["http1MaxPendingRequests"] { s.http1MaxPendingRequests = try n.int(in: 1...maxUInt32) }
            if let n = h["http2MaxRequests"] { s.http2MaxRequests = try n.int(in: 1...maxUInt32) }
            if let n = h["maxRequestsPerConnection"] { s.maxRequestsPerConnection = try n.int(in: 0...maxUInt32) }
            if let n = h["maxRetries"] { s.maxRetries = try n.int(in: 0...maxUInt32) }
            if let n = h["idleTimeout"] { s.idleTimeout = try n.duration() }
            if let n = h["h2UpgradePolicy"] {
                let v = try n.string()
                guard ["DEFAULT", "DO_NOT_UPGRADE"].contains(v) else { throw n.fail("only DEFAULT and DO_NOT_UPGRADE: upstreams are HTTP/1.1") }
            }
            if let n = h["useClientProtocol"], try n.bool() { throw n.fail("not supported: upstreams are HTTP/1.1") }
            if let n = h["maxConcurrentStreams"] {
                throw n.fail("not supported until upstreams speak HTTP/2: every upstream connection is HTTP/1.1, one request at a time")
            }
        }
        return s
    }

    static func outlierDetection(_ node: JSONNode) throws -> OutlierDetectionSettings {
        let o = try node.object(allowed: [
            "consecutive5xxErrors", "consecutiveGatewayErrors", "consecutiveErrors", "interval", "baseEjectionTime",
            "maxEjectionPercent", "minHealthPercent", "splitExternalLocalOriginErrors", "consecutiveLocalOriginFailures",
        ])
        try notSupported(o, ["consecutiveLocalOriginFailures"])
        if let n = o["splitExternalLocalOriginErrors"], try n.bool() { throw n.fail("not supported by this gateway") }
        var s = OutlierDetectionSettings()
        if let n = o["consecutive5xxErrors"] { s.consecutive5xxErrors = try n.int(in: 0...maxUInt32) }
        // Istio's deprecated consecutiveErrors counted 502/503/504: the gateway errors.
        if let n = o["consecutiveErrors"] { s.consecutiveGatewayErrors = try n.int(in: 0...maxUInt32) }
        if let n = o["consecutiveGatewayErrors"] { s.consecutiveGatewayErrors = try n.int(in: 0...maxUInt32) }
        if let n = o["interval"] { s.interval = try n.duration(min: .milliseconds(1)) }
        if let n = o["baseEjectionTime"] { s.baseEjectionTime = try n.duration(min: .milliseconds(1)) }
        if let n = o["maxEjectionPercent"] { s.maxEjectionPercent = try n.int(in: 0...100) }
        if let n = o["minHealthPercent"] { s.minHealthPercent = try n.int(in: 0...100) }
        return s
    }

    static func virtualService(_ spec: JSONObject, name: String, hosts: [String: HostConfig]) throws -> [RouteConfig] {
        let o = try spec.node().object(allowed: ["hosts", "gateways", "http", "tcp", "tls", "exportTo"])
        try notSupported(o, ["tcp", "tls"])
        let vhosts = try o["hosts"]?.array().map { try $0.nonEmptyString() } ?? []
        if let g = o["gateways"] { _ = try g.array().map { try $0.string() } }
        var routes: [RouteConfig] = []
        for (j, h) in (try o.required("http").array()).enumerated() {
            routes.append(try httpRoute(h, defaultName: "\(name).\(j)", vhosts: vhosts, hosts: hosts))
        }
        return routes
    }

    static func httpRoute(_ node: JSONNode, defaultName: String, vhosts: [String], hosts: [String: HostConfig]) throws -> RouteConfig {
        let o = try node.object(allowed: [
            "name", "match", "route", "timeout", "retries", "fault", "localRateLimit",
            "headers", "rewrite", "redirect", "mirror", "mirrorPercentage", "corsPolicy", "delegate", "directResponse",
        ])
        try notSupported(o, ["mirror", "mirrorPercentage", "delegate"])
        var r = RouteConfig(name: try o["name"]?.nonEmptyString() ?? defaultName, virtualHosts: vhosts, destinations: [])
        r.matches = try o["match"]?.array().map(routeMatch) ?? []
        r.transforms = try routeTransforms(o)
        // A redirect or directResponse route is answered by the gateway: it has no `route`.
        let answeredLocally = r.transforms.redirect != nil || r.transforms.directResponse != nil
        let dests = answeredLocally ? [] : try o.required("route").array()
        guard answeredLocally || !dests.isEmpty else { throw ConfigError(path: o.node().child("route"), reason: "needs at least one destination") }
        var weights = 0
        for d in dests {
            let dobj = try d.object(allowed: ["destination", "weight", "headers"])
            let dest = try dobj.required("destination").object(allowed: ["host", "port", "subset"])
            try notSupported(dest, ["subset"])
            let hostNode = try dest.required("host")
            let host = try resolveHost(try hostNode.nonEmptyString(), hosts, at: hostNode)
            if let p = dest["port"] {
                let po = try p.object(allowed: ["number"])
                _ = try po.required("number").int(in: 1...65535)
            }
            let weight: Int
            if let w = dobj["weight"] {
                weight = try w.int(in: 0...100)
            } else if dests.count == 1 {
                weight = 100
            } else {
                throw ConfigError(path: dobj.node().child("weight"), reason: "required when a route has several destinations")
            }
            weights += weight
            r.destinations.append(WeightedDestination(host: host, weight: weight,
                                                      headers: try dobj["headers"].map(headersConfig) ?? HeadersConfig()))
        }
        if dests.count > 1 && weights != 100 {
            throw ConfigError(path: o.node().child("route"), reason: "destination weights must add up to 100, found \(weights)")
        }
        if let t = o["timeout"] {
            let d = try t.duration(allowZero: true)
            r.timeout = d.nanoseconds == 0 ? nil : d
        }
        if let rt = o["retries"] { r.retries = try retries(rt) }
        if let f = o["fault"] { r.fault = try fault(f) }
        if let l = o["localRateLimit"] { r.localRateLimit = try localRateLimit(l) }
        return r
    }

    static func stringMatch(_ node: JSONNode) throws -> StringMatch {
        let o = try node.object(allowed: ["exact", "prefix", "regex"])
        guard o.dict.count == 1, let key = o.dict.keys.first, let v = o[key] else {
            throw node.fail("needs exactly one of exact, prefix, regex")
        }
        let s = try v.string()
        switch key {
        case "exact": return .exact(s)
        case "prefix": return .prefix(s)
        default:
            do { _ = try Regex(s) } catch { throw v.fail("invalid regex '\(s)': \(error)") }
            return .regex(s)
        }
    }

    static func routeMatch(_ node: JSONNode) throws -> RouteMatch {
        let o = try node.object(allowed: [
            "name", "uri", "method", "headers", "scheme", "authority", "port", "queryParams", "ignoreUriCase",
            "withoutHeaders", "sourceLabels", "gateways", "sourceNamespace", "statPrefix",
        ])
        var m = RouteMatch()
        if let u = o["uri"] { m.uri = try stringMatch(u) }
        if let me = o["method"] { m.method = try stringMatch(me) }
        if let h = o["headers"] {
            guard let dict = h.value as? [String: Any] else { throw h.fail("expected an object of header name → match") }
            for key in dict.keys.sorted() {
                m.headers[key.lowercased()] = try stringMatch(JSONNode(value: dict[key]!, path: h.child(key)))
            }
        }
        try routeMatchExtras(o, &m)
        return m
    }

    /// Envoy's retry_on names; numbers are retriable status codes, as Istio accepts them.
    static let retryConditions: [String: RetryOn] = [
        "5xx": .fiveXX, "gateway-error": .gatewayError, "connect-failure": .connectFailure, "reset": .reset,
        "refused-stream": .refusedStream, "retriable-4xx": .retriable4xx, "retriable-status-codes": .retriableStatusCodes,
        "unavailable": .unavailable, "cancelled": .cancelled,
    ]

    static func retries(_ node: JSONNode) throws -> RetryPolicyConfig {
        let o = try node.object(allowed: ["attempts", "perTryTimeout", "retryOn", "retryRemoteLocalities", "retryIgnorePreviousHosts", "backoff"])
        try notSupported(o, ["backoff"])
        if let n = o["retryRemoteLocalities"] { _ = try n.bool() }
        if let n = o["retryIgnorePreviousHosts"] { _ = try n.bool() }
        var p = RetryPolicyConfig.istioDefault
        p.attempts = try o.required("attempts").int(in: 0...1000)
        if let t = o["perTryTimeout"] { p.perTryTimeout = try t.duration() }
        if let on = o["retryOn"] {
            let text = try on.string()
            var set: RetryOn = []
            var codes: [Int] = []
            for raw in text.split(separator: ",") {
                let item = raw.trimmingCharacters(in: .whitespaces)
                if let code = Int(item) {
                    guard (100...599).contains(code) else { throw on.fail("retriable status code \(code) is not 100...599") }
                    codes.append(code)
                    set.insert(.retriableStatusCodes)
                } else if let c = retryConditions[item] {
                    set.insert(c)
                } else {
                    throw on.fail("unknown retry condition '\(item)' (allowed: \(retryConditions.keys.sorted().joined(separator: ", ")), or a status code)")
                }
            }
            p.retryOn = set
            p.retriableStatusCodes = codes
        }
        return p
    }

    static func percentage(_ o: JSONObject) throws -> Double {
        if let p = o["percentage"] {
            let po = try p.object(allowed: ["value"])
            let v = try po.required("value").number()
            guard (0...100).contains(v) else { throw ConfigError(path: po.node().child("value"), reason: "must be 0...100, found \(v)") }
            return v
        }
        if let p = o["percent"] { return Double(try p.int(in: 0...100)) }
        return 100
    }

    static func fault(_ node: JSONNode) throws -> FaultConfig {
        let o = try node.object(allowed: ["delay", "abort"])
        var f = FaultConfig()
        if let d = o["delay"] {
            let dobj = try d.object(allowed: ["fixedDelay", "percentage", "percent", "exponentialDelay"])
            try notSupported(dobj, ["exponentialDelay"])
            f.delay = .init(fixedDelay: try dobj.required("fixedDelay").duration(), percentage: try percentage(dobj))
        }
        if let a = o["abort"] {
            let aobj = try a.object(allowed: ["httpStatus", "percentage", "grpcStatus", "http2Error"])
            try notSupported(aobj, ["grpcStatus", "http2Error"])
            f.abort = .init(httpStatus: try aobj.required("httpStatus").int(in: 200...599), percentage: try percentage(aobj))
        }
        return f
    }

    /// About 100 bytes per tracked client: a million is 100 MB per route.
    static let maxTrackedClientsLimit = 1_000_000

    static func localRateLimit(_ node: JSONNode) throws -> LocalRateLimitConfig {
        let o = try node.object(allowed: ["tokenBucket", "perClient", "maxTrackedClients"])
        let t = try o.required("tokenBucket").object(allowed: ["maxTokens", "tokensPerFill", "fillInterval"])
        let maxTokens = try t.required("maxTokens").int(in: 1...maxUInt32)
        var c = LocalRateLimitConfig(
            maxTokens: maxTokens, tokensPerFill: try t["tokensPerFill"]?.int(in: 1...maxUInt32) ?? maxTokens,
            fillInterval: try t.required("fillInterval").duration(min: .milliseconds(1)))
        if let p = o["perClient"] {
            let v = try p.string()
            guard v == "remoteAddress" else { throw p.fail("only \"remoteAddress\" is supported, found '\(v)'") }
            c.perClient = true
        }
        if let n = o["maxTrackedClients"] {
            c.maxTrackedClients = try n.int(in: 1...maxTrackedClientsLimit)
            guard c.perClient else { throw n.fail("only applies with \"perClient\": \"remoteAddress\" (a route-wide bucket tracks no clients)") }
        }
        return c
    }
}
