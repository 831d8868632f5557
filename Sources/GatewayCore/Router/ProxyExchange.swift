import HTTP1Wire
import NIOCore

/// One downstream request on its way through the route's policies to an upstream and back
/// (Envoy's router filter + upstream request): rate limit → fault → load balancer → pool →
/// upstream, with the retry state, per-try and route timeouts, and the access log line.
/// Confined to the downstream's event loop.
final class ProxyExchange: PoolWaiter, UpstreamResponseSink {
    /// Request bodies up to this size are kept so a retry can send them again.
    static let maxReplayBytes = 1 << 20

    let downstream: DownstreamHandler
    let worker: Worker
    let route: Route
    let cluster: ClusterSnapshot
    let pool: ClusterPool
    private let headBytes: ByteBuffer
    private let head: MessageHead
    private let upstreamHead: ByteBuffer
    private let requestID: ByteBuffer
    private var body: ByteBuffer?
    private var replayable = true
    private var bytesReceived = 0
    private var retry: RetryState
    private var flags: ResponseFlags = []
    private let start: NIODeadline
    private var tryStart: NIODeadline
    private var hostPool: HostPool?
    private var waitingForConnection = false
    private var upstream: UpstreamConnection?
    private var lastHost: Host?
    private var responseStarted = false
    private var closeAfterResponse = false
    private var status = 0
    private var bytesSent = 0
    private var upstreamServiceMs: Int?
    /// Response bytes not yet handed to the downstream channel: the head and the body parts of
    /// one upstream read leave as one write (one syscall) instead of one per part.
    private var outgoing: ByteBuffer?
    /// `outgoing` is the connection's reusable response buffer (not a slice of the upstream's).
    private var ownsOutgoing = false
    private var routeTimer: Scheduled<Void>?
    private var tryTimer: Scheduled<Void>?
    private var backoffTimer: Scheduled<Void>?
    private var holdsRetryBudget = false
    private var done = false

    private let stats: ClusterStats

    // MARK: start

    /// Routes the request and runs the route's policies; answers locally when one refuses it.
    static func start(downstream: DownstreamHandler, head: MessageHead, headBytes: ByteBuffer) {
        let worker = downstream.worker
        let now = NIODeadline.now()
        let route = headBytes.withUnsafeReadableBytes { worker.snapshot.routes.match(head, $0) }
        guard let route else {
            worker.listenerStats.inc(.noRoute, row: worker.row)
            replyWithoutUpstream(downstream, head, headBytes, start: now, status: 404, body: "route not found", flags: .noRoute)
            return
        }
        if let limiter = route.rateLimiter {
            let d = limiter.check(client: limiter.config.perClient ? downstream.clientAddress : nil, now: now)
            guard d.allowed else {
                route.stats.rateLimited.wrappingIncrement(ordering: .relaxed)
                let reset = String(d.resetSeconds)
                replyWithoutUpstream(
                    downstream, head, headBytes, start: now, status: 429, body: "local_rate_limited", flags: .rateLimited,
                    headers: [
                        ("retry-after", reset), ("ratelimit-limit", String(limiter.config.maxTokens)),
                        ("ratelimit-remaining", "0"), ("ratelimit-reset", reset),
                    ], route: route)
                return
            }
            route.stats.rateLimitOK.wrappingIncrement(ordering: .relaxed)
        }
        guard let cluster = route.pickDestination(&worker.random) else {
            replyWithoutUpstream(downstream, head, headBytes, start: now, status: 503, body: "no healthy upstream",
                                 flags: .noHealthyUpstream, route: route)
            return
        }
        let exchange = ProxyExchange(downstream: downstream, route: route, cluster: cluster, head: head,
                                     headBytes: headBytes, start: now)
        downstream.attach(exchange)
        exchange.begin()
    }

