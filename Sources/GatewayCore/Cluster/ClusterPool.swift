import NIOCore

/// The hosts of one cluster as one event loop sees them: its host pools and its load balancer.
final class ClusterPool {
    let cluster: Cluster
    let eventLoop: EventLoop
    /// The event loop's row in the sharded counters.
    let row: Int
    let connector: UpstreamConnector
    /// The loop's round-end queue: requests are flushed there.
    let roundEnd: RoundEndQueue
    private(set) var snapshot: ClusterSnapshot
    /// The snapshot's hosts in an array of this event loop's own: every pick reads the list, and
    /// the snapshot's array is one every loop would retain (a shared reference count per request).
    private var hosts: [Host]
    /// Read by every pick (the panic threshold); held here, one reference away.
    private let outlier: OutlierDetector
    /// Every host pool's copy follows these.
    private(set) var maxRequestsPerConnection: Int
    private(set) var maxConnectionDuration: TimeAmount?
    private(set) var maxConcurrentStreams: Int
    var draining = false {
        didSet {
            for pool in pools.values { pool.draining = draining }
            for pool in http2Pools.values { pool.draining = draining }
        }
    }
    private var pools: [ObjectIdentifier: HostPool] = [:]
    /// The hosts' HTTP/2 pools (a cluster whose requests go upstream over HTTP/2; with
    /// useClientProtocol a host has both kinds).
    private var http2Pools: [ObjectIdentifier: HostPool] = [:]
    /// Pools of hosts that left the cluster (a reload or a DNS change) while requests were on
    /// them: draining, they take no new request and close each connection after its response.
    /// Dropped once unused.
    private var retired: [HostPool] = []
    private var roundRobin = 0
    /// Mirror copies to this cluster out from this event loop, and their bodies (`ShadowRequest`'s bounds).
    var shadowsInFlight = 0
    var shadowBytesInFlight = 0

    init(snapshot: ClusterSnapshot, eventLoop: EventLoop, row: Int, connector: UpstreamConnector, roundEnd: RoundEndQueue) {
        self.row = row
        self.roundEnd = roundEnd
        self.cluster = snapshot.cluster
        self.snapshot = snapshot
        hosts = snapshot.hosts.map { $0 }
        outlier = snapshot.cluster.outlier
        self.connector = connector
        maxRequestsPerConnection = snapshot.policy.connectionPool.maxRequestsPerConnection
        maxConnectionDuration = snapshot.policy.connectionPool.maxConnectionDuration
        maxConcurrentStreams = snapshot.policy.connectionPool.maxConcurrentStreams
        self.eventLoop = eventLoop
    }

    func update(_ snapshot: ClusterSnapshot) {
        self.snapshot = snapshot
        hosts = snapshot.hosts.map { $0 }
        maxRequestsPerConnection = snapshot.policy.connectionPool.maxRequestsPerConnection
        maxConnectionDuration = snapshot.policy.connectionPool.maxConnectionDuration
        maxConcurrentStreams = snapshot.policy.connectionPool.maxConcurrentStreams
        for pool in Array(pools.values) + Array(http2Pools.values) {
            pool.maxRequestsPerConnection = maxRequestsPerConnection
            pool.maxConnectionDuration = maxConnectionDuration
            pool.maxConcurrentStreams = maxConcurrentStreams
        }
        lastPool = nil
        let live = Set(snapshot.hosts.map(ObjectIdentifier.init))
        for (id, pool) in pools where !live.contains(id) {
            pools[id] = nil
            pool.draining = true
            pool.closeIdle(olderThan: .distantFuture, all: true)
            if !pool.isUnused { retired.append(pool) }
        }
        for (id, pool) in http2Pools where !live.contains(id) {
            http2Pools[id] = nil
            pool.draining = true
            pool.closeIdle(olderThan: .distantFuture, all: true)
            if !pool.isUnused { retired.append(pool) }
        }
    }

    /// The host's HTTP/2 pool (made on first use).
    func http2Pool(for host: Host) -> HostPool {
        let id = ObjectIdentifier(host)
        if let existing = http2Pools[id] { return existing }
        let pool = HostPool(host: host, owner: self, http2: true)
        pool.draining = draining
        http2Pools[id] = pool
        return pool
    }

    /// The pool a request to `host` uses: HTTP/2 when the cluster speaks it upstream (for this
    /// client, with useClientProtocol); WebSocket upgrades are HTTP/1.1 always.
    @inline(__always) func pool(for host: Host, http2: Bool) -> HostPool {
        http2 ? http2Pool(for: host) : pool(for: host)
    }

    /// The pool handed out last: one-endpoint clusters then skip hashing on every request.
    private var lastPool: HostPool?

    @inline(__always) func pool(for host: Host) -> HostPool {
        if let last = lastPool, last.host === host { return last }
        let id = ObjectIdentifier(host)
        let pool: HostPool
        if let existing = pools[id] {
            pool = existing
        } else {
            pool = HostPool(host: host, owner: self)
            pools[id] = pool
        }
        lastPool = pool
        return pool
    }

