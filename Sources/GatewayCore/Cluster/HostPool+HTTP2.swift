import NIOCore

/// Envoy's HTTP/2 connection pool (`Http2::ActiveClient` and the pool's stream dispatch) as a
/// strategy of `HostPool`: the same limits, asked of the same `ResourceManager`, with HTTP/2's
/// meaning of them.
/// - `maxConnections` counts connections (`upstream_cx_overflow` past it); a new one is opened
///   only when the streams waiting exceed what the connecting ones will take, and every open one
///   is at its stream limit.
/// - A connection's stream limit is `maxConcurrentStreams` and the upstream's
///   SETTINGS_MAX_CONCURRENT_STREAMS, whichever is lower; `maxRequestsPerConnection` drains it
///   after that many streams (`upstream_cx_max_requests`).
/// - `http2MaxRequests` bounds active streams across the cluster (overflow: 503 UO, counted as
///   `upstream_rq_pending_overflow` as Envoy does); `http1MaxPendingRequests` bounds the
///   requests waiting for a stream.
/// - A GOAWAY drains its connection; streams above its last stream id fail as refused
///   (`UpstreamFailure.refusedStream`), which `retryOn: refused-stream` retries.
/// - `idleTimeout` closes a connection with no stream for that long; `maxConnectionDuration`
///   drains one at that age.
/// Each request's "connection" is an `UpstreamConnection` on a stream channel (`carrier` set),
/// so the router and `UpstreamRequest` are the HTTP/1.1 ones.
extension HostPool {
    /// The next stream for `waiter`: on a connection with room, else waiting (within
    /// `http1MaxPendingRequests`) for one.
    func newHTTP2Stream(_ waiter: PoolWaiter) {
        if pending.isEmpty, let connection = h2Connections.first(where: hasRoom) {
            openStream(on: connection, for: waiter)
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
        tryCreateHTTP2Connections()
    }

    /// The streams one connection may carry at once.
    private func streamLimit(_ connection: UpstreamHTTP2Connection) -> Int {
        min(maxConcurrentStreams, connection.peerMaxStreams)
    }

    private func hasRoom(_ connection: UpstreamHTTP2Connection) -> Bool {
        connection.state == .ready && connection.activeStreams < streamLimit(connection)
    }

    /// A stream for `waiter` on `connection`, within `http2MaxRequests`. The stream counts as an
    /// active request (and takes its room on the connection) from here; the waiter gets it once
    /// NIOHTTP2 made its channel (the next tick), unless it gave up meanwhile (`cancelOpening`).
    private func openStream(on connection: UpstreamHTTP2Connection, for waiter: PoolWaiter) {
        guard resources.requests.canCreate() else {
            stats.inc(.upstream_rq_pending_overflow, row: row)
            waiter.poolFailed(.overflow)
            return
        }
        let stream = UpstreamConnection(pool: self, carrier: connection)
        stream.openingFor = waiter
        h2Opening.append(stream)
        connection.activeStreams += 1
        connection.streamsOpened += 1
        if maxRequestsPerConnection > 0 && connection.streamsOpened >= maxRequestsPerConnection {
            // Envoy drains it: the streams on it finish, no other comes.
            stats.inc(.upstream_cx_max_requests, row: row)
            connection.state = .draining
        }
        transition(stream, to: .active)
        let scheme = owner?.snapshot.policy.tls == nil ? "http" : "https"
        connection.openStream(stream, requestScheme: scheme) { opened in
            self.streamOpened(stream, opened)
        }
    }

    private func streamOpened(_ stream: UpstreamConnection, _ created: Bool) {
        // A stream channel made after its connection closed would never be activated.
        let opened = created && stream.carrier?.state != .closed
        if let i = h2Opening.firstIndex(where: { $0 === stream }) { h2Opening.remove(at: i) }
        let waiter = stream.openingFor
        stream.openingFor = nil
        guard let waiter, stream.state == .active else {
            // Its request gave up meanwhile (its room is given back already).
            stream.close()
            return
        }
        guard opened else {
            // The connection went (a GOAWAY and its close) before NIOHTTP2 made the stream:
            // nothing was sent, so the request waits again, first in line, for another.
            if let connection = stream.carrier, connection.state == .ready { connection.state = .draining }
            streamEnded(stream)
            resources.pendingRequests.inc()
            pending.prepend(waiter)
            if let ready = h2Connections.first(where: hasRoom) { dispatchPending(to: ready) }
            tryCreateHTTP2Connections()
            return
        }
        waiter.poolReady(stream)
    }

    /// A request that gave up while its stream was being opened.
    func cancelOpening(_ waiter: PoolWaiter) {
        guard let i = h2Opening.firstIndex(where: { $0.openingFor === waiter }) else { return }
        let stream = h2Opening.remove(at: i)
        stream.openingFor = nil
        stats.inc(.upstream_rq_cancelled, row: row)
        streamEnded(stream)
    }

    /// Waiting requests take the room `connection` has.
    private func dispatchPending(to connection: UpstreamHTTP2Connection) {
        while hasRoom(connection), let waiter = pending.popFirst() {
            resources.pendingRequests.dec()
            openStream(on: connection, for: waiter)
        }
    }

    // MARK: connections

    func tryCreateHTTP2Connections() {
        while pending.count > h2ConnectingCapacity {
            let allowed = resources.connections.canCreate()
            if !allowed { stats.inc(.upstream_cx_overflow, row: row) }
            // As for HTTP/1.1: a pool with no connection opens one even at the limit.
            guard allowed || connections == 0 else { return }
            connectHTTP2()
        }
    }

    private func connectHTTP2() {
        let connection = UpstreamHTTP2Connection(pool: self)
        connection.connectStartedAt = .now()
        // What it will take once open: its stream limit, at most its request limit.
        connection.connectingCapacity = maxRequestsPerConnection > 0
            ? min(maxConcurrentStreams, maxRequestsPerConnection) : maxConcurrentStreams
        h2ConnectingCapacity += connection.connectingCapacity
        h2Connections.append(connection)
        connections += 1
        resources.connections.inc()
        host.activeConnections.wrappingIncrement(ordering: .relaxed)
        stats.inc(.upstream_cx_total, row: row)
        stats.inc(.upstream_cx_http2_total, row: row)
        guard let owner else {
            eventLoop.assumeIsolatedUnsafeUnchecked().execute { self.http2ConnectFailed(connection, timeout: false) }
            return
        }
        let policy = owner.snapshot.policy
        // The upstream's header list, bounded as an HTTP/1.1 response head is (the framer's
        // limit on the translated head, plus RFC 7541's 32 bytes per field).
        let headerListLimit = 96 * 1024
        owner.connector.connectHTTP2(to: host, on: eventLoop, settings: policy.connectionPool, tls: policy.tls,
                                     serviceHost: owner.snapshot.serviceHost) { channel in
            try connection.install(on: channel, headerListLimit: headerListLimit)
        }
        .assumeIsolatedUnsafeUnchecked()
        .whenComplete { result in
            switch result {
            case .success: self.http2Connected(connection)
            case .failure(let error):
                self.http2ConnectFailed(connection, timeout: self.classifyConnectFailure(error, tls: policy.tls != nil))
            }
        }
    }

    private func http2Connected(_ connection: UpstreamHTTP2Connection) {
        // Closed while connecting: `http2Closed` reported it.
        guard connection.state == .connecting else { return }
        h2ConnectingCapacity -= connection.connectingCapacity
        connection.state = .ready
        connection.connectedAt = .now()
        connection.idleSince = connection.connectedAt
        stats.upstreamCxConnectMs.record(from: connection.connectStartedAt.uptimeNanoseconds,
                                         to: connection.connectedAt.uptimeNanoseconds, row: row)
        if draining && pending.isEmpty {
            connection.close()
            return
        }
        dispatchPending(to: connection)
    }

    private func http2ConnectFailed(_ connection: UpstreamHTTP2Connection, timeout: Bool) {
        guard connection.state == .connecting else { return }
        forget(connection)
        stats.inc(.upstream_cx_connect_fail, row: row)
        if timeout { stats.inc(.upstream_cx_connect_timeout, row: row) }
        // The requests this connection was to carry learn of the failure (Envoy purges the
        // pending streams no other connecting connection will take).
        while pending.count > h2ConnectingCapacity, let waiter = pending.popFirst() {
            resources.pendingRequests.dec()
            waiter.poolFailed(timeout ? .connectTimeout : .connectFailure)
        }
        tryCreateHTTP2Connections()
    }

    /// The connection leaves the pool's counts (closed, or its connect failed).
    private func forget(_ connection: UpstreamHTTP2Connection) {
        if connection.state == .connecting { h2ConnectingCapacity -= connection.connectingCapacity }
        connection.state = .closed
        if let i = h2Connections.firstIndex(where: { $0 === connection }) { h2Connections.remove(at: i) }
        connections -= 1
        resources.connections.dec()
        host.activeConnections.wrappingDecrement(ordering: .relaxed)
    }

    /// The connection's channel closed; its streams' channels close with it, each ending its request.
    func http2Closed(_ connection: UpstreamHTTP2Connection) {
        guard connection.state != .closed else { return }
        if connection.state == .connecting {
            // Closed before the connect reported: the connect's failure is reported here.
            http2ConnectFailed(connection, timeout: false)
            return
        }
        forget(connection)
        stats.inc(.upstream_cx_destroy, row: row)
        owner?.connectionFreed()
    }

    /// The upstream changed its stream limit: waiting requests may fit now.
    func http2SettingsChanged(_ connection: UpstreamHTTP2Connection) {
        if connection.state == .ready { dispatchPending(to: connection) }
    }

    /// The upstream sent GOAWAY: no new stream on this connection; it closes after its last
    /// one, and waiting requests get another connection.
    func http2GoAway(_ connection: UpstreamHTTP2Connection) {
        guard connection.state == .ready || connection.state == .draining else { return }
        connection.state = .draining
        if connection.activeStreams == 0 { connection.close() }
        tryCreateHTTP2Connections()
    }

    // MARK: streams

    /// A stream's request is over (its response ended, it failed, or the request let go of it):
    /// its channel closes (a stream still open is reset with CANCEL), and its room on the
    /// connection goes to a waiting request.
    func streamEnded(_ stream: UpstreamConnection) {
        guard let connection = stream.carrier, stream.state != .closed else { return }
        transition(stream, to: .closed)
        stream.close()
        if connection.state == .draining || (draining && pending.isEmpty) {
            if connection.activeStreams == 0 { connection.close() }
        } else if connection.state == .ready {
            if connection.activeStreams == 0 { connection.idleSince = .now() }
            if maxConnectionDuration != nil && NIODeadline.now() - connection.connectedAt >= maxConnectionDuration! {
                stats.inc(.upstream_cx_max_duration_reached, row: row)
                connection.state = .draining
                if connection.activeStreams == 0 { connection.close() }
                tryCreateHTTP2Connections()
                return
            }
            dispatchPending(to: connection)
        }
    }

    /// The worker's tick: connections with no stream for `idleTimeout` close, as do all idle ones
    /// when draining; one past `maxConnectionDuration` drains.
    func closeIdleHTTP2(olderThan deadline: NIODeadline, all: Bool, now: NIODeadline) {
        for connection in h2Connections where connection.state == .ready || connection.state == .draining {
            let expired = maxConnectionDuration.map { now - connection.connectedAt >= $0 } ?? false
            if expired && connection.state == .ready {
                stats.inc(.upstream_cx_max_duration_reached, row: row)
                connection.state = .draining
            }
            guard connection.activeStreams == 0 else { continue }
            if all || connection.state == .draining {
                connection.close()
            } else if connection.idleSince < deadline {
                stats.inc(.upstream_cx_idle_timeout, row: row)
                connection.close()
            }
        }
    }
}