    private init(downstream: DownstreamHandler, route: Route, cluster: ClusterSnapshot, head: MessageHead,
                 headBytes: ByteBuffer, start: NIODeadline) {
        self.downstream = downstream
        worker = downstream.worker
        self.route = route
        self.cluster = cluster
        pool = worker.pool(for: cluster)
        stats = cluster.cluster.stats
        self.head = head
        self.headBytes = headBytes
        self.start = start
        tryStart = start
        retry = RetryState(policy: route.config.retries)
        body = downstream.takeEarlyBody()
        bytesReceived = body?.readableBytes ?? 0
        if bytesReceived > Self.maxReplayBytes { replayable = false }
        (upstreamHead, requestID) = Self.makeUpstreamHead(head, headBytes, downstream)
    }

    /// The head sent upstream: the client's lines minus hop-by-hop ones, plus
    /// X-Forwarded-For, X-Forwarded-Proto and (when the client sent none) x-request-id.
    private static func makeUpstreamHead(_ head: MessageHead, _ headBytes: ByteBuffer, _ downstream: DownstreamHandler)
        -> (ByteBuffer, ByteBuffer)
    {
        var out = downstream.reuse(&downstream.spareUpstreamHead, capacity: head.length + 160)
        HeadWriter.copyWithoutHopByHop(head, from: headBytes, into: &out)
        out.writeStaticString("x-forwarded-for: ")
        if let xff = head.forwardedFor {
            out.writeImmutableBuffer(headBytes.getSlice(at: headBytes.readerIndex + xff.lowerBound, length: xff.count)!)
            out.writeStaticString(", ")
        }
        out.writeString(downstream.clientAddress)
        out.writeStaticString("\r\nx-forwarded-proto: http\r\n")
        let requestID: ByteBuffer
        if let id = head.requestID {
            out.writeStaticString("\r\n")
            requestID = headBytes.getSlice(at: headBytes.readerIndex + id.lowerBound, length: id.count)!
        } else {
            out.writeStaticString("x-request-id: ")
            let at = out.writerIndex
            downstream.worker.writeRequestID(into: &out)
            out.writeStaticString("\r\n\r\n")
            // Sliced only now: a slice taken before the last write would make that write copy the buffer.
            requestID = out.getSlice(at: at, length: 36)!
        }
        return (out, requestID)
    }

