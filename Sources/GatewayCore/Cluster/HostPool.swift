import DequeModule
import NIOCore
import NIOSSL
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

/// HTTP/1.1 connections of one event loop to one host, and the requests waiting for them
/// (Envoy's per-worker, per-host connection pool). With `http2` the pool is Envoy's HTTP/2 one
/// instead (`HostPool+HTTP2.swift`): few connections, each request a stream on one of them. Limits are asked of the cluster's
/// `ResourceManager`; the pool never counts on its own. It alone moves a connection from one
/// `UpstreamConnection.State` to the next (`transition`), so the counts kept per state (active
/// requests, connections, connecting) change in exactly one place.
final class HostPool {
    let host: Host
    /// Weak: a reload that removes the cluster drops its pool while connections of it still
    /// finish their responses and close; only connects and closes reach the owner.
    private(set) weak var owner: ClusterPool?
    let eventLoop: EventLoop
    let resources: ResourceManager
    let stats: ClusterStats
    let row: Int
    /// The loop's round-end queue (the owner's).
    let roundEnd: RoundEndQueue
    private var idle: [UpstreamConnection] = []
    var pending = Deque<PoolWaiter>()
    private var connecting = 0
    var connections = 0
    /// Kept in step with the cluster pool (read on every response, so not behind a reference).
    var maxRequestsPerConnection: Int
    /// The cluster's `maxConnectionDuration` (nil: none), kept in step like the above.
    var maxConnectionDuration: TimeAmount?
    var draining = false
    /// The pool multiplexes requests as streams over HTTP/2 connections.
    let http2: Bool
    /// HTTP/2: the connections not yet closed, and the streams the connecting ones will take.
    var h2Connections: [UpstreamHTTP2Connection] = []
    var h2ConnectingCapacity = 0
    /// HTTP/2: streams handed to requests whose channels NIOHTTP2 has yet to make.
    var h2Opening: [UpstreamConnection] = []
    /// HTTP/2: the cluster's `maxConcurrentStreams`, kept in step like the above.
    var maxConcurrentStreams: Int

    init(host: Host, owner: ClusterPool, http2: Bool = false) {
        self.http2 = http2
        maxConcurrentStreams = owner.maxConcurrentStreams
        self.host = host
        self.owner = owner
        eventLoop = owner.eventLoop
        resources = owner.cluster.resources
        stats = owner.cluster.stats
        row = owner.row
        roundEnd = owner.roundEnd
        maxRequestsPerConnection = owner.maxRequestsPerConnection
        maxConnectionDuration = owner.maxConnectionDuration
        draining = owner.draining
    }

    // MARK: connection states

