import DequeModule
import NIOCore
import NIOPosix

/// Why the pool could not give a request a connection.
enum PoolFailure {
    /// A circuit-breaker threshold (pending or active requests) is full: 503 UO.
    case overflow
    case connectFailure
    case connectTimeout
}

/// A request waiting for a connection.
protocol PoolWaiter: AnyObject {
    /// `connection` is `.active` and counted; the waiter begins its request on it.
    func poolReady(_ connection: UpstreamConnection)
    func poolFailed(_ failure: PoolFailure)
}

/// Opens the TCP connection of a new `UpstreamConnection` (its handler is `connection`). The
/// gateway's connects through `ClientBootstrap`; tests hand the pool embedded channels.
protocol UpstreamConnector: Sendable {
    func connect(_ connection: UpstreamConnection, to host: Host, on eventLoop: EventLoop,
                 timeout: TimeAmount) -> EventLoopFuture<Void>
}

/// The gateway's connector: a socket per connection, TCP_NODELAY, `connectTimeout`.
struct SocketConnector: UpstreamConnector {
    func connect(_ connection: UpstreamConnection, to host: Host, on eventLoop: EventLoop,
                 timeout: TimeAmount) -> EventLoopFuture<Void> {
        guard let address = host.address else {
            return eventLoop.makeFailedFuture(ChannelError.connectPending)
        }
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(connection)
                }
            }
            .connect(to: address)
            .map { _ in }
    }
}

/// HTTP/1.1 connections of one event loop to one host, and the requests waiting for them
/// (Envoy's per-worker, per-host connection pool). Limits are asked of the cluster's
/// `ResourceManager`; the pool never counts on its own. It alone moves a connection from one
/// `UpstreamConnection.State` to the next (`transition`), so the counts kept per state (active
/// requests, connections, connecting) change in exactly one place.
final class HostPool {
    let host: Host
    // The cluster pool owns its host pools and outlives them; only connects and closes reach it.
    unowned let owner: ClusterPool
    let eventLoop: EventLoop
    private let resources: ResourceManager
    private let stats: ClusterStats
    private let row: Int
    private var idle: [UpstreamConnection] = []
    private(set) var pending = Deque<PoolWaiter>()
    private var connecting = 0
    private(set) var connections = 0
    /// Kept in step with the cluster pool (read on every response, so not behind a reference).
    var maxRequestsPerConnection: Int
    var draining = false

    init(host: Host, owner: ClusterPool) {
        self.host = host
        self.owner = owner
        eventLoop = owner.eventLoop
        resources = owner.cluster.resources
        stats = owner.cluster.stats
        row = owner.row
        maxRequestsPerConnection = owner.maxRequestsPerConnection
        draining = owner.draining
    }

    // MARK: connection states

    /// The one place a connection changes state; the counts follow the state.
    private func transition(_ connection: UpstreamConnection, to next: UpstreamConnection.State) {
        eventLoop.assertInEventLoop()
        let previous = connection.state
        assert(Self.allowed(from: previous, to: next), "upstream connection \(previous) -> \(next)")
        connection.state = next
        if previous == .active {
            resources.requests.dec()
            host.activeRequests.wrappingDecrement(ordering: .relaxed)
        }
        if next == .active {
            resources.requests.inc()
            host.activeRequests.wrappingIncrement(ordering: .relaxed)
        }
        if previous == .connecting { connecting -= 1 }
        if next == .closed {
            connections -= 1
            resources.connections.dec()
            host.activeConnections.wrappingDecrement(ordering: .relaxed)
        }
    }

    private static func allowed(from: UpstreamConnection.State, to: UpstreamConnection.State) -> Bool {
        switch (from, to) {
        case (.connecting, .idle), (.connecting, .active), (.connecting, .closed): return true
        case (.idle, .active), (.idle, .closed): return true
        case (.active, .releasing), (.active, .closed): return true
        case (.releasing, .idle), (.releasing, .active), (.releasing, .closed): return true
        default: return false
        }
    }

    // MARK: requests

    /// Envoy's `newStream`: a ready connection if there is one, else wait within
    /// `http1MaxPendingRequests` and open a connection within `maxConnections`.
    func newStream(_ waiter: PoolWaiter) {
        eventLoop.assertInEventLoop()
        while let connection = idle.popLast() {
            // Asked to close while idle: its close is on the way.
            guard connection.reusable else { continue }
            attach(connection, waiter)
            return
        }
        guard resources.pendingRequests.canCreate() else {
            stats.inc(.upstream_rq_pending_overflow, row: row)
            waiter.poolFailed(.overflow)
            return
        }
        resources.pendingRequests.inc()
        stats.inc(.upstream_rq_pending_total, row: row)
        pending.append(waiter)
        tryCreateConnections()
    }

