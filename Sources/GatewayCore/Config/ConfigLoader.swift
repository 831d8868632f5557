import Foundation
import NIOCore
import TraceWire

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
        let (root, objects) = try sections(JSONNode(value: any, path: ""))
        let (listener, downstream) = try listenerBlock(root?["listener"])
        let admin = try bindAddress(root?["admin"], default: BindAddress(address: "127.0.0.1", port: 9901))

        let workloads = try objects.workloadEntries.map(workloadEntryObject)
        var services: [String: ServiceDeclaration] = [:]
        for entry in objects.serviceEntries {
            let (spec, _) = try unwrapKubernetes(entry, kind: "ServiceEntry")
            for service in try serviceEntry(spec, workloads: workloads) {
                if services[service.name] != nil {
                    throw spec.node().fail("host '\(service.name)' is declared by more than one serviceEntry")
                }
                services[service.name] = service
            }
        }
        var rules: [String: DestinationRuleDeclaration] = [:]
        for entry in objects.destinationRules {
            let (spec, _) = try unwrapKubernetes(entry, kind: "DestinationRule")
            let (hostNode, rule) = try destinationRule(spec)
            let name = try resolveHost(try hostNode.nonEmptyString(), known: services.keys, at: hostNode)
            if rules[name] != nil { throw hostNode.fail("host '\(name)' already has a destinationRule") }
            try checkSubsets(rule, of: services[name]!)
            rules[name] = rule
        }
        var catalog = ClusterCatalog(services: services, rules: rules)
        var routes: [RouteConfig] = []
        for (i, entry) in objects.virtualServices.enumerated() {
            let (spec, name) = try unwrapKubernetes(entry, kind: "VirtualService")
            routes += try virtualService(spec, name: name ?? "vs\(i)", catalog: &catalog)
        }
        let hosts = catalog.clusters
        var names: Set<String> = []
        for r in routes {
            if names.contains(r.name) { throw ConfigError(path: "virtualServices", reason: "duplicate route name '\(r.name)'") }
            names.insert(r.name)
        }
        var config = GatewayConfig(listener: listener, admin: admin, hosts: hosts, routes: routes, downstream: downstream)
        config.gatewayListeners = try gatewayListeners(
            try objects.gateways.flatMap { try gateway($0, http2Offered: downstream.http2Offered) }, listener: listener,
            mainSpeaksH2C: downstream.http2 != nil)
        if let n = root?["dnsRefreshRate"] { config.dnsRefreshRate = try dnsRefreshRate(n) }
        if let n = root?["tracing"] { config.tracing = try tracing(n) }
        return config
    }

    // MARK: pieces

    /// The Istio objects of a config file, by kind, each node keeping its path in the file.
    struct Objects {
        var serviceEntries: [JSONNode] = []
        var workloadEntries: [JSONNode] = []
        var destinationRules: [JSONNode] = []
        var virtualServices: [JSONNode] = []
        var gateways: [JSONNode] = []
    }

    /// A gateway config (`listener`, `admin` and an array per kind), or the output of
    /// `kubectl get serviceentries,destinationrules,virtualservices -o json` as it is printed:
    /// a `List` whose `items` are sorted by their `kind` (listener and admin then take their defaults).
    static func sections(_ node: JSONNode) throws -> (JSONObject?, Objects) {
        var objects = Objects()
        if let dict = node.value as? [String: Any], dict["kind"] as? String == "List" {
            let list = try node.object(allowed: ["apiVersion", "kind", "metadata", "items"])
            for item in try list.required("items").array() {
                let kindNode = try item.object(allowed: ["apiVersion", "kind", "metadata", "spec", "status"]).required("kind")
                switch try kindNode.string() {
                case "ServiceEntry": objects.serviceEntries.append(item)
                case "WorkloadEntry": objects.workloadEntries.append(item)
                case "DestinationRule": objects.destinationRules.append(item)
                case "VirtualService": objects.virtualServices.append(item)
                case "Gateway": objects.gateways.append(item)
                case let other:
                    throw kindNode.fail("kind '\(other)' is not supported (allowed: ServiceEntry, WorkloadEntry, DestinationRule, VirtualService, Gateway)")
                }
            }
            return (nil, objects)
        }
        let root = try node.object(
            allowed: ["listener", "admin", "serviceEntries", "workloadEntries", "virtualServices", "destinationRules", "gateways",
                      "dnsRefreshRate", "tracing"])
        objects.serviceEntries = try root["serviceEntries"]?.array() ?? []
        objects.workloadEntries = try root["workloadEntries"]?.array() ?? []
        objects.destinationRules = try root["destinationRules"]?.array() ?? []
        objects.virtualServices = try root["virtualServices"]?.array() ?? []
        objects.gateways = try root["gateways"]?.array() ?? []
        return (root, objects)
    }

    static func bindAddress(_ node: JSONNode?, default d: BindAddress, also extra: [String] = []) throws -> BindAddress {
        guard let node else { return d }
        let o = try node.object(allowed: ["address", "port"] + extra)
        return BindAddress(address: try o["address"]?.nonEmptyString() ?? d.address,
                           port: try o["port"]?.int(in: 0...65535) ?? d.port)
    }

    /// `tracing`: `otlpEndpoint` (an http:// URL), `sampling` (percent), `serviceName`.
    static func tracing(_ node: JSONNode) throws -> TracingConfig {
        let o = try node.object(allowed: ["otlpEndpoint", "sampling", "serviceName"])
        var t = TracingConfig()
        if let n = o["otlpEndpoint"] {
            switch OTLPExporter.Endpoint.parse(try n.nonEmptyString()) {
            case .success(let e): t.otlpEndpoint = e
            case .failure(let e): throw n.fail(e.description)
            }
        }
        if let n = o["sampling"] {
            let v = try n.number()
            if v < 0 { throw n.fail("must be >= 0, found \(v)") }
            if v > 100 { throw n.fail("must be <= 100 (a percentage), found \(v)") }
            t.sampling = v
        }
        if let n = o["serviceName"] {
            let name = try n.nonEmptyString()
            guard name.utf8.count <= 256 else { throw n.fail("must be at most 256 bytes") }
            t.serviceName = name
        }
        return t
    }

    /// `listener`: where to listen, and what one client may hold (Envoy's names). A duration of
    /// "0s" turns a timeout off, as in Envoy.
    static func listenerBlock(_ node: JSONNode?) throws -> (BindAddress, DownstreamLimits) {
        let limitKeys = [
            "requestHeadersTimeout", "streamIdleTimeout", "idleTimeout", "maxConnectionDuration", "maxConnections",
            "maxRequestHeadersKb", "maxHeadersCount", "perConnectionBufferLimitBytes", "http2", "deferAccept",
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
        if let n = o["deferAccept"] { d.deferAccept = try n.bool() }
        if let n = o["http2"] {
            d.http2 = try http2Options(n)
            d.http2Offered = d.http2 != nil
        }
        return (address, d)
    }

    /// `listener.http2`: `{"enabled": true, ...}` lets clients speak HTTP/2 with prior knowledge
    /// on the plaintext port; bounds as Envoy's `http2_protocol_options`, for every HTTP/2
    /// connection (h2 over TLS too). `{"enabled": false}` turns HTTP/2 off everywhere: HTTPS
    /// servers then offer only `http/1.1`.
    static func http2Options(_ node: JSONNode) throws -> HTTP2Options? {
        let o = try node.object(allowed: ["enabled", "maxConcurrentStreams", "initialStreamWindowSize",
                                          "initialConnectionWindowSize"])
        guard try o["enabled"]?.bool() ?? true else { return nil }
        var h = HTTP2Options()
        if let n = o["maxConcurrentStreams"] { h.maxConcurrentStreams = try n.int(in: 1...2_147_483_647) }
        if let n = o["initialStreamWindowSize"] { h.initialStreamWindowSize = try n.int(in: 65535...2_147_483_647) }
        if let n = o["initialConnectionWindowSize"] { h.initialConnectionWindowSize = try n.int(in: 65535...2_147_483_647) }
        return h
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
    static func resolveHost<Names: Collection<String>>(_ name: String, known hosts: Names, at node: JSONNode) throws -> String {
        if hosts.contains(name) { return name }
        if let short = name.split(separator: ".").first.map(String.init), hosts.contains(short) { return short }
        for known in hosts where known.split(separator: ".").first.map(String.init) == name { return known }
        throw node.fail("unknown host '\(name)': no serviceEntry declares it (known: \(hosts.sorted().joined(separator: ", ")))")
    }

    static func serviceEntry(_ spec: JSONObject, workloads: [WorkloadEntryDeclaration] = []) throws -> [ServiceDeclaration] {
        let o = try spec.node().object(allowed: [
            "host", "hosts", "ports", "endpoints", "resolution", "location", "addresses", "exportTo", "workloadSelector",
            "subjectAltNames",
        ])
        try notSupported(o, ["subjectAltNames"], because: "set them on the DestinationRule's trafficPolicy.tls, which checks the upstream's certificate")
        var names: [String] = []
        if let h = o["host"] { names.append(try h.nonEmptyString()) }
        if let hs = o["hosts"] { names += try hs.array().map { try $0.nonEmptyString() } }
        guard !names.isEmpty else { throw ConfigError(path: o.node().child("host"), reason: "required field is missing (host or hosts)") }
        var servicePorts: [ServiceDeclaration.Port] = []
        for p in try o["ports"]?.array() ?? [] {
            let po = try p.object(allowed: ["number", "name", "protocol", "targetPort"])
            let number = try po.required("number").int(in: 1...65535)
            if servicePorts.contains(where: { $0.number == number }) { throw p.fail("port \(number) is declared twice") }
            var http2 = false
            if let proto = po["protocol"] {
                let v = try proto.string()
                // Istio's protocol names: HTTP2 and GRPC ports speak HTTP/2 with prior knowledge
                // upstream (Istio's IsHTTP2); the other non-HTTP ones are not proxied here.
                switch v.uppercased() {
                case "HTTP", "HTTP_PROXY": break
                case "HTTP2", "GRPC": http2 = true
                default:
                    throw proto.fail("protocol '\(v)' is not supported by this gateway: it proxies HTTP (allowed: HTTP, HTTP2, GRPC; for TLS to the endpoints, a DestinationRule's trafficPolicy.tls)")
                }
            }
            servicePorts.append(.init(name: try po["name"]?.string(), number: number,
                                      targetPort: try po["targetPort"]?.int(in: 1...65535), http2: http2))
        }
        if let l = o["location"] {
            let v = try l.string()
            guard ["MESH_EXTERNAL", "MESH_INTERNAL"].contains(v) else { throw l.fail("unknown location '\(v)' (allowed: MESH_EXTERNAL, MESH_INTERNAL)") }
        }
        if let a = o["addresses"] { _ = try a.array().map { try $0.nonEmptyString() } }
        if let e = o["exportTo"] { _ = try e.array().map { try $0.string() } }
        var endpoints: [ServiceDeclaration.EndpointDeclaration] = []
        for e in try o["endpoints"]?.array() ?? [] { endpoints.append(try workloadEntry(e, allowPort: true)) }
        if let sel = o["workloadSelector"] {
            if o["endpoints"] != nil { throw sel.fail("a serviceEntry has either endpoints or a workloadSelector, not both") }
            let so = try sel.object(allowed: ["labels"])
            let labels = try stringMap(try so.required("labels"))
            endpoints = workloads.filter { w in labels.allSatisfy { w.endpoint.labels[$0.key] == $0.value } }.map(\.endpoint)
        }
        for (e, node) in zip(endpoints, try o["endpoints"]?.array() ?? []) where e.port == nil && e.ports.isEmpty && servicePorts.isEmpty {
            throw node.fail("endpoint needs a port (port, ports, or the serviceEntry's ports)")
        }
        if endpoints.isEmpty && o["workloadSelector"] == nil {
            // Istio's DNS resolution without endpoints: the host name itself, on the service port.
            guard !servicePorts.isEmpty else {
                throw ConfigError(path: o.node().child("endpoints"), reason: "needs at least one endpoint (or ports with DNS resolution)")
            }
            let resolution = try resolution(o, addresses: [])
            return names.map { name in
                ServiceDeclaration(name: name, ports: servicePorts, resolution: resolution,
                                   endpoints: [.init(address: name, port: nil, ports: [:], weight: 1, labels: [:])])
            }
        }
        if endpoints.contains(where: { $0.port == nil && $0.ports.isEmpty }) && servicePorts.isEmpty {
            throw o.node().fail("a workload selected by workloadSelector needs ports, or the serviceEntry needs ports")
        }
        let resolution = try resolution(o, addresses: endpoints.map(\.address))
        return names.map { ServiceDeclaration(name: $0, ports: servicePorts, resolution: resolution, endpoints: endpoints) }
    }

    /// A ServiceEntry endpoint, or a WorkloadEntry's spec (the same shape). `port` is this
    /// gateway's shorthand for a one-port endpoint; a WorkloadEntry object has none.
    static func workloadEntry(_ node: JSONNode, allowPort: Bool) throws -> ServiceDeclaration.EndpointDeclaration {
        let eo = try node.object(allowed: ["address", "ports", "weight", "labels", "network", "locality", "serviceAccount"] + (allowPort ? ["port"] : []))
        try notSupported(eo, ["network"], because: "there is one network: every endpoint is dialled directly")
        try notSupported(eo, ["locality"], because: "locality-aware load balancing is not implemented, so a locality would change nothing")
        try notSupported(eo, ["serviceAccount"], because: "upstream connections are plaintext: there is no workload identity to check")
        let address = try eo.required("address").nonEmptyString()
        var ports: [String: Int] = [:]
        if let p = eo["ports"] {
            guard let dict = p.value as? [String: Any] else { throw p.fail("expected an object of port name → number") }
            for key in dict.keys.sorted() { ports[key] = try JSONNode(value: dict[key]!, path: p.child(key)).int(in: 1...65535) }
        }
        return .init(address: address, port: try eo["port"]?.int(in: 1...65535), ports: ports,
                     weight: try eo["weight"]?.int(in: 1...maxUInt32) ?? 1,
                     labels: try eo["labels"].map(stringMap) ?? [:])
    }

    /// A WorkloadEntry from the top-level `workloadEntries`: labels select it into serviceEntries.
    struct WorkloadEntryDeclaration {
        var endpoint: ServiceDeclaration.EndpointDeclaration
    }

    static func workloadEntryObject(_ node: JSONNode) throws -> WorkloadEntryDeclaration {
        let (spec, _) = try unwrapKubernetes(node, kind: "WorkloadEntry")
        return WorkloadEntryDeclaration(endpoint: try workloadEntry(spec.node(), allowPort: false))
    }

    /// An object of string → string (labels, selectors).
    static func stringMap(_ node: JSONNode) throws -> [String: String] {
        guard let dict = node.value as? [String: Any] else { throw node.fail("expected an object of name → string") }
        var out: [String: String] = [:]
        for key in dict.keys.sorted() { out[key] = try JSONNode(value: dict[key]!, path: node.child(key)).string() }
        return out
    }

    static func notSupported(_ o: JSONObject, _ keys: [String], because reason: String? = nil) throws {
        for k in keys {
            if let n = o[k] { throw n.fail("not supported by this gateway" + (reason.map { ": " + $0 } ?? "")) }
        }
    }

    static func destinationRule(_ spec: JSONObject) throws -> (JSONNode, DestinationRuleDeclaration) {
        let o = try spec.node().object(allowed: ["host", "trafficPolicy", "subsets", "exportTo", "workloadSelector"])
        try notSupported(o, ["workloadSelector"], because: "it picks the sidecars a rule applies to; here the gateway is the only proxy")
        if let e = o["exportTo"] { _ = try e.array().map { try $0.string() } }
        let host = try o.required("host")
        var rule = DestinationRuleDeclaration(policy: try o["trafficPolicy"].map { try trafficPolicy($0) } ?? PolicyLayer(), subsets: [])
        for s in try o["subsets"]?.array() ?? [] {
            let so = try s.object(allowed: ["name", "labels", "trafficPolicy"])
            let nameNode = try so.required("name")
            let name = try nameNode.nonEmptyString()
            if rule.subsets.contains(where: { $0.name == name }) { throw nameNode.fail("subset '\(name)' is declared twice") }
            // Envoy's cluster names carry the subset between `|`s.
            if name.contains("|") { throw nameNode.fail("a subset name cannot contain '|'") }
            rule.subsets.append(.init(name: name, labels: try so["labels"].map(stringMap) ?? [:],
                                      policy: try so["trafficPolicy"].map { try trafficPolicy($0) } ?? PolicyLayer(),
                                      path: s.path))
        }
        return (host, rule)
    }

    /// Port-level settings must name ports the service has, or they would silently apply to nothing.
    static func checkSubsets(_ rule: DestinationRuleDeclaration, of service: ServiceDeclaration) throws {
        let ports = Set(service.ports.map(\.number))
        for layer in [rule.policy] + rule.subsets.map(\.policy) {
            for (port, path) in layer.portPaths.sorted(by: { $0.key < $1.key }) where !ports.contains(port) {
                throw ConfigError(path: path, reason: "host '\(service.name)' has no port \(port) "
                    + (ports.isEmpty ? "(its serviceEntry declares no ports)" : "(declared: \(ports.sorted().map(String.init).joined(separator: ", ")))"))
            }
        }
    }

    /// A `trafficPolicy` (of a rule or a subset): the parts it sets, and its port-level settings.
    static func trafficPolicy(_ node: JSONNode, portLevel: Bool = false) throws -> PolicyLayer {
        let parts = ["connectionPool", "outlierDetection", "loadBalancer", "tls"]
        let t = try node.object(allowed: portLevel ? ["port"] + parts : parts + ["portLevelSettings", "tunnel", "proxyProtocol", "retryBudget"])
        try notSupported(t, ["tunnel"], because: "upstream connections are direct, never tunnelled through a proxy")
        try notSupported(t, ["proxyProtocol"], because: "the PROXY protocol header is not sent")
        var layer = PolicyLayer()
        if let cp = t["connectionPool"] { layer.connectionPool = try connectionPool(cp) }
        if let od = t["outlierDetection"] { layer.outlierDetection = try outlierDetection(od) }
        if let lb = t["loadBalancer"] { layer.loadBalancer = try loadBalancing(lb) }
        if let rb = t["retryBudget"] { layer.retryBudget = try retryBudget(rb) }
        if let tls = t["tls"] { layer.tls = .init(config: try upstreamTLS(tls)) }
        for p in try t["portLevelSettings"]?.array() ?? [] {
            let portNode = try p.object(allowed: ["port"] + parts).required("port")
            let numberNode = try portNode.object(allowed: ["number"]).required("number")
            let number = try numberNode.int(in: 1...65535)
            if layer.portLevel[number] != nil { throw numberNode.fail("port \(number) has settings twice") }
            layer.portLevel[number] = try trafficPolicy(p, portLevel: true)
            layer.portPaths[number] = numberNode.path
        }
        return layer
    }

    /// Istio's `loadBalancer` object, which replaces the balancer, its hash and its slow start together.
    static func loadBalancing(_ node: JSONNode) throws -> PolicyLayer.LoadBalancing {
        var scratch = TrafficPolicy()
        try loadBalancer(node, into: &scratch)
        return .init(kind: scratch.loadBalancer, consistentHash: scratch.consistentHash, warmup: scratch.warmup)
    }

    static func connectionPool(_ node: JSONNode) throws -> ConnectionPoolSettings {
        let o = try node.object(allowed: ["tcp", "http"])
        var s = ConnectionPoolSettings()
        if let tcp = o["tcp"] {
            let t = try tcp.object(allowed: ["maxConnections", "connectTimeout", "tcpKeepalive", "maxConnectionDuration", "idleTimeout"])
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
            if let n = t["maxConnectionDuration"] {
                // "0s" is Envoy's "no limit", as for the listener's maxConnectionDuration.
                let d = try n.duration(allowZero: true, min: .milliseconds(1))
                s.maxConnectionDuration = d.nanoseconds == 0 ? nil : d
            }
            // Istio sets the HTTP idle timeout from tcp.idleTimeout only when http.idleTimeout is
            // absent (cluster_traffic_policy.go): the http block below overrides it.
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
                guard let policy = H2UpgradePolicy(rawValue: v) else {
                    throw n.fail("unknown h2UpgradePolicy '\(v)' (allowed: DEFAULT, DO_NOT_UPGRADE, UPGRADE)")
                }
                s.h2UpgradePolicy = policy
            }
            if let n = h["useClientProtocol"] { s.useClientProtocol = try n.bool() }
            // Istio's int32; Envoy's HTTP/2 bound (RFC 9113 stream counts fit 31 bits).
            if let n = h["maxConcurrentStreams"] { s.maxConcurrentStreams = try n.int(in: 1...2_147_483_647) }
        }
        return s
    }

    static func outlierDetection(_ node: JSONNode) throws -> OutlierDetectionSettings {
        let o = try node.object(allowed: [
            "consecutive5xxErrors", "consecutiveGatewayErrors", "consecutiveErrors", "interval", "baseEjectionTime",
            "maxEjectionPercent", "minHealthPercent", "splitExternalLocalOriginErrors", "consecutiveLocalOriginFailures",
        ])
        var s = OutlierDetectionSettings()
        try localOriginSplit(o, into: &s)
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

    static func virtualService(_ spec: JSONObject, name: String, catalog: inout ClusterCatalog) throws -> [RouteConfig] {
        let o = try spec.node().object(allowed: ["hosts", "gateways", "http", "tcp", "tls", "exportTo"])
        try notSupported(o, ["tcp", "tls"])
        let vhosts = try o["hosts"]?.array().map { try $0.nonEmptyString() } ?? []
        if let g = o["gateways"] { _ = try g.array().map { try $0.string() } }
        var routes: [RouteConfig] = []
        for (j, h) in (try o.required("http").array()).enumerated() {
            routes.append(try httpRoute(h, defaultName: "\(name).\(j)", vhosts: vhosts, catalog: &catalog))
        }
        return routes
    }

    static func httpRoute(_ node: JSONNode, defaultName: String, vhosts: [String], catalog: inout ClusterCatalog) throws -> RouteConfig {
        let o = try node.object(allowed: [
            "name", "match", "route", "timeout", "retries", "fault", "localRateLimit",
            "headers", "rewrite", "redirect", "mirror", "mirrors", "mirrorPercent", "mirrorPercentage", "corsPolicy", "delegate", "directResponse",
        ])
        try notSupported(o, ["delegate"])
        try notSupported(o, ["mirrorPercent"], because: "the deprecated integer form; use mirrorPercentage {value}")
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
            let (host, service, subset, port) = try destination(dobj.required("destination"), catalog: &catalog)
            let weight: Int
            if let w = dobj["weight"] {
                weight = try w.int(in: 0...100)
            } else if dests.count == 1 {
                weight = 100
            } else {
                throw ConfigError(path: dobj.node().child("weight"), reason: "required when a route has several destinations")
            }
            weights += weight
            r.destinations.append(WeightedDestination(host: host, weight: weight, service: service, subset: subset, port: port,
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
        r.mirrors = try mirrors(o, catalog: &catalog)
        return r
    }

    /// A `destination {host, subset, port}`: the cluster it names, and the names as written.
    static func destination(_ node: JSONNode, catalog: inout ClusterCatalog)
        throws -> (cluster: String, service: String, subset: String?, port: Int?)
    {
        let dest = try node.object(allowed: ["host", "port", "subset"])
        let hostNode = try dest.required("host")
        let service = try resolveHost(try hostNode.nonEmptyString(), known: catalog.services.keys, at: hostNode)
        var port: Int? = nil
        if let p = dest["port"] { port = try p.object(allowed: ["number"]).required("number").int(in: 1...65535) }
        let subset = try dest["subset"]?.nonEmptyString()
        let cluster = try catalog.cluster(service: service, port: port, subset: subset,
                                          portPath: node.child("port.number"), subsetPath: node.child("subset"))
        return (cluster, service, subset, port)
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
        "unavailable": .unavailable, "cancelled": .cancelled, "deadline-exceeded": .deadlineExceeded, "internal": .internal,
        "resource-exhausted": .resourceExhausted,
    ]

    static func retries(_ node: JSONNode) throws -> RetryPolicyConfig {
        let o = try node.object(allowed: ["attempts", "perTryTimeout", "retryOn", "retryRemoteLocalities", "retryIgnorePreviousHosts", "backoff"])
        if let n = o["retryRemoteLocalities"] { _ = try n.bool() }
        var p = RetryPolicyConfig.istioDefault
        p.attempts = try o.required("attempts").int(in: 0...1000)
        try retryExtras(o, into: &p)
        if let t = o["perTryTimeout"] { p.perTryTimeout = try t.duration() }
        if let on = o["retryOn"] {
            let text = try on.string()
            var set: RetryOn = []
            var codes: StatusCodeSet = []
            for raw in text.split(separator: ",") {
                let item = raw.trimmingCharacters(in: .whitespaces)
                if let code = Int(item) {
                    guard (100...599).contains(code) else { throw on.fail("retriable status code \(code) is not 100...599") }
                    codes.insert(code)
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
            try notSupported(aobj, ["http2Error"])
            // Envoy's fault filter: an HTTP status wins; a gRPC abort answers 200, which a gRPC call
            // reads as the status.
            if aobj["httpStatus"] == nil, let g = aobj["grpcStatus"] {
                let name = try g.string()
                guard let code = grpcStatusNames.firstIndex(of: name) else {
                    throw g.fail("unknown gRPC status '\(name)' (allowed: \(grpcStatusNames.joined(separator: ", ")))")
                }
                f.abort = .init(httpStatus: 200, percentage: try percentage(aobj), grpcStatus: code)
            } else {
                f.abort = .init(httpStatus: try aobj.required("httpStatus").int(in: 200...599), percentage: try percentage(aobj))
            }
        }
        return f
    }

    /// gRPC's status names (statuscodes.md) by code, as Istio's `abort.grpcStatus` spells them.
    static let grpcStatusNames = [
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
        "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
        "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    ]

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
