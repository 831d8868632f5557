import HTTP1Wire
import NIOCore

/// What an upstream request reports to the router filter that started it (Envoy's
/// `RouterFilterInterface`). Each try ends with exactly one of `upstreamTryFailed` or
/// `upstreamResponseEnd`, unless the filter resets it first.
protocol UpstreamRequestOwner: AnyObject {
    /// The request has a connection and its head is written: the owner sends the body it holds
    /// (`sendBody`) and resumes reading a client it paused while waiting.
    func upstreamReady(_ request: UpstreamRequest)
    /// The final response head arrived; returns false to let go of it (the filter will retry).
    func upstreamHead(_ request: UpstreamRequest, _ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming,
                      serviceMs: Int) -> Bool
    func upstreamInterimHead(_ bytes: ByteBuffer)
    func upstreamBody(_ part: ByteBuffer)
    func upstreamReadComplete()
    func upstreamResponseEnd(_ request: UpstreamRequest)
    /// The try ended without a complete response; `result` classifies it for retry and outlier
    /// detection (already recorded for the host).
    func upstreamTryFailed(_ request: UpstreamRequest, _ result: TryResult, reason: String)
    func upstreamWritabilityChanged(_ writable: Bool)
    /// The upstream answered the WebSocket upgrade with a 101: `connection` is the owner's now,
    /// to tunnel (the try is over and reports nothing more).
    func upstreamSwitchedProtocols(_ request: UpstreamRequest, _ head: MessageHead, bytes: ByteBuffer, rest: ByteBuffer?,
                                   connection: UpstreamConnection)
}

/// One try of a request on one host (Envoy's `UpstreamRequest`): waits for a connection from the
/// host's pool, writes the head and the body it has, runs the per-try timeout, classifies how the
/// try ended (`TryResult`) for the host's counters and outlier detector, and relays the response
/// to its owner. Confined to the downstream's event loop.
final class UpstreamRequest: PoolWaiter, UpstreamResponseSink {
    enum State: Equatable {
        case waitingForConnection
        /// The request went out; no final response head yet.
        case awaitingResponse
        case receivingResponse
        /// Ended: completed, failed, or reset by the owner. Nothing more is reported.
        case done
    }

    /// Held until the try is `.done` (then dropped, which breaks the owner -> try -> owner
    /// cycle): a try reports nothing after it ended.
    private var owner: UpstreamRequestOwner?
    let hostPool: HostPool
    var host: Host { hostPool.host }
    private let cluster: ClusterSnapshot
    private let eventLoop: EventLoop
    private let row: Int
    private(set) var state = State.waitingForConnection
    private var connection: UpstreamConnection?
    private var perTryTimer: Scheduled<Void>?
    private let perTryTimeout: TimeAmount?
    private let requestIsHead: Bool
    /// The request asks to switch to WebSocket (a 101 may answer it).
    private let upgrade: Bool
    private var start = NIODeadline.uptimeNanoseconds(0)
    /// When the try asked the pool for a connection: `upstream_rq_time` counts from here.
    private var tryStart = NIODeadline.uptimeNanoseconds(0)
    /// The try's `upstream_rq_time` in microseconds, once its response ended (for the route's).
    private(set) var responseTimeMicros = 0
    /// When the response's last byte came (set with `responseTimeMicros`).
    private(set) var responseEndedAt = NIODeadline.uptimeNanoseconds(0)
    /// The whole request body was handed over (a response that ends before it leaves the rest
    /// of the body unsent, and the connection must not be reused).
    private var wholeBodyHandedOver = false

    init(owner: UpstreamRequestOwner, hostPool: HostPool, cluster: ClusterSnapshot, eventLoop: EventLoop, row: Int,
         perTryTimeout: TimeAmount?, requestIsHead: Bool, upgrade: Bool = false) {
        self.owner = owner
        self.hostPool = hostPool
        self.cluster = cluster
        self.eventLoop = eventLoop
        self.row = row
        self.perTryTimeout = perTryTimeout
        self.requestIsHead = requestIsHead
        self.upgrade = upgrade
    }

    /// Asks the pool for a connection; `head` is written when one is ready, and the owner then
    /// sends the body it holds (`upstreamReady`). `requestComplete`: the whole body has arrived.
    func start(head: ByteBuffer, requestComplete: Bool) {
        eventLoop.assertInEventLoop()
        tryStart = .now()
        pendingHead = head
        wholeBodyHandedOver = requestComplete
        hostPool.newStream(self)
    }

    private var pendingHead: ByteBuffer?
    /// Inside `upstreamReady`: body writes wait for the one flush after it.
    private var handingOver = false

    // MARK: pool