    /// A waiter that gave up (timeout, client gone) leaves the queue.
    func cancel(_ waiter: PoolWaiter) {
        if let i = pending.firstIndex(where: { $0 === waiter }) {
            pending.remove(at: i)
            resources.pendingRequests.dec()
            stats.inc(.upstream_rq_cancelled, row: row)
        }
    }

    private func attach(_ connection: UpstreamConnection, _ waiter: PoolWaiter) {
        // http2MaxRequests bounds active requests on HTTP/1.1 too; Envoy counts its overflow as pending overflow.
        guard resources.requests.canCreate() else {
            stats.inc(.upstream_rq_pending_overflow, row: row)
            makeIdle(connection)
            waiter.poolFailed(.overflow)
            return
        }
        transition(connection, to: .active)
        waiter.poolReady(connection)
    }

    private func makeIdle(_ connection: UpstreamConnection) {
        transition(connection, to: .idle)
        connection.idleSince = NIODeadline.now()
        idle.append(connection)
    }

    // MARK: connecting

    private func tryCreateConnections() {
        while pending.count > connecting {
            let allowed = resources.connections.canCreate()
            if !allowed { stats.inc(.upstream_cx_overflow, row: row) }
            // Envoy opens one connection anyway when this pool has none, so that requests queued
            // here are never stranded by connections other pools hold.
            guard allowed || connections == 0 else { return }
            connect()
        }
    }

    private func connect() {
        connections += 1
        connecting += 1
        resources.connections.inc()
        host.activeConnections.wrappingIncrement(ordering: .relaxed)
        stats.inc(.upstream_cx_total, row: row)
        let connection = UpstreamConnection(pool: self)
        owner.connector.connect(connection, to: host, on: eventLoop,
                                timeout: owner.snapshot.policy.connectionPool.connectTimeout)
            .assumeIsolatedUnsafeUnchecked()
            .whenComplete { result in
                switch result {
                case .success: self.connected(connection)
                case .failure(let error):
                    let timeout = (error as? ChannelError).map { if case .connectTimeout = $0 { true } else { false } } ?? false
                    self.connectFailed(connection, timeout: timeout)
                }
            }
    }

    private func connected(_ connection: UpstreamConnection) {
        // Closed while connecting (a drain): `channelInactive` reports it.
        guard connection.state == .connecting else { return }
        guard connection.reusable else {
            connection.close()
            return
        }
        dispatchOrIdle(connection)
    }

    private func connectFailed(_ connection: UpstreamConnection, timeout: Bool) {
        guard connection.state == .connecting else { return }
        transition(connection, to: .closed)
        stats.inc(.upstream_cx_connect_fail, row: row)
        if timeout { stats.inc(.upstream_cx_connect_timeout, row: row) }
        // The connection was opened for one waiting request: that one learns of the failure.
        if let waiter = pending.popFirst() {
            resources.pendingRequests.dec()
            waiter.poolFailed(timeout ? .connectTimeout : .connectFailure)
        }
        tryCreateConnections()
    }

    private func dispatchOrIdle(_ connection: UpstreamConnection) {
        if let waiter = pending.popFirst() {
            resources.pendingRequests.dec()
            attach(connection, waiter)
        } else {
            makeIdle(connection)
        }
    }

    // MARK: connection events

    /// The response on `connection` is complete; it is handed back at the end of the read batch.
    func responseEnded(_ connection: UpstreamConnection) {
        transition(connection, to: .releasing)
    }

    /// The read batch in which the response ended is over: the connection serves the next
    /// request, or closes.
    func released(_ connection: UpstreamConnection) {
        let max = maxRequestsPerConnection
        if max > 0 && connection.requestsServed >= max {
            stats.inc(.upstream_cx_max_requests, row: row)
            connection.close()
        } else if !connection.reusable || draining {
            connection.close()
        } else {
            dispatchOrIdle(connection)
        }
    }

    /// The request let go of `connection` before its response was read (timeout, client gone,
    /// retry, malformed response): it cannot be reused.
    func abandoned(_ connection: UpstreamConnection) {
        guard connection.state == .active || connection.state == .releasing else { return }
        connection.close()
    }