    private func begin() {
        if let timeout = route.timeout {
            routeTimer = worker.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: timeout) { self.routeTimedOut() }
        }
        guard route.hasFault else {
            tryOnce()
            return
        }
        let fault = FaultDecision.decide(route.config.fault, random: &worker.random)
        if let delay = fault.delay {
            flags.insert(.delayInjected)
            route.stats.faultDelays.wrappingIncrement(ordering: .relaxed)
            backoffTimer = worker.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: delay) {
                self.afterFaultDelay(abort: fault.abortStatus)
            }
            return
        }
        afterFaultDelay(abort: fault.abortStatus)
    }

    private func afterFaultDelay(abort: Int?) {
        backoffTimer = nil
        guard !done else { return }
        if let status = abort {
            flags.insert(.faultInjected)
            route.stats.faultAborts.wrappingIncrement(ordering: .relaxed)
            finishLocally(status: status, body: "fault filter abort")
            return
        }
        tryOnce()
    }

    // MARK: one try

    private func tryOnce() {
        backoffTimer = nil
        guard !done else { return }
        guard let host = pool.pickHost(policy: cluster.policy.loadBalancer, exclude: lastHost, random: &worker.random)
        else {
            stats.inc(.upstream_cx_none_healthy, row: worker.row)
            flags.insert(.noHealthyUpstream)
            finishLocally(status: 503, body: "no healthy upstream")
            return
        }
        lastHost = host
        let hp = pool.pool(for: host)
        hostPool = hp
        waitingForConnection = true
        hp.newStream(self)
    }

    func poolReady(_ connection: UpstreamConnection, host: HostPool) {
        waitingForConnection = false
        upstream = connection
        stats.inc(.upstream_rq_total, row: worker.row)
        host.host.count(.total, row: worker.row)
        tryStart = .now()
        connection.begin(sink: self, requestIsHead: isHeadRequest)
        // Reads paused for an earlier try, or while waiting for this connection, go on: this
        // connection reports its own watermarks.
        downstream.resumeReading()
        if let body, body.readableBytes > 0 {
            connection.write(upstreamHead, flush: false)
            connection.write(body, flush: true)
        } else {
            connection.write(upstreamHead, flush: true)
        }
        if !replayable { body = nil }
        if let perTry = route.perTryTimeout {
            tryTimer = worker.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: perTry) { self.perTryTimedOut() }
        }
    }

    func poolFailed(_ failure: PoolFailure) {
        waitingForConnection = false
        switch failure {
        case .overflow:
            flags.insert(.upstreamOverflow)
            finishLocally(
                status: 503, body: "upstream connect error or disconnect/reset before headers. reset reason: overflow",
                headers: [("x-envoy-overloaded", "true"), ("retry-after", "1")])
        case .connectFailure, .connectTimeout:
            recordFailedTry(.connectFailure)
            if scheduleRetry(.connectFailure) { return }
            flags.insert(.upstreamConnectFailure)
            finishLocally(
                status: 503,
                body: "upstream connect error or disconnect/reset before headers. reset reason: connection failure")
        }
    }

    /// Consults the retry state; when it allows a retry (and `maxRetries` has room) schedules it
    /// after the jittered backoff and returns true.
    private func scheduleRetry(_ outcome: TryOutcome) -> Bool {
        tryTimer?.cancel()
        tryTimer = nil
        guard retry.isRetriable(outcome) else { return false }
        guard retry.hasRetriesLeft, replayable else {
            if retry.policy.attempts > 0 {
                flags.insert(.retryLimitExceeded)
                stats.inc(.upstream_rq_retry_limit_exceeded, row: worker.row)
            }
            return false
        }
        releaseRetryBudget()
        guard cluster.cluster.resources.retries.tryAcquire() else {
            stats.inc(.upstream_rq_retry_overflow, row: worker.row)
            return false
        }
        holdsRetryBudget = true
        stats.inc(.upstream_rq_retry, row: worker.row)
        let delay = retry.nextBackoff(random: &worker.random)
        backoffTimer = worker.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: delay) { self.tryOnce() }
        return true
    }

    /// A try that ended without an answer: the host's error count and its outlier detector learn of it.
    private func recordFailedTry(_ result: OutlierDetector.Result) {
        guard let host = lastHost else { return }
        host.count(.error, row: worker.row)
        cluster.cluster.outlier.record(result, host: host, settings: cluster.policy.outlierDetection, now: .now())
    }

    private func releaseRetryBudget() {
        if holdsRetryBudget {
            holdsRetryBudget = false
            cluster.cluster.resources.retries.dec()
        }
    }

    /// Methods are case-sensitive (RFC 9110 §9.1): only `HEAD` has a response without a body.
    private var isHeadRequest: Bool {
        head.method.count == 4 && headBytes.withUnsafeReadableBytes { equalsExactly($0, head.method, "HEAD") }
    }

    // MARK: upstream response

    func upstreamResponseHead(_ response: MessageHead, bytes: ByteBuffer, framing: BodyFraming) {
        guard !done, let host = lastHost else { return }
        if response.status < 200 {
            downstream.write(bytes, flush: true)  // 100 Continue and friends pass through
            return
        }
        tryTimer?.cancel()
        tryTimer = nil
        let now = NIODeadline.now()
        let code = response.status
        cluster.cluster.outlier.record(.status(code), host: host, settings: cluster.policy.outlierDetection, now: now)
        stats.countResponse(code, row: worker.row)
        if code >= 500 { host.count(.error, row: worker.row) } else { host.count(.success, row: worker.row) }
        if scheduleRetry(.status(code)) {
            let connection = upstream
            upstream = nil
            connection?.abandon()
            return
        }
        if retry.retriesDone > 0 { stats.inc(.upstream_rq_retry_success, row: worker.row) }
        responseStarted = true
        status = code
        let serviceMs = Int((now - tryStart).nanoseconds / 1_000_000)
        upstreamServiceMs = serviceMs
        // An HTTP/1.0 client cannot read chunked coding: it gets the payload alone, ended by the close.
        if framing == .chunked && head.minorVersion == 0 { dechunker = BodyDecoder(.chunked, errorStatus: 502) }
        closeAfterResponse = downstream.mustCloseAfterResponse(requestKeepAlive: head.keepAlive) || framing == .untilClose
            || dechunker != nil
        // Room for a small body too: it joins the head in one write (see `upstreamResponseBody`).
        var out = downstream.reuse(&downstream.spareResponseHead, capacity: bytes.readableBytes + 64 + 1024)
        ownsOutgoing = true
        HeadWriter.copyWithoutHopByHop(response, from: bytes, into: &out, dropFraming: code == 204 || dechunker != nil)
        out.writeStaticString("x-envoy-upstream-service-time: ")
        out.writeDecimal(serviceMs)
        out.writeStaticString("\r\n")
        if closeAfterResponse {
            out.writeStaticString("connection: close\r\n")
        } else if head.minorVersion == 0 {
            out.writeStaticString("connection: keep-alive\r\n")
        }
        out.writeStaticString("\r\n")
        bytesSent += out.readableBytes
        outgoing = out
    }

    /// Body parts join the head (or the parts before them) up to this size; larger ones go alone.
    private static let coalesceBytes = 16 * 1024

    /// Strips chunked framing from the response for an HTTP/1.0 client.
    private var dechunker: BodyDecoder?

    func upstreamResponseBody(_ part: ByteBuffer) {
        guard !done else { return }
        if dechunker != nil {
            // The upstream connection checked this framing already; this pass only finds the payload.
            _ = try? part.withUnsafeReadableBytes { raw throws(HTTPParseError) in
                try dechunker!.consume(raw) { range in
                    appendToOutgoing(part.getSlice(at: part.readerIndex + range.lowerBound, length: range.count)!)
                }
            }
            return
        }
        appendToOutgoing(part)
    }

    private func appendToOutgoing(_ part: ByteBuffer) {
        bytesSent += part.readableBytes
        if outgoing == nil {
            outgoing = part
        } else if outgoing!.readableBytes + part.readableBytes <= Self.coalesceBytes {
            outgoing!.writeImmutableBuffer(part)
        } else {
            sendOutgoing()
            outgoing = part
        }
    }

    /// The upstream read batch is over: what it brought goes to the client now.
    func upstreamReadComplete() {
        guard !done else { return }
        sendOutgoing()
        downstream.flushIfNeeded()
    }

    private func sendOutgoing() {
        if let out = outgoing {
            outgoing = nil
            downstream.write(out, flush: false)
            // The client may have fallen behind before this exchange began (no transition to see).
            if !downstream.writable { upstream?.pauseReading() }
            if ownsOutgoing {
                ownsOutgoing = false
                downstream.spareResponseHead = out
            }
        }
    }

    func upstreamResponseEnd() {
        guard !done else { return }
        if !downstream.requestComplete { upstream?.mustClose = true }
        upstream = nil
        stats.inc(.upstream_rq_completed, row: worker.row)
        finish(close: closeAfterResponse)
    }

    func upstreamReset(responseStarted upstreamStarted: Bool) {
        guard !done else { return }
        upstream = nil
        if responseStarted {
            // Part of the answer is already with the client: all we can do is cut it off.
            flags.insert(.upstreamTermination)
            stats.inc(.upstream_rq_rx_reset, row: worker.row)
            finish(close: true)
            return
        }
        stats.inc(.upstream_rq_rx_reset, row: worker.row)
        recordFailedTry(.reset)
        if scheduleRetry(.reset) { return }
        flags.insert(.upstreamTermination)
        finishLocally(
            status: 503, body: "upstream connect error or disconnect/reset before headers. reset reason: connection termination")
    }

    /// A malformed response is never forwarded and never retried (a retry would most likely
    /// meet the same upstream bug): `502`, flag `UPE`, and the host's outlier detector counts a
    /// gateway error, as Envoy does.
    func upstreamProtocolError(_ error: HTTPParseError, responseStarted upstreamStarted: Bool) {
        guard !done else { return }
        upstream = nil
        flags.insert(.upstreamProtocolError)
        if let host = lastHost {
            host.count(.error, row: worker.row)
            cluster.cluster.outlier.record(.status(502), host: host, settings: cluster.policy.outlierDetection, now: .now())
        }
        if responseStarted {
            finish(close: true)
        } else {
            finishLocally(status: 502, body: "upstream protocol error: \(error.reason)")
        }
    }

    // MARK: timeouts

    private func perTryTimedOut() {
        tryTimer = nil
        guard !done, !responseStarted else { return }
        stats.inc(.upstream_rq_per_try_timeout, row: worker.row)
        let connection = upstream
        upstream = nil
        connection?.abandon()
        recordFailedTry(.timeout)
        if scheduleRetry(.perTryTimeout) { return }
        flags.insert(.upstreamTimeout)
        finishLocally(status: 504, body: "upstream request timeout")
    }

    private func routeTimedOut() {
        routeTimer = nil
        guard !done else { return }
        stats.inc(.upstream_rq_timeout, row: worker.row)
        flags.insert(.upstreamTimeout)
        if let connection = upstream {
            upstream = nil
            connection.abandon()
            recordFailedTry(.timeout)
        }
        if responseStarted {
            finish(close: true)
        } else {
            finishLocally(status: 504, body: "upstream request timeout")
        }
    }

    // MARK: downstream events

    func requestBodyPart(_ part: ByteBuffer) {
        bytesReceived += part.readableBytes
        if let upstream {
            upstream.write(part, flush: true)
            guard replayable else { return }
        }
        if body == nil {
            body = part
        } else {
            body!.writeImmutableBuffer(part)
        }
        if replayable && body!.readableBytes > Self.maxReplayBytes {
            replayable = false
            if upstream != nil { body = nil }
        }
        // Waiting for a connection with more body than a retry would keep: hold the client off
        // until there is somewhere to send it.
        if upstream == nil && body!.readableBytes > Self.maxReplayBytes { downstream.pauseReading() }
    }

    func requestEnded() {}

    // MARK: flow control (Envoy's watermarks: the side that cannot keep up stops the other's reads)

    func downstreamWritabilityChanged(_ writable: Bool) {
        if writable { upstream?.resumeReading() } else { upstream?.pauseReading() }
    }

    func upstreamWritabilityChanged(_ writable: Bool) {
        guard !done else { return }
        if writable { downstream.resumeReading() } else { downstream.pauseReading() }
    }

    func requestMalformed(_ error: HTTPParseError) {
        guard !done else { return }
        flags.insert(.downstreamProtocolError)
        worker.listenerStats.inc(.protocolErrors, row: worker.row)
        dropUpstream()
        if responseStarted {
            finish(close: true)
        } else {
            finishLocally(status: error.status, body: error.reason)
        }
    }

    /// No bytes either way for the listener's `streamIdleTimeout`: Envoy answers `408` when
    /// nothing of the response was sent yet, else it can only cut the response off.
    func streamIdleTimedOut() {
        guard !done else { return }
        flags.insert(.streamIdleTimeout)
        dropUpstream()
        if responseStarted {
            finish(close: true)
        } else {
            closeAfterResponse = true
            finishLocally(status: 408, body: "stream timeout", forceClose: true)
        }
    }

    func downstreamClosed() {
        guard !done else { return }
        flags.insert(.downstreamTermination)
        dropUpstream()
        finish(close: true, downstreamGone: true)
    }

    private func dropUpstream() {
        if waitingForConnection, let hp = hostPool {
            waitingForConnection = false
            hp.cancel(self)
        }
        if let connection = upstream {
            upstream = nil
            connection.abandon()
        }
    }

    // MARK: finishing

    private func finishLocally(status: Int, body: String, headers: [(String, String)] = [], forceClose: Bool = false) {
        let close = forceClose || downstream.mustCloseAfterResponse(requestKeepAlive: head.keepAlive)
        let reply = LocalReply.make(status: status, body: body, close: close, extraHeaders: headers,
                                    allocator: downstream.channel.allocator)
        self.status = status
        bytesSent = reply.readableBytes
        downstream.write(reply, flush: false)
        finish(close: close)
    }

    private func finish(close: Bool, downstreamGone: Bool = false) {
        done = true
        routeTimer?.cancel()
        tryTimer?.cancel()
        backoffTimer?.cancel()
        routeTimer = nil
        tryTimer = nil
        backoffTimer = nil
        releaseRetryBudget()
        dropUpstream()
        worker.listenerStats.countResponse(status, row: worker.row)
        Self.log(worker, head, headBytes, start: start, status: status, flags: flags, received: bytesReceived,
                 sent: bytesSent, serviceMs: upstreamServiceMs, host: lastHost?.endpoint, requestID: requestID,
                 route: route)
        if downstreamGone {
            outgoing = nil
            worker.listenerStats.add(.requestsActive, -1, row: worker.row)
        } else {
            sendOutgoing()
            downstream.flushIfNeeded()
            downstream.spareUpstreamHead = upstreamHead
            downstream.responseComplete(close: close)
        }
    }

    private static func replyWithoutUpstream(
        _ downstream: DownstreamHandler, _ head: MessageHead, _ headBytes: ByteBuffer, start: NIODeadline,
        status: Int, body: String, flags: ResponseFlags, headers: [(String, String)] = [], route: Route? = nil
    ) {
        let close = downstream.mustCloseAfterResponse(requestKeepAlive: head.keepAlive)
        let reply = LocalReply.make(status: status, body: body, close: close, extraHeaders: headers,
                                    allocator: downstream.channel.allocator)
        // Not flushed here: the downstream's input loop flushes once after the requests it took,
        // so pipelined local replies leave in one write.
        downstream.write(reply, flush: false)
        downstream.worker.listenerStats.countResponse(status, row: downstream.worker.row)
        let requestID = head.requestID.map { headBytes.getSlice(at: headBytes.readerIndex + $0.lowerBound, length: $0.count)! }
        log(downstream.worker, head, headBytes, start: start, status: status, flags: flags,
            received: downstream.takeEarlyBody()?.readableBytes ?? 0, sent: reply.readableBytes, serviceMs: nil,
            host: nil, requestID: requestID, route: route)
        downstream.responseComplete(close: close)
    }

    private static func log(
        _ worker: Worker, _ head: MessageHead, _ headBytes: ByteBuffer, start: NIODeadline, status: Int,
        flags: ResponseFlags, received: Int, sent: Int, serviceMs: Int?, host: Endpoint?, requestID: ByteBuffer?,
        route: Route?
    ) {
        guard worker.accessLog.isEnabled else { return }
        let base = headBytes.readerIndex
        worker.accessLog.log(AccessLog.Entry(
            method: headBytes.getSlice(at: base + head.method.lowerBound, length: head.method.count)!,
            path: headBytes.getSlice(at: base + head.target.lowerBound, length: head.target.count)!,
            minorVersion: head.minorVersion, status: status, flags: flags, bytesReceived: received, bytesSent: sent,
            durationMs: Int((NIODeadline.now() - start).nanoseconds / 1_000_000), upstreamServiceMs: serviceMs,
            upstreamHost: host, requestID: requestID, route: route?.config.name))
    }
}
