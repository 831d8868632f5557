import Atomics

/// Downstream (listener) counters, Envoy's `http.ingress.*`.
public final class ListenerStats: Sendable {
    enum Counter: Int, CaseIterable {
        case connectionsTotal, connectionsActive, requestsTotal, requestsActive
        case responses1xx, responses2xx, responses3xx, responses4xx, responses5xx
        case noRoute, protocolErrors
        case flowControlPausedReading, flowControlResumedReading
        case headerTimeouts, connectionIdleTimeouts, streamIdleTimeouts, connectionOverflows, maxDurationReached
        case delayedCloseTimeouts
        /// WebSocket upgrades the upstream accepted (101), and those still tunnelling.
        case upgradesTotal, upgradesActive
        // TLS listeners (Gateway servers with protocol HTTPS).
        case tlsHandshakes, tlsHandshakeErrors, tlsHandshakeTimeouts, noFilterChainMatch
        /// HTTP/2 client connections; GOAWAYs the gateway sent to end one gracefully; connections
        /// NIOHTTP2 ended for a protocol error or an attack (floods, rapid resets).
        case http2ConnectionsTotal, http2ConnectionsActive, http2GoAwaysSent, http2ConnectionErrors
    }

    private let values = ShardedCounters(count: Counter.allCases.count)
    /// Envoy's `downstream_rq_time`: from the request's head to the end of its response.
    public let downstreamRqTime: LatencyHistogram

    public init(histogramRows: HistogramRows = .any) {
        downstreamRqTime = LatencyHistogram(rows: histogramRows)
    }

    deinit { cells.deallocate() }

    /// Open client connections across all event loops, exact, for `maxConnections`.
    private let cells = AtomicCells(count: 1)
    private var openConnections: UnsafeAtomic<Int> { cells[0] }

    /// Takes a connection slot if fewer than `limit` are open.
    private func admitConnection(limit: Int) -> Bool {
        if openConnections.loadThenWrappingIncrement(ordering: .relaxed) < limit { return true }
        openConnections.wrappingDecrement(ordering: .relaxed)
        return false
    }

    private func releaseConnection() { openConnections.wrappingDecrement(ordering: .relaxed) }

    /// A client connection arrived (HTTP/1.1 or HTTP/2): counted, and admitted if under `limit`.
    /// False: over it, the caller closes the connection at once, before it costs a buffer.
    func openConnection(limit: Int, row: Int) -> Bool {
        inc(.connectionsTotal, row: row)
        guard admitConnection(limit: limit) else {
            inc(.connectionOverflows, row: row)
            return false
        }
        inc(.connectionsActive, row: row)
        return true
    }

    /// An admitted connection closed.
    func closeConnection(row: Int) {
        releaseConnection()
        add(.connectionsActive, -1, row: row)
    }

    @inline(__always) func add(_ c: Counter, _ delta: Int, row: Int) { values.add(c.rawValue, delta, row: row) }
    @inline(__always) func inc(_ c: Counter, row: Int) { values.increment(c.rawValue, row: row) }
    subscript(_ c: Counter) -> Int { values[c.rawValue] }

    /// `status` 0 (the client left before any answer) counts in no class, as in Envoy.
    @inline(__always) func countResponse(_ status: Int, row: Int) {
        assert(Counter.responses5xx.rawValue - Counter.responses1xx.rawValue == 4, "the class counters are in order")
        guard let codeClass = responseCodeClass(status) else { return }
        values.increment(Counter.responses1xx.rawValue + codeClass, row: row)
    }

    public var counters: [(String, Int)] {
        [
            ("downstream_cx_total", self[.connectionsTotal]),
            ("downstream_cx_active", self[.connectionsActive]),
            ("downstream_rq_total", self[.requestsTotal]),
            ("downstream_rq_active", self[.requestsActive]),
            ("downstream_rq_1xx", self[.responses1xx]),
            ("downstream_rq_2xx", self[.responses2xx]),
            ("downstream_rq_3xx", self[.responses3xx]),
            ("downstream_rq_4xx", self[.responses4xx]),
            ("downstream_rq_5xx", self[.responses5xx]),
            ("no_route", self[.noRoute]),
            ("downstream_cx_protocol_error", self[.protocolErrors]),
            ("downstream_flow_control_paused_reading_total", self[.flowControlPausedReading]),
            ("downstream_flow_control_resumed_reading_total", self[.flowControlResumedReading]),
            ("downstream_rq_header_timeout", self[.headerTimeouts]),
            ("downstream_cx_idle_timeout", self[.connectionIdleTimeouts]),
            ("downstream_rq_idle_timeout", self[.streamIdleTimeouts]),
            ("downstream_cx_overflow", self[.connectionOverflows]),
            ("downstream_cx_max_duration_reached", self[.maxDurationReached]),
            ("downstream_cx_delayed_close_timeout", self[.delayedCloseTimeouts]),
            ("downstream_cx_upgrades_total", self[.upgradesTotal]),
            ("downstream_cx_upgrades_active", self[.upgradesActive]),
            ("ssl.handshake", self[.tlsHandshakes]),
            ("ssl.connection_error", self[.tlsHandshakeErrors]),
            ("ssl.handshake_timeout", self[.tlsHandshakeTimeouts]),
            ("no_filter_chain_match", self[.noFilterChainMatch]),
            ("downstream_cx_http2_total", self[.http2ConnectionsTotal]),
            ("downstream_cx_http2_active", self[.http2ConnectionsActive]),
            ("http2.goaway_sent", self[.http2GoAwaysSent]),
            ("http2.connection_errors", self[.http2ConnectionErrors]),
        ]
    }
}
