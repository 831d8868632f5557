/// A ServiceEntry host as declared: its ports and its endpoints, before any DestinationRule.
struct ServiceDeclaration {
    struct Port: Equatable {
        var name: String?
        var number: Int
        /// The port the endpoints listen on when they do not name one (Istio `targetPort`).
        var targetPort: Int?
        /// `protocol` HTTP2 or GRPC: the endpoints speak HTTP/2 (h2c with prior knowledge).
        var http2 = false
    }
    struct EndpointDeclaration {
        var address: String
        /// The endpoint's own `port` (this gateway's shorthand for one-port services).
        var port: Int?
        /// Istio's `ports`: service port name → the endpoint's port.
        var ports: [String: Int]
        var weight: Int
        var labels: [String: String]
    }

    var name: String
    var ports: [Port]
    /// How endpoint addresses become hosts (names are looked up off the event loops).
    var resolution: Resolution
    var endpoints: [EndpointDeclaration]

    /// The port a route reaches when its destination names none: the first declared.
    var defaultPort: Port? { ports.first }

    /// The endpoints as they serve `port`: the endpoint's port named after it, else its own
    /// port, else the service's targetPort, else the service port itself (Istio's order).
    func endpoints(for port: Port?) -> [Endpoint] {
        endpoints.map { e in
            let number = port.flatMap { p in p.name.flatMap { e.ports[$0] } }
                ?? e.port
                ?? (port == nil ? e.ports.sorted { $0.key < $1.key }.first?.value : nil)
                ?? port.map { $0.targetPort ?? $0.number }
            // The loader refuses endpoints with no port and no service port, so one is always found.
            guard let number else { preconditionFailure("endpoint \(e.address) of \(name) has no port") }
            return Endpoint(address: e.address, port: number, weight: e.weight, labels: e.labels)
        }
    }
}

/// The parts of a `trafficPolicy` one layer sets. Istio resolves a cluster's policy by laying
/// them over each other: the rule's, its `portLevelSettings` for the port, the subset's, the
/// subset's `portLevelSettings` — each part replaced whole, never merged field by field.
struct PolicyLayer {
    /// Istio's one `loadBalancer` object: the balancer, its hash and its slow start.
    struct LoadBalancing {
        var kind: LoadBalancerKind = .roundRobin
        var consistentHash: ConsistentHashSettings? = nil
        var warmup: WarmupSettings? = nil

        func apply(to policy: inout TrafficPolicy) {
            policy.loadBalancer = kind
            policy.consistentHash = consistentHash
            policy.warmup = warmup
        }
    }

    var connectionPool: ConnectionPoolSettings?
    var outlierDetection: OutlierDetectionSettings?
    var loadBalancer: LoadBalancing?
    /// Not in port-level settings (Istio has none there).
    var retryBudget: RetryBudgetSettings?
    /// `tls` as set by this layer; its `config` is nil for mode DISABLE.
    struct TLS { var config: UpstreamTLSConfig? }
    var tls: TLS?
    /// Port number → the settings for that port.
    var portLevel: [Int: PolicyLayer] = [:]
    /// Port number → where its `port.number` was written, for errors.
    var portPaths: [Int: String] = [:]

    /// Applies this layer's parts, then its settings for `port`. A port-level entry replaces every
    /// part, an absent one going back to Istio's default ("port level policies do not inherit").
    func apply(to policy: inout TrafficPolicy, port: Int?) {
        if let cp = connectionPool { policy.connectionPool = cp }
        if let od = outlierDetection { policy.outlierDetection = od }
        loadBalancer?.apply(to: &policy)
        if let rb = retryBudget { policy.retryBudget = rb }
        if let tls { policy.tls = tls.config }
        if let port, let p = portLevel[port] {
            policy.connectionPool = p.connectionPool ?? ConnectionPoolSettings()
            policy.tls = p.tls?.config
            policy.outlierDetection = p.outlierDetection
            (p.loadBalancer ?? LoadBalancing()).apply(to: &policy)
        }
    }
}