    func poolReady(_ connection: UpstreamConnection) {
        assert(state == .waitingForConnection, "a connection for a request that is not waiting")
        state = .awaitingResponse
        self.connection = connection
        cluster.stats.inc(.upstream_rq_total, row: row)
        host.count(.total, row: row)
        start = .now()
        connection.begin(sink: self, requestIsHead: requestIsHead, upgrade: upgrade)
        connection.write(pendingHead!, flush: false)
        pendingHead = nil
        // The body so far joins the head in one write.
        handingOver = true
        owner?.upstreamReady(self)
        handingOver = false
        // Sent with the loop's other upstream requests once this round's events are handled.
        // A send that fails then closes the connection, which ends the try.
        hostPool.roundEnd.flush(connection)
        if let perTryTimeout, state == .awaitingResponse {
            perTryTimer = eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: perTryTimeout) { self.perTryTimedOut() }
        }
    }

    func poolFailed(_ failure: PoolFailure) {
        assert(state == .waitingForConnection, "a pool failure for a request that is not waiting")
        pendingHead = nil
        switch failure {
        case .overflow:
            end(.overflow, reason: "overflow")
        case .connectFailure, .connectTimeout:
            end(.connectFailure, reason: "connection failure")
        }
    }

    /// Whether the request is on a connection (its body can be sent).
    var isConnected: Bool { connection != nil }

    // MARK: request body

    /// Request body bytes for the connection (only once `isConnected`; the owner holds the body
    /// until then). Flushed at once, except inside `upstreamReady` where the head waits for it.
    func sendBody(_ part: ByteBuffer) {
        assert(connection != nil, "body sent before the connection is ready")
        connection?.write(part, flush: !handingOver)
    }

    /// The request body is complete.
    func requestBodyEnded() { wholeBodyHandedOver = true }

    // MARK: flow control

    func pauseReading() { connection?.pauseReading() }
    func resumeReading() { connection?.resumeReading() }

    func upstreamWritabilityChanged(_ writable: Bool) {
        guard state != .done else { return }
        owner?.upstreamWritabilityChanged(writable)
    }

    // MARK: response

    func upstreamInterimHead(_ bytes: ByteBuffer) {
        guard state == .awaitingResponse else { return }
        owner?.upstreamInterimHead(bytes)
    }

    func upstreamResponseHead(_ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming) -> Bool {
        guard state == .awaitingResponse else { return false }
        cancelPerTryTimer()
        let code = head.status
        let now = NIODeadline.now()
        record(.response(status: code), now: now)
        cluster.stats.countResponse(code, row: row)
        let serviceMs = Int((now - start).nanoseconds / 1_000_000)
        state = .receivingResponse
        guard owner?.upstreamHead(self, head, bytes: bytes, framing: framing, serviceMs: serviceMs) == true else {
            // The owner retries: this connection goes (its response is not read to the end).
            connection = nil
            markDone()
            return false
        }
        return true
    }

    func upstreamSwitchedProtocols(_ head: MessageHead, bytes: ByteBuffer, rest: ByteBuffer?) {
        guard state == .awaitingResponse, let connection else { return }
        cancelPerTryTimer()
        record(.response(status: 101))
        cluster.stats.countResponse(101, row: row)
        self.connection = nil
        let owner = self.owner
        markDone()
        guard let owner else {
            connection.close()
            return
        }
        owner.upstreamSwitchedProtocols(self, head, bytes: bytes, rest: rest, connection: connection)
    }

    func upstreamResponseBody(_ body: ByteBuffer) {
        guard state == .receivingResponse else { return }
        owner?.upstreamBody(body)
    }

    func upstreamReadComplete() {
        guard state == .receivingResponse else { return }
        owner?.upstreamReadComplete()
    }

    func upstreamResponseEnd() {
        guard state == .receivingResponse, let connection else { return }
        if !wholeBodyHandedOver { connection.reusable = false }
        self.connection = nil
        let owner = self.owner
        markDone()
        cluster.stats.inc(.upstream_rq_completed, row: row)
        responseEndedAt = NIODeadline.now()
        responseTimeMicros = Int((responseEndedAt.uptimeNanoseconds &- tryStart.uptimeNanoseconds) / 1000)
        cluster.stats.upstreamRqTime.record(micros: responseTimeMicros, row: row)
        owner?.upstreamResponseEnd(self)
    }

    func upstreamFailed(_ failure: UpstreamFailure, responseStarted: Bool) {
        guard state == .awaitingResponse || state == .receivingResponse else { return }
        connection = nil
        switch failure {
        case .reset:
            cluster.stats.inc(.upstream_rq_rx_reset, row: row)
            // A response cut off after its head was counted already.
            end(.reset, reason: "connection termination", record: !responseStarted)
        case .refusedStream:
            cluster.stats.inc(.upstream_rq_rx_reset, row: row)
            end(.refusedStream, reason: "remote refused stream reset")
        case .protocolError(let error):
            end(.protocolError, reason: error.reason)
        }
    }

    // MARK: ending

    private func perTryTimedOut() {
        perTryTimer = nil
        guard state == .awaitingResponse else { return }
        cluster.stats.inc(.upstream_rq_per_try_timeout, row: row)
        let connection = self.connection
        self.connection = nil
        connection?.abandon()
        end(.timeout, reason: "per try timeout")
    }

    private func end(_ result: TryResult, reason: String, record shouldRecord: Bool = true) {
        cancelPerTryTimer()
        let owner = self.owner
        markDone()
        if shouldRecord { record(result) }
        owner?.upstreamTryFailed(self, result, reason: reason)
    }

    private func markDone() {
        state = .done
        owner = nil
    }

    /// The host's counters and its outlier detector learn how the try ended.
    private func record(_ result: TryResult, now: NIODeadline? = nil) {
        if result == .overflow { return }
        host.count(result.isHostError ? .error : .success, row: row)
        guard let settings = cluster.policy.outlierDetection else { return }
        cluster.outlier.record(result, host: host, settings: settings, now: now ?? .now())
    }

    /// The owner gives up on this try (route timeout, client gone, malformed request): a waiting
    /// request leaves the queue, a connection in use is closed. `timedOut`: the route's timeout
    /// ended it, which the host's outlier detector counts.
    func reset(timedOut: Bool = false) {
        cancelPerTryTimer()
        switch state {
        case .waitingForConnection:
            hostPool.cancel(self)
        case .awaitingResponse, .receivingResponse:
            if timedOut { record(.timeout) }
            connection?.abandon()
        case .done:
            break
        }
        pendingHead = nil
        connection = nil
        markDone()
    }

    private func cancelPerTryTimer() {
        perTryTimer?.cancel()
        perTryTimer = nil
    }
}