    /// The channel closed (`channelInactive`).
    func closed(_ connection: UpstreamConnection) {
        guard connection.state != .closed else { return }
        let wasIdle = connection.state == .idle
        transition(connection, to: .closed)
        stats.inc(.upstream_cx_destroy, row: row)
        if wasIdle, let i = idle.firstIndex(where: { $0 === connection }) { idle.remove(at: i) }
        // The freed connection slot may let waiting requests, here or on other hosts, connect.
        owner.connectionFreed()
    }

    /// A connection of this pool got bytes that are not HTTP/1.1 and was closed.
    func countProtocolError() { stats.inc(.upstream_cx_protocol_error, row: row) }

    /// A connection of this pool stopped or resumed reading for flow control.
    func countFlowControl(paused: Bool) {
        stats.inc(paused ? .upstream_flow_control_paused_reading_total : .upstream_flow_control_resumed_reading_total, row: row)
    }

    func retryPending() { if !pending.isEmpty { tryCreateConnections() } }

    /// Closes connections idle for longer than `idleTimeout` (or all idle ones when draining).
    func closeIdle(olderThan deadline: NIODeadline, all: Bool) {
        for connection in idle where all || connection.idleSince < deadline {
            if !all { stats.inc(.upstream_cx_idle_timeout, row: row) }
            connection.close()
        }
    }

    var isUnused: Bool { connections == 0 && pending.isEmpty }
}

/// The hosts of one cluster as one event loop sees them: its host pools and its load balancer.
final class ClusterPool {
    let cluster: Cluster
    let eventLoop: EventLoop
    /// The event loop's row in the sharded counters.
    let row: Int
    let connector: UpstreamConnector
    private(set) var snapshot: ClusterSnapshot
    /// Every host pool's copy follows these.
    private(set) var maxRequestsPerConnection: Int
    var draining = false {
        didSet { for pool in pools.values { pool.draining = draining } }
    }
    private var pools: [ObjectIdentifier: HostPool] = [:]
    private var roundRobin = 0

    init(snapshot: ClusterSnapshot, eventLoop: EventLoop, row: Int, connector: UpstreamConnector = SocketConnector()) {
        self.row = row
        self.cluster = snapshot.cluster
        self.snapshot = snapshot
        self.connector = connector
        maxRequestsPerConnection = snapshot.policy.connectionPool.maxRequestsPerConnection
        self.eventLoop = eventLoop
    }

    func update(_ snapshot: ClusterSnapshot) {
        self.snapshot = snapshot
        maxRequestsPerConnection = snapshot.policy.connectionPool.maxRequestsPerConnection
        for pool in pools.values { pool.maxRequestsPerConnection = maxRequestsPerConnection }
        lastPool = nil
        let live = Set(snapshot.hosts.map(ObjectIdentifier.init))
        for (id, pool) in pools where !live.contains(id) {
            pool.closeIdle(olderThan: .distantFuture, all: true)
            if pool.isUnused { pools[id] = nil }
        }
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
    }

    func sweepIdle(now: NIODeadline) {
        let deadline = now - snapshot.policy.connectionPool.idleTimeout
        for pool in pools.values { pool.closeIdle(olderThan: deadline, all: draining) }
    }

    var allPools: Dictionary<ObjectIdentifier, HostPool>.Values { pools.values }

    /// Picks a host that is not ejected (unless below `minHealthPercent`, Envoy's panic mode),
    /// avoiding `exclude` when another host is available (Istio's previous-hosts retry predicate).
    func pickHost(policy: LoadBalancerKind, exclude: Host?, random: inout FastRandom) -> Host? {
        let hosts = snapshot.hosts
        let n = hosts.count
        guard n > 0 else { return nil }
        let ejected = cluster.outlier.ejectionsActive
        var ignoreEjection = false
        if ejected > 0, let od = snapshot.policy.outlierDetection, od.minHealthPercent > 0 {
            ignoreEjection = 100 * (n - ejected) < od.minHealthPercent * n
        }
        @inline(__always) func usable(_ h: Host) -> Bool { ignoreEjection || !h.isEjected }
        if n == 1 { return usable(hosts[0]) ? hosts[0] : nil }

        // Up to 5 draws avoid the previous host, as Istio's host_selection_retry_max_attempts.
        var fallback: Host? = nil
        for _ in 0..<5 {
            guard let h = draw(policy, hosts, usable, &random) else { return nil }
            if h !== exclude { return h }
            fallback = h
        }
        return fallback
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