/// A DestinationRule as declared.
struct DestinationRuleDeclaration {
    struct Subset {
        var name: String
        var labels: [String: String]
        var policy: PolicyLayer
        /// Where the subset was declared, for errors that name it.
        var path: String
    }
    var policy: PolicyLayer
    var subsets: [Subset]
}

/// Turns services and destination rules into clusters: one per host (its default port, all its
/// endpoints), one per subset, and one per other port a route names — as Istio programs Envoy.
struct ClusterCatalog {
    let services: [String: ServiceDeclaration]
    let rules: [String: DestinationRuleDeclaration]
    private(set) var clusters: [String: HostConfig] = [:]

    init(services: [String: ServiceDeclaration], rules: [String: DestinationRuleDeclaration]) {
        self.services = services
        self.rules = rules
        for service in services.values {
            clusters[service.name] = build(service, port: service.defaultPort, subset: nil, name: service.name)
            for subset in rules[service.name]?.subsets ?? [] {
                let name = HostConfig.clusterName(service: service.name, port: service.defaultPort?.number, subset: subset.name)
                clusters[name] = build(service, port: service.defaultPort, subset: subset, name: name)
            }
        }
    }

    /// The cluster a route destination names, created for a port other than the default one.
    mutating func cluster(service name: String, port number: Int?, subset subsetName: String?,
                          portPath: String, subsetPath: String) throws -> String {
        let service = services[name]!
        var port = service.defaultPort
        if let number {
            guard let declared = service.ports.first(where: { $0.number == number }) else {
                let known = service.ports.map { String($0.number) }.joined(separator: ", ")
                throw ConfigError(path: portPath, reason: service.ports.isEmpty
                    ? "host '\(name)' declares no ports: its serviceEntry needs `ports` for a destination to pick one"
                    : "host '\(name)' has no port \(number) (its serviceEntry declares: \(known))")
            }
            port = declared
        }
        var subset: DestinationRuleDeclaration.Subset? = nil
        if let subsetName {
            let known = rules[name]?.subsets ?? []
            guard let s = known.first(where: { $0.name == subsetName }) else {
                throw ConfigError(path: subsetPath, reason: known.isEmpty
                    ? "host '\(name)' has no subsets: no destinationRule for it declares '\(subsetName)'"
                    : "host '\(name)' has no subset '\(subsetName)' (its destinationRule declares: \(known.map(\.name).joined(separator: ", ")))")
            }
            subset = s
        }
        if subset == nil && port == service.defaultPort { return name }
        let clusterName = HostConfig.clusterName(service: name, port: port?.number, subset: subsetName)
        if clusters[clusterName] == nil { clusters[clusterName] = build(service, port: port, subset: subset, name: clusterName) }
        return clusterName
    }

    /// Istio's cluster builder: an HTTP2/GRPC port makes the cluster HTTP/2, h2UpgradePolicy
    /// UPGRADE makes an HTTP one HTTP/2, and useClientProtocol (applied last) overrides both with
    /// the client's protocol. DO_NOT_UPGRADE leaves an HTTP2 port HTTP/2, as in Istio.
    static func upstreamProtocol(port: ServiceDeclaration.Port?, _ pool: ConnectionPoolSettings) -> UpstreamProtocol {
        if pool.useClientProtocol { return .client }
        if port?.http2 == true || pool.h2UpgradePolicy == .upgrade { return .http2 }
        return .http1
    }

    private func build(_ service: ServiceDeclaration, port: ServiceDeclaration.Port?,
                       subset: DestinationRuleDeclaration.Subset?, name: String) -> HostConfig {
        var policy = TrafficPolicy()
        rules[service.name]?.policy.apply(to: &policy, port: port?.number)
        subset?.policy.apply(to: &policy, port: port?.number)
        policy.upstreamProtocol = Self.upstreamProtocol(port: port, policy.connectionPool)
        var endpoints = service.endpoints(for: port)
        if let subset {
            // A subset's labels select the endpoints carrying every one of them (none: all).
            endpoints = endpoints.filter { e in subset.labels.allSatisfy { e.labels[$0.key] == $0.value } }
        }
        return HostConfig(name: name, endpoints: endpoints, trafficPolicy: policy, resolution: service.resolution,
                          service: service.name, port: port?.number, subset: subset?.name)
    }
}
