import NIOConcurrencyHelpers
import NIOCore

/// An upstream cluster (one Istio host): the state every event loop shares — circuit-breaker
/// counters, stats and outlier detection. It lives across reloads so counters and ejections carry on.
public final class Cluster: Sendable {
    public let name: String
    public let stats: ClusterStats
    public let resources: ResourceManager
    public let outlier: OutlierDetector
    private let hostsByEndpoint: NIOLockedValueBox<[Endpoint: Host]>

    public init(config: HostConfig, histogramRows: HistogramRows = .any) {
        name = config.name
        stats = ClusterStats(histogramRows: histogramRows)
        resources = ResourceManager(config.trafficPolicy.connectionPool)
        resources.setRetryBudget(config.trafficPolicy.retryBudget)
        outlier = OutlierDetector(settings: config.trafficPolicy.outlierDetection, stats: stats)
        hostsByEndpoint = NIOLockedValueBox([:])
    }

    /// The hosts for `config`, reusing the Host of every endpoint that stays.
    func hosts(for config: HostConfig) -> [Host] {
        hostsByEndpoint.withLockedValue { known in
            let hosts = config.endpoints.map { known[$0] ?? Host(endpoint: $0) }
            known = Dictionary(hosts.map { ($0.endpoint, $0) }, uniquingKeysWith: { a, _ in a })
            return hosts
        }
    }
}

/// One cluster as a given config version sees it: immutable, shared by the event loops.
public final class ClusterSnapshot: Sendable {
    public let cluster: Cluster
    public let hosts: [Host]
    public let policy: TrafficPolicy
    /// The ServiceEntry host the cluster serves: the Host of a request that came without one.
    let serviceHost: String
    /// The ring or Maglev table when the policy hashes: immutable, so one is built per config
    /// and shared by that config's per-loop snapshots (a ring may be millions of entries).
    let hashBalancer: HashBalancer?
    /// Slow start: until this time some host is still in its warmup window (nil: none is, or
    /// no warmup), so plain picks skip the weighting entirely.
    let warmupEnds: NIODeadline?
    /// `policy.upstreamProtocol`, one load away for every try.
    let upstreamProtocol: UpstreamProtocol

    /// `hashBalancer`: the table another snapshot of the same config built for these hosts and
    /// policy; built here when nil.
    init(cluster: Cluster, hosts: [Host], policy: TrafficPolicy, serviceHost: String, hashBalancer: HashBalancer? = nil) {
        upstreamProtocol = policy.upstreamProtocol
        self.cluster = cluster
        self.hosts = hosts
        self.policy = policy
        self.serviceHost = serviceHost
        self.hashBalancer = hashBalancer ?? policy.consistentHash.flatMap { HashBalancer(settings: $0, hosts: hosts) }
        if let warmup = policy.warmup, let newest = hosts.map(\.addedAt).max(), newest + warmup.duration > .now() {
            warmupEnds = newest + warmup.duration
        } else {
            warmupEnds = nil
        }
    }

    /// Whether a request goes upstream over HTTP/2: always on an HTTP/2 cluster, for an HTTP/2
    /// client's request with useClientProtocol; a WebSocket upgrade never (it is HTTP/1.1's).
    @inline(__always) func upstreamHTTP2(clientIsHTTP2: @autoclosure () -> Bool, upgrade: Bool) -> Bool {
        switch upstreamProtocol {
        case .http1: return false
        case .http2: return !upgrade
        case .client: return !upgrade && clientIsHTTP2()
        }
    }

    // The cluster's shared state, read through the snapshot a request holds.
    var name: String { cluster.name }
    @inline(__always) var stats: ClusterStats { cluster.stats }
    @inline(__always) var resources: ResourceManager { cluster.resources }
    @inline(__always) var outlier: OutlierDetector { cluster.outlier }
}