    /// The one place a connection changes state; the counts follow the state.
    func transition(_ connection: UpstreamConnection, to next: UpstreamConnection.State) {
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
        // A stream of an HTTP/2 connection counts as a request only; its connection counts itself.
        guard connection.carrier == nil else {
            if next == .closed && previous != .connecting { connection.carrier!.activeStreams -= 1 }
            return
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
        if http2 {
            newHTTP2Stream(waiter)
            return
        }
        while let connection = idle.popLast() {
            // Asked to close while idle: its close is on the way.
            guard connection.reusable else { continue }
            // Past its maximum age since the last sweep: closed now rather than handed out.
            if maxConnectionDuration != nil && closeIfExpired(connection, now: .now()) { continue }
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
        } else if http2 {
            cancelOpening(waiter)
        }
    }

    func attach(_ connection: UpstreamConnection, _ waiter: PoolWaiter) {
        // http2MaxRequests bounds active requests on HTTP/1.1 too; Envoy counts its overflow as pending overflow.
        guard resources.requests.canCreate() else {
            stats.inc(.upstream_rq_pending_overflow, row: row)
            if connection.state == .idle {
                idle.append(connection)  // taken from the idle list: it goes back as it was
            } else {
                makeIdle(connection)
            }
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
        connection.connectStartedAt = .now()
        // A pool with waiting requests has an owner: each waiting request's filter holds it.
        guard let owner else {
            eventLoop.execute { self.connectFailed(connection, timeout: false) }
            return
        }
        let policy = owner.snapshot.policy
        owner.connector.connect(connection, to: host, on: eventLoop, settings: policy.connectionPool, tls: policy.tls,
                                serviceHost: owner.snapshot.serviceHost)
            .assumeIsolatedUnsafeUnchecked()
            .whenComplete { result in
                switch result {
                case .success: self.connected(connection)
                case .failure(let error):
                    self.connectFailed(connection, timeout: self.classifyConnectFailure(error, tls: policy.tls != nil))
                }
            }
    }

    private func connected(_ connection: UpstreamConnection) {
        // Closed while connecting (a drain): `channelInactive` reports it.
        guard connection.state == .connecting else { return }
        connection.connectedAt = .now()
        stats.upstreamCxConnectMs.record(from: connection.connectStartedAt.uptimeNanoseconds,
                                         to: connection.connectedAt.uptimeNanoseconds, row: row)
        // Asked to close meanwhile, or the cluster is leaving with nobody waiting for it.
        guard connection.reusable, !(draining && pending.isEmpty) else {
            connection.close()
            return
        }
        dispatchOrIdle(connection)
    }

    /// A TLS connect that failed in its handshake (not in its TCP connect).
    /// Counts a failed connect's TLS failure (when the connect was TLS) and says whether it
    /// timed out: the two things an HTTP/1.1 or HTTP/2 connect failure is reported by.
    func classifyConnectFailure(_ error: Error, tls: Bool) -> Bool {
        if tls { countTLSFailure(error) }
        guard let error = error as? ChannelError, case .connectTimeout = error else { return false }
        return true
    }

    func countTLSFailure(_ error: Error) {
        if error is SubjectAltNameMismatch {
            stats.inc(.ssl_fail_verify_san, row: row)
            stats.inc(.ssl_connection_error, row: row)
        } else if error is NIOSSLError || error is BoringSSLError {
            stats.inc(.ssl_connection_error, row: row)
        }
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
        if connection.carrier != nil {
            streamEnded(connection)
            return
        }
        let max = maxRequestsPerConnection
        if max > 0 && connection.requestsServed >= max {
            stats.inc(.upstream_cx_max_requests, row: row)
            connection.close()
        } else if !connection.reusable || draining {
            connection.close()
        } else if maxConnectionDuration != nil && closeIfExpired(connection, now: .now()) {
            // Reached its maximum age while busy: Envoy drains it, so it ends with its response.
            return
        } else {
            dispatchOrIdle(connection)
        }
    }

    /// Envoy's max_connection_duration: a connection past it takes no further request.
    func closeIfExpired(_ connection: UpstreamConnection, now: NIODeadline) -> Bool {
        guard let max = maxConnectionDuration, now - connection.connectedAt >= max else { return false }
        stats.inc(.upstream_cx_max_duration_reached, row: row)
        connection.close()
        return true
    }

    /// The request let go of `connection` before its response was read (timeout, client gone,
    /// retry, malformed response): it cannot be reused.
    func abandoned(_ connection: UpstreamConnection) {
        guard connection.state == .active || connection.state == .releasing else { return }
        if connection.carrier != nil {
            streamEnded(connection)
            return
        }
        connection.close()
    }

    /// The channel closed (`channelInactive`).
    func closed(_ connection: UpstreamConnection) {
        guard connection.state != .closed else { return }
        if connection.carrier != nil {
            streamEnded(connection)
            return
        }
        let wasIdle = connection.state == .idle
        transition(connection, to: .closed)
        stats.inc(.upstream_cx_destroy, row: row)
        if wasIdle, let i = idle.firstIndex(where: { $0 === connection }) { idle.remove(at: i) }
        // The freed connection slot may let waiting requests, here or on other hosts, connect.
        owner?.connectionFreed()
    }

    /// A connection of this pool got bytes that are not HTTP/1.1 and was closed.
    func countProtocolError() { stats.inc(.upstream_cx_protocol_error, row: row) }

    /// A connection of this pool stopped or resumed reading for flow control.
    func countFlowControl(paused: Bool) {
        stats.inc(paused ? .upstream_flow_control_paused_reading_total : .upstream_flow_control_resumed_reading_total, row: row)
    }

    func retryPending() {
        guard !pending.isEmpty else { return }
        if http2 { tryCreateHTTP2Connections() } else { tryCreateConnections() }
    }

    /// Closes connections idle for longer than `idleTimeout`, or older than `maxConnectionDuration`
    /// (or all idle ones when draining). Run by the worker's tick, so up to one tick late.
    func closeIdle(olderThan deadline: NIODeadline, all: Bool, now: NIODeadline = .now()) {
        if http2 {
            closeIdleHTTP2(olderThan: deadline, all: all, now: now)
            return
        }
        for connection in idle where connection.state == .idle && connection.reusable {
            if all {
                connection.close()
            } else if connection.idleSince < deadline {
                stats.inc(.upstream_cx_idle_timeout, row: row)
                connection.close()
            } else if maxConnectionDuration != nil {
                _ = closeIfExpired(connection, now: now)
            }
        }
    }

    var isUnused: Bool { connections == 0 && pending.isEmpty && h2Opening.isEmpty }
}