    func connectionFreed() {
        for pool in pools.values { pool.retryPending() }
        for pool in http2Pools.values { pool.retryPending() }
        for pool in retired { pool.retryPending() }
    }

    func sweepIdle(now: NIODeadline) {
        let deadline = now - snapshot.policy.connectionPool.idleTimeout
        for pool in pools.values { pool.closeIdle(olderThan: deadline, all: draining, now: now) }
        for pool in http2Pools.values { pool.closeIdle(olderThan: deadline, all: draining, now: now) }
        if !retired.isEmpty {
            for pool in retired { pool.closeIdle(olderThan: deadline, all: true, now: now) }
            retired.removeAll { $0.isUnused }
        }
    }

    var allPools: [HostPool] { Array(pools.values) + Array(http2Pools.values) }

    /// Picks a host that is not ejected (unless below `minHealthPercent`, Envoy's panic mode),
    /// avoiding `exclude` when another host is available (Istio's previous-hosts retry predicate).
    /// `hash`: the request's key when the cluster hashes (nil there: a random point, as Envoy).
    func pickHost(policy: LoadBalancerKind, exclude: Host?, hash: UInt64? = nil, random: inout FastRandom) -> Host? {
        let n = hosts.count
        guard n > 0 else { return nil }
        let ejected = outlier.ejectionsActive
        var ignoreEjection = false
        if ejected > 0, let od = snapshot.policy.outlierDetection, od.minHealthPercent > 0 {
            ignoreEjection = 100 * (n - ejected) < od.minHealthPercent * n
        }
        @inline(__always) func usable(_ h: Host) -> Bool { ignoreEjection || !h.isEjected }
        if n == 1 { return usable(hosts[0]) ? hosts[0] : nil }

        // Up to 5 draws avoid the previous host, as Istio's host_selection_retry_max_attempts.
        var fallback: Host? = nil
        if let balancer = snapshot.hashBalancer {
            // Every host ejected: a table walk would visit every entry (up to millions) to find none.
            if !ignoreEjection && ejected >= n { return nil }
            let key = hash ?? random.next()
            for attempt in 0..<5 {
                guard let h = balancer.pick(key, attempt: attempt, usable: usable) else { return nil }
                if h !== exclude { return h }
                fallback = h
            }
            return fallback
        }
        if let ends = snapshot.warmupEnds, let warmup = snapshot.policy.warmup {
            let now = NIODeadline.now()
            if now < ends {
                for _ in 0..<5 {
                    guard let h = Self.drawWarming(policy, hosts, usable, warmup, now, &random) else { return nil }
                    if h !== exclude { return h }
                    fallback = h
                }
                return fallback
            }
        }
        for _ in 0..<5 {
            guard let h = draw(policy, hosts, usable, &random) else { return nil }
            if h !== exclude { return h }
            fallback = h
        }
        return fallback
    }

    /// Slow start (Envoy's `applySlowStartFactor`): while a host is in its warmup window, hosts
    /// are drawn in proportion to weight × factor(age). Round robin becomes this weighted draw
    /// (Envoy's EDF schedule gives the same shares in a fixed order); least request draws two
    /// hosts this way and keeps the one with fewer active requests.
    static func drawWarming(
        _ policy: LoadBalancerKind, _ hosts: [Host], _ usable: (Host) -> Bool, _ warmup: WarmupSettings, _ now: NIODeadline,
        _ random: inout FastRandom
    ) -> Host? {
        var total = 0.0
        for h in hosts where usable(h) { total += Double(h.endpoint.weight) * warmup.factor(age: now - h.addedAt) }
        guard total > 0 else { return nil }
        func one(_ random: inout FastRandom) -> Host? {
            var r = Double(random.next() >> 11) * 0x1.0p-53 * total
            var last: Host? = nil
            for h in hosts where usable(h) {
                r -= Double(h.endpoint.weight) * warmup.factor(age: now - h.addedAt)
                last = h
                if r < 0 { return h }
            }
            return last
        }
        guard let a = one(&random) else { return nil }
        guard policy == .leastRequest, let b = one(&random) else { return a }
        return b.requestsActive < a.requestsActive ? b : a
    }

    private func draw(
        _ policy: LoadBalancerKind, _ hosts: [Host], _ usable: (Host) -> Bool, _ random: inout FastRandom
    ) -> Host? {
        let n = hosts.count
        switch policy {
        case .roundRobin:
            for _ in 0..<n {
                roundRobin = roundRobin &+ 1
                let h = hosts[roundRobin % n]
                if usable(h) { return h }
            }
            return nil
        case .random:
            let start = random.below(n)
            for k in 0..<n where usable(hosts[(start + k) % n]) { return hosts[(start + k) % n] }
            return nil
        case .leastRequest:
            // Envoy's power of two choices.
            let a = random.below(n), b = random.below(n)
            let ha = hosts[a], hb = hosts[b]
            switch (usable(ha), usable(hb)) {
            case (true, true): return hb.requestsActive < ha.requestsActive ? hb : ha
            case (true, false): return ha
            case (false, true): return hb
            case (false, false):
                for h in hosts where usable(h) { return h }
                return nil
            }
        }
    }
}
