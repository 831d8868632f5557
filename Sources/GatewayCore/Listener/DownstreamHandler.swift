import HTTP1Wire
import NIOCore

/// One client connection (Envoy's HTTP connection manager with the HTTP/1.1 codec): frames
/// requests from the raw bytes, hands each to a `RouterFilter`, and encodes what the filter
/// sends back (it is the filter's `DownstreamStream`). One request at a time; pipelined requests wait
/// in a bounded buffer and are taken in a loop, never by recursion. Every wait is timed (see
/// `checkTimeouts`). Confined to its event loop.
final class DownstreamHandler: ChannelInboundHandler, DownstreamStream, RoundEndContinuation {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum State {
        case head
        case body
        /// The request is complete; waiting for the response to finish.
        case awaitingResponse
        /// A WebSocket after the upstream's 101: bytes go to and come from `tunnel`.
        case tunnel
        case closed
    }

    let worker: Worker
    /// The listener's limits as of this connection's accept (a reload applies to new connections).
    let limits: DownstreamLimits
    private(set) var context: ChannelHandlerContext!
    /// The client's requests from its bytes; holds what arrived behind the request in flight.
    private var requests: MessageFramer
    private var state = State.head
    /// The request in progress; one at a time on an HTTP/1.1 connection.
    private(set) var filter: RouterFilter?
    private var tunnel: UpgradeTunnel?
    /// A tunnel started and its end was not yet counted (`endStream`).
    private var tunnelStarted = false
    /// The client's address as X-Forwarded-For and the per-client rate limit see it.
    private(set) lazy var clientAddress: String = ClientAddressText.of(context.channel.remoteAddress)
    /// Remote then local address as `SocketAddress` prints them (ports included), Envoy's input
    /// for a generated affinity cookie.
    var connectionAddresses: String {
        "\(context.channel.remoteAddress?.description ?? "")\(context.channel.localAddress?.description ?? "")"
    }
    /// Header lines the router filter added for the next response head (nil: none, the usual case).
    private var addedResponseHeaders: [(String, String)]?
    func addResponseHeader(name: String, value: String) {
        addedResponseHeaders = (addedResponseHeaders ?? []) + [(name, value)]
    }

    /// Bytes written and not flushed yet: a flush with nothing to send costs nothing.
    private var unflushed = HeldWrite<ByteBuffer>()

    /// Whether this connection took a slot of the listener's `maxConnections`.
    private var admitted = false

    // Timestamps on the worker's coarse clock, for `checkTimeouts`.
    private var connectedAt: NIODeadline
    /// The last byte read from or written to the client (stream idle timeout).
    private var lastActivity: NIODeadline
    /// When the first byte of a head still incomplete arrived (request headers timeout).
    private var headStartedAt: NIODeadline?
    /// When the connection last became free of requests (idle timeout).
    private var idleSince: NIODeadline
    /// `maxConnectionDuration` passed: close after the current response.
    private var maxDurationReached = false

    /// The connection came over TLS (a Gateway HTTPS server): `x-forwarded-proto: https`.
    let isSecure: Bool

    init(worker: Worker, isSecure: Bool = false) {
        self.worker = worker
        self.isSecure = isSecure
        limits = worker.snapshot.config.downstream
        requests = MessageFramer(.request, options: HeadParser.Options(
            maxHeadBytes: limits.maxRequestHeadersKb * 1024, maxHeadersCount: limits.maxHeadersCount))
        let now = worker.coarseNow
        connectedAt = now
        lastActivity = now
        idleSince = now
    }

    var requestComplete: Bool { state == .awaitingResponse }
    var isHTTP2: Bool { false }
    var channel: Channel { context.channel }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // Added once the protocol is known (after ALPN, or the first bytes on a listener that
        // also speaks HTTP/2), the connection is active already and channelActive will not come.
        if context.channel.isActive { admit(context) }
    }

    /// The context holds this handler: dropping the reference back lets both go when the
    /// connection is over (channelInactive came first, so no filter calls in any more).
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        admit(context)
        context.fireChannelActive()
    }

    private func admit(_ context: ChannelHandlerContext) {
        guard worker.listenerStats.openConnection(limit: worker.snapshot.maxDownstreamConnections, row: worker.row) else {
            state = .closed
            context.close(promise: nil)
            return
        }
        admitted = true
        worker.downstreams[ObjectIdentifier(self)] = self
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let tunnel {
            self.tunnel = nil
            tunnel.close(from: self)
        }
        state = .closed
        requests.reset()
        guard admitted else { return }
        admitted = false
        worker.listenerStats.closeConnection(row: worker.row)
        worker.downstreams[ObjectIdentifier(self)] = nil
        outgoing = nil
        _ = unflushed.take()
        returnSpareHeads()
        if let filter {
            self.filter = nil
            filter.downstreamClosed()
            worker.listenerStats.add(.requestsActive, -1, row: worker.row)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state != .closed else { return }
        // Bytes pipelined behind a request in flight are the next request's: they must not keep
        // the one in flight from its stream idle timeout (a byte per timeout would, 16 KiB long).
        if state != .awaitingResponse { lastActivity = worker.coarseNow }
        if let tunnel {
            tunnel.received(unwrapInboundIn(data), from: self)
            return
        }
        requests.append(unwrapInboundIn(data))
        processInput()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        tunnel?.readComplete(from: self)
        flushIfNeeded()
    }

    /// Whether NIO's outbound buffer for the client is under its high watermark. While it is
    /// not, the filter stops reading its upstream (Envoy's flow control) and no further
    /// pipelined request is started.
    private(set) var isWritable = true

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        if isWritable { lastActivity = worker.coarseNow }
        filter?.downstreamWritabilityChanged(isWritable)
        tunnel?.writabilityChanged(of: self)
        context.fireChannelWritabilityChanged()
        if isWritable && state == .head { processInput() }
    }

    private var reading = ReadPause()

    /// Not reading the client while the upstream takes the request body slower than it comes.
    func pauseReading() {
        if reading.pause(.flowControl, on: context) { worker.listenerStats.inc(.flowControlPausedReading, row: worker.row) }
    }

    func resumeReading() {
        if reading.resume(.flowControl, on: context) { worker.listenerStats.inc(.flowControlResumedReading, row: worker.row) }
    }

    /// Sends what was written; a flush with nothing to send does not walk the pipeline.
    @inline(__always) func flushIfNeeded() {
        if let context, let last = unflushed.take() { context.writeAndFlush(NIOAny(last), promise: nil) }
    }

    /// Requests taken from the input in one pass before the loop yields to other connections:
    /// a client that pipelines thousands of requests the gateway answers itself shares its
    /// event loop instead of holding it.
    static let requestsPerPass = 32

    /// `processInput` is on the stack: a response completing inside it (a local reply) lets the
    /// loop go on instead of recursing.
    private var processing = false
    /// Requests are left for later (a pass yielded, or a pipelined request waits behind the answer
    /// just sent): they are taken once the loop has handled this round's events
    /// (`RoundEndQueue`).
    private var continuationScheduled = false

    private func processInput() {
        guard !processing else { return }
        processing = true
        var started = 0
        loop: while requests.bufferedBytes > 0 {
            switch state {
            case .closed, .awaitingResponse, .tunnel:
                break loop
            case .head:
                assert(filter == nil, "a new head while a request is active")
                // The client has not taken the answers it already has: let it catch up first.
                guard isWritable else { break loop }
                if started == Self.requestsPerPass {
                    scheduleContinuation()
                    break loop
                }
                let event: MessageFramer.Event
                do throws(HTTPParseError) {
                    event = try requests.next()
                } catch {
                    requests.reset()
                    protocolError(error)
                    break loop
                }
                switch event {
                case .needMore:
                    // The clock itself, not the tick's: a head timeout must never fire early,
                    // and only a head that arrives in pieces gets here.
                    if headStartedAt == nil { headStartedAt = .now() }
                    break loop
                case .head(let headBytes):
                    headStartedAt = nil
                    started += 1
                    state = .body
                    worker.listenerStats.inc(.requestsTotal, row: worker.row)
                    worker.listenerStats.inc(.requestsActive, row: worker.row)
                    // The body bytes already here go to the filter before it picks a connection,
                    // so a malformed body is refused before anything reaches the upstream.
                    let body = consumeBody()
                    if body == .refused { break loop }
                    if body == .ended { state = .awaitingResponse }
                    // May answer at once (a local reply): then `state` is `.head` again and the
                    // loop takes the next pipelined request.
                    startRequest(requests.head, headBytes)
                case .body, .end:
                    preconditionFailure("a request framer between requests gives a head or waits for one")
                }
            case .body:
                switch consumeBody() {
                case .refused, .needsMore:
                    // Bytes may stay buffered: a chunk-size line or trailer not complete yet.
                    break loop
                case .ended:
                    requestBodyComplete()
                }
            }
        }
        processing = false
        updateBacklogPause()
        flushIfNeeded()
    }

    private func scheduleContinuation() {
        guard !continuationScheduled else { return }
        continuationScheduled = true
        worker.roundEnd.continueInput(self)
    }

    /// The yield or wait that `continuationScheduled` marks is over: the requests left are taken.
    func continueAtRoundEnd() {
        assert(continuationScheduled, "a continuation runs once per wait")
        continuationScheduled = false
        if state == .head {
            processInput()
        } else {
            // Bytes that came first started a request: the pause this wait set is lifted here.
            updateBacklogPause()
        }
    }

    /// Pipelined bytes a connection may hold behind a request in flight and still read: a
    /// client's whole batch (wrk's pipeline script, a browser over HTTP/1.1) usually fits, and the
    /// connection stays registered for reading (HAProxy reads while its 16 KiB buffer has room).
    /// Pausing at the first byte held made every batch two `epoll_ctl` calls.
    static let pipelinedReadAheadBytes = 16 * 1024

    /// Stops reading the client while more than `pipelinedReadAheadBytes` it sent wait behind a
    /// request in flight, while any wait behind answers it has not taken or behind a yield, or
    /// beyond `perConnectionBufferLimitBytes`, so one client costs a bounded buffer whatever it
    /// sends (Envoy's per-connection buffer limit).
    private func updateBacklogPause() {
        guard state != .closed else { return }
        let waiting = requests.bufferedBytes
        let blocked = waiting > 0 && (!isWritable || continuationScheduled)
            || state == .awaitingResponse && waiting > Self.pipelinedReadAheadBytes
        reading.update(.backlog, holds: blocked || waiting > limits.perConnectionBufferLimitBytes, on: context)
    }

    private enum BodyProgress { case ended, needsMore, refused }

    /// Moves the body bytes that are here into the filter (or keeps them for it to collect).
    private func consumeBody() -> BodyProgress {
        while true {
            let event: MessageFramer.Event
            do throws(HTTPParseError) {
                event = try requests.next()
            } catch {
                requests.reset()
                if let filter {
                    filter.requestMalformed(error)
                } else {
                    // The head was counted as a request; no filter will end it.
                    worker.listenerStats.add(.requestsActive, -1, row: worker.row)
                    protocolError(error)
                }
                return .refused
            }
            switch event {
            case .body(let part): pendingBody(part)
            case .end: return .ended
            case .needMore: return .needsMore
            case .head: preconditionFailure("a head inside a request body")
            }
        }
    }

    /// Body that arrived before the filter existed is held here and given to it at start.
    private(set) var earlyBody: ByteBuffer?

    private func pendingBody(_ part: ByteBuffer) {
        if let filter {
            filter.requestBodyPart(part)
        } else if earlyBody == nil {
            earlyBody = part
        } else {
            var p = part
            earlyBody!.writeBuffer(&p)
        }
    }

    /// Routes a request whose head (and the body bytes already here) was framed.
    private func startRequest(_ head: MessageHead, _ headBytes: ByteBuffer) {
        requestKeepAlive = head.keepAlive
        requestMinorVersion = head.minorVersion
        responseBytesSent = 0
        closeAfterResponse = false
        let early = earlyBody
        earlyBody = nil
        // May answer at once (a local reply): the stream then ends before this returns.
        guard let filter = RouterFilter.route(stream: self, worker: worker, head: head, headBytes: headBytes,
                                              earlyBody: early) else { return }
        self.filter = filter
        filter.begin()
    }

    private func requestBodyComplete() {
        // The filter may have finished (and closed the connection) while it took the body's end.
        guard state == .body else { return }
        state = .awaitingResponse
        filter?.requestBodyEnded()
    }

    // MARK: the response (DownstreamStream)

    /// The request's keep-alive and version, for the response's connection handling.
    private var requestKeepAlive = true
    private var requestMinorVersion = 1
    /// The response must close the connection after it (decided with its head).
    private var closeAfterResponse = false
    private(set) var responseBytesSent = 0
    /// Response bytes not yet handed to the channel: the head and the body parts of one upstream
    /// read leave as one write (one syscall) instead of one per part.
    private var outgoing: ByteBuffer?
    /// `outgoing` is `spareResponseHead`'s storage (not a slice of the upstream's bytes).
    private var outgoingIsSpare = false
    /// Strips chunked framing from the response for an HTTP/1.0 client.
    private var dechunker: BodyDecoder?
    /// Body parts join the head (or the parts before them) up to this size; larger ones go alone.
    private static let coalesceBytes = 16 * 1024

    /// Head buffers each request on this connection reuses: the head sent upstream and the one
    /// sent back. While a write still holds the old storage, `clear` allocates anew, so reuse
    /// never touches bytes in flight.
    private var spareUpstreamHead: ByteBuffer?
    private var spareResponseHead: ByteBuffer?

    @inline(__always) private func reuse(_ spare: inout ByteBuffer?, capacity: Int) -> ByteBuffer {
        // A new connection starts with the buffers of closed ones (see `channelInactive`).
        guard var buffer = spare ?? worker.takeSpareHead() else { return context.channel.allocator.buffer(capacity: capacity) }
        spare = nil
        buffer.clear(minimumCapacity: capacity)
        return buffer
    }

    /// Gives this connection's head buffers to its worker, for whichever connection needs one
    /// next: a closed connection, or one idle for a tick, holds none (one still being written
    /// from is safe: `clear` on a buffer a write still holds allocates anew).
    private func returnSpareHeads() {
        if let b = spareUpstreamHead { worker.keepSpareHead(b) }
        if let b = spareResponseHead { worker.keepSpareHead(b) }
        spareUpstreamHead = nil
        spareResponseHead = nil
    }

    func headBuffer(capacity: Int) -> ByteBuffer { reuse(&spareUpstreamHead, capacity: capacity) }
    func recycle(_ buffer: ByteBuffer) { spareUpstreamHead = buffer }

    func encodeInterimHead(_ bytes: ByteBuffer) {
        write(bytes, flush: true)
    }

    func encodeHead(_ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming, upstreamServiceMs: Int) {
        encodeHead(head, bytes: bytes, framing: framing, upstreamServiceMs: upstreamServiceMs, edit: nil)
    }

    func encodeHead(_ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming, upstreamServiceMs: Int,
                    edit: ResponseHeadEdit) {
        encodeHead(head, bytes: bytes, framing: framing, upstreamServiceMs: upstreamServiceMs, edit: Optional(edit))
    }

    @inline(__always)
    private func encodeHead(_ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming, upstreamServiceMs: Int,
                            edit: ResponseHeadEdit?) {
        // An HTTP/1.0 client cannot read chunked coding: it gets the payload alone, ended by the close.
        dechunker = framing == .chunked && requestMinorVersion == 0 ? BodyDecoder(.chunked, errorStatus: 502) : nil
        closeAfterResponse = mustCloseAfterResponse || framing == .untilClose || dechunker != nil
        // Room for a small body too: it joins the head in one write (see `encodeBody`).
        var out = reuse(&spareResponseHead, capacity: bytes.readableBytes + 64 + 1024 + (edit?.lines.count ?? 0))
        HeadWriter.writeResponseHead(
            head, from: bytes, into: &out, dropFraming: head.status == 204 || dechunker != nil,
            upstreamServiceMs: upstreamServiceMs, close: closeAfterResponse, announceKeepAlive: requestMinorVersion == 0,
            // An HTTP/1.0 client gets an HTTP/1.0 answer, as Envoy's codec writes it.
            version: requestMinorVersion == 0 ? "HTTP/1.0" : nil, edit: edit)
        if let added = addedResponseHeaders {
            // Before the blank line that ends the head.
            assert(out.getBytes(at: out.writerIndex - 2, length: 2) == [13, 10], "a response head ends with CRLF")
            out.moveWriterIndex(to: out.writerIndex - 2)
            for (name, value) in added {
                out.writeString(name)
                out.writeStaticString(": ")
                out.writeString(value)
                out.writeStaticString("\r\n")
            }
            out.writeStaticString("\r\n")
            addedResponseHeaders = nil
        }
        responseBytesSent += out.readableBytes
        outgoing = out
        outgoingIsSpare = true
    }

    func encodeBody(_ part: ByteBuffer) {
        guard dechunker != nil else {
            appendToOutgoing(part)
            return
        }
        // The upstream connection checked this framing already; this pass only finds the payload.
        _ = try? part.withUnsafeReadableBytes { raw throws(HTTPParseError) in
            try dechunker!.consume(raw) { range in
                appendToOutgoing(part.getSlice(at: part.readerIndex + range.lowerBound, length: range.count)!)
            }
        }
    }

    private func appendToOutgoing(_ part: ByteBuffer) {
        responseBytesSent += part.readableBytes
        if outgoing == nil {
            outgoing = part
        } else if outgoing!.readableBytes + part.readableBytes <= Self.coalesceBytes {
            outgoing!.writeImmutableBuffer(part)
        } else {
            sendOutgoing()
            outgoing = part
        }
    }

    func flushResponse() {
        sendOutgoing()
        flushIfNeeded()
    }

    private func sendOutgoing() {
        guard let out = outgoing else { return }
        outgoing = nil
        write(out, flush: false)
        if outgoingIsSpare {
            outgoingIsSpare = false
            spareResponseHead = out
        }
    }

    func encodeLocalReply(status: Int, body: String, headers: [(String, String)], forceClose: Bool) {
        assert(outgoing == nil, "a local reply after part of a response")
        closeAfterResponse = forceClose || mustCloseAfterResponse
        let reply = LocalReply.make(status: status, body: body, close: closeAfterResponse, extraHeaders: headers,
                                    allocator: context.channel.allocator)
        responseBytesSent += reply.readableBytes
        // Not flushed here: the input loop flushes once after the requests it took, so
        // pipelined local replies leave in one write; a reply to a request in flight is flushed
        // by `endStream`.
        write(reply, flush: false)
    }

    func encodeLocalReply(status: Int, body: [UInt8], headers: [(String, String)], edit: ResponseHeadEdit?,
                          forceClose: Bool) {
        assert(outgoing == nil, "a local reply after part of a response")
        closeAfterResponse = forceClose || mustCloseAfterResponse
        let reply = LocalReply.make(status: status, body: body, close: closeAfterResponse, extraHeaders: headers, edit: edit,
                                    allocator: context.channel.allocator)
        responseBytesSent += reply.readableBytes
        write(reply, flush: false)
    }

    func encodeSwitchingProtocols(_ head: MessageHead, bytes: ByteBuffer) {
        assert(outgoing == nil, "a protocol switch after part of a response")
        var out = context.channel.allocator.buffer(capacity: bytes.readableBytes + 48)
        HeadWriter.writeSwitchingProtocolsHead(head, from: bytes, into: &out)
        responseBytesSent += out.readableBytes
        write(out)
    }

    var tunnelEnd: TunnelEnd { self }

    func startTunnel(_ tunnel: UpgradeTunnel) {
        // The upgrade request has no body: it was whole before it went upstream.
        assert(state == .awaitingResponse && self.tunnel == nil, "a tunnel replaces the request in flight")
        state = .tunnel
        self.tunnel = tunnel
        tunnelStarted = true
        worker.listenerStats.inc(.upgradesTotal, row: worker.row)
        worker.listenerStats.inc(.upgradesActive, row: worker.row)
        if let early = requests.takeRemainingBytes() { tunnel.received(early, from: self) }
        reading.update(.backlog, holds: false, on: context)
        resumeReading()
    }

    /// The port the client connected to (the listener's).
    private(set) lazy var localPort: Int = context.channel.localAddress?.port ?? 0

    /// The response is over: the connection takes the next request, or closes.
    func endStream(reset: Bool) {
        if tunnelStarted {
            // A tunnel's end: its request is over and the connection goes.
            tunnelStarted = false
            tunnelClose()
            worker.listenerStats.add(.upgradesActive, -1, row: worker.row)
            filter = nil
            worker.listenerStats.add(.requestsActive, -1, row: worker.row)
            return
        }
        sendOutgoing()
        addedResponseHeaders = nil
        dechunker = nil
        filter = nil
        resumeReading()
        worker.listenerStats.add(.requestsActive, -1, row: worker.row)
        idleSince = worker.coarseNow
        if reset || closeAfterResponse || worker.draining || maxDurationReached || state != .awaitingResponse {
            state = .closed
            guard let context else { return }
            writeLastAndClose(context.channel.allocator.buffer(capacity: 0))
            return
        }
        state = .head
        // Inside `processInput` (a local reply) its loop goes on and flushes once at its end.
        guard !processing else { return }
        if requests.bufferedBytes > 0 {
            // A pipelined request waits, and starts at the end of the loop's round. Here the
            // upstream connection's read that ended this response is still on the stack, and the
            // connection rejoins the pool only when that read is over (bytes after a response
            // must not be taken for the next one's): started now, the request would find it busy
            // and take another, so a pipelining client would keep two upstream connections where
            // one serves it. (Started right after that read instead, the requests of a round
            // alternate with the answers to the clients, and throughput fell by 10 %.)
            scheduleContinuation()
        } else {
            updateBacklogPause()
        }
        // Sent now, not at the round's end as upstream requests are: held to the round's end,
        // answers gained 1–3 % but reached clients after the pool had acted on the round (a
        // closed connection's waiting request connected), so a client's next request no longer
        // met the circuit breaker where `validate --explain` puts its knee.
        flushIfNeeded()
    }

    /// The response must close the connection after it: the client asked (or spoke HTTP/1.0
    /// without keep-alive), a drain, the connection's maximum duration, a request body left unread.
    private var mustCloseAfterResponse: Bool {
        !requestKeepAlive || worker.draining || maxDurationReached || state != .awaitingResponse
    }

    @inline(__always) func write(_ buffer: ByteBuffer, flush: Bool = false) {
        guard let context else { return }
        lastActivity = worker.coarseNow
        if let previous = unflushed.hold(buffer) { context.write(NIOAny(previous), promise: nil) }
        if flush { flushIfNeeded() }
    }

    private func protocolError(_ error: HTTPParseError) {
        worker.listenerStats.inc(.protocolErrors, row: worker.row)
        localReplyAndClose(error)
    }

    /// Answers `error` and closes: the connection carries no request the gateway could finish.
    private func localReplyAndClose(_ error: HTTPParseError) {
        worker.listenerStats.countResponse(error.status, row: worker.row)
        state = .closed
        requests.reset()
        let reply = LocalReply.make(
            status: error.status, body: error.reason, close: true, allocator: context.channel.allocator)
        writeLastAndClose(reply)
    }

    /// Writes `bytes` behind everything written before (a response still held goes first) and
    /// closes the connection once they are out.
    private func writeLastAndClose(_ last: ByteBuffer) {
        assert(state == .closed, "a connection is closed only once nothing more will be read from it")
        closing = true
        flushIfNeeded()
        var bytes = last
        // NIO fails the writes still queued when a channel closes, so the close waits for them.
        // A short answer usually leaves entirely in the flush: then the close follows at once,
        // without the promise and callback a connection per request would otherwise allocate.
        // (Over TLS the bytes the channel holds are not the answer's; the promise decides there.)
        if !isSecure {
            context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
            if (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) == 0 {
                context.close(promise: nil)
                return
            }
            // Writes complete in order: an empty one completes when the answer has gone.
            bytes = context.channel.allocator.buffer(capacity: 0)
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(bytes)).whenComplete { _ in channel.close(promise: nil) }
    }

    /// Drain: a connection between requests is closed now; a busy one closes after its response.
    func closeIfIdle() {
        if filter == nil && state == .head { context?.close(promise: nil) }
    }

    // MARK: timeouts

    /// The last answer is written and the connection closes once it is out; a client that never
    /// takes it would keep the connection (and its `maxConnections` slot) open, so `checkTimeouts`
    /// closes it anyway after `streamIdleTimeout` without progress (Envoy's delayed close timeout).
    private var closing = false
    static let closeWithoutStreamIdleTimeout = TimeAmount.minutes(5)

    /// Called on every worker tick: ends what waited too long (Envoy's downstream timeouts).
    func checkTimeouts(now: NIODeadline) {
        guard let context else { return }
        if state == .closed {
            let limit = limits.streamIdleTimeout ?? Self.closeWithoutStreamIdleTimeout
            if closing && now - lastActivity >= limit {
                closing = false
                worker.listenerStats.inc(.delayedCloseTimeouts, row: worker.row)
                context.close(promise: nil)
            }
            return
        }
        if let limit = limits.maxConnectionDuration, !maxDurationReached, now - connectedAt >= limit {
            maxDurationReached = true
            worker.listenerStats.inc(.maxDurationReached, row: worker.row)
        }
        switch state {
        case .closed:
            return
        case .head where filter == nil:
            if let started = headStartedAt {
                if let limit = limits.requestHeadersTimeout, now - started >= limit {
                    worker.listenerStats.inc(.headerTimeouts, row: worker.row)
                    localReplyAndClose(HTTPParseError(408, "request header timeout"))
                    return
                }
                if let limit = limits.streamIdleTimeout, now - lastActivity >= limit {
                    worker.listenerStats.inc(.streamIdleTimeouts, row: worker.row)
                    localReplyAndClose(HTTPParseError(408, "stream timeout"))
                    return
                }
            } else if requests.bufferedBytes > 0 || !isWritable {
                // Answers the client does not take, with its next requests waiting behind them.
                if let limit = limits.streamIdleTimeout, now - lastActivity >= limit {
                    worker.listenerStats.inc(.streamIdleTimeouts, row: worker.row)
                    state = .closed
                    context.close(promise: nil)
                }
            } else if maxDurationReached {
                state = .closed
                context.close(promise: nil)
            } else if let limit = limits.idleTimeout, now - idleSince >= limit {
                worker.listenerStats.inc(.connectionIdleTimeouts, row: worker.row)
                state = .closed
                context.close(promise: nil)
            } else if now - idleSince >= Worker.tickInterval {
                // Idle a tick or more, maybe for long: its head buffers serve other connections
                // meanwhile (a kept-alive client's next request usually comes sooner and reuses
                // them, with no pool traffic per request).
                returnSpareHeads()
            }
        case .tunnel:
            // Nothing moved either way for the stream idle timeout: the WebSocket is given up.
            if let limit = limits.streamIdleTimeout, now - lastActivity >= limit, let tunnel {
                worker.listenerStats.inc(.streamIdleTimeouts, row: worker.row)
                tunnel.close(from: nil)
            }
        case .head, .body, .awaitingResponse:
            if let limit = limits.streamIdleTimeout, now - lastActivity >= limit, let filter {
                worker.listenerStats.inc(.streamIdleTimeouts, row: worker.row)
                filter.streamIdleTimedOut()
            }
        }
    }
}

extension DownstreamHandler: TunnelEnd {
    func tunnelWrite(_ bytes: ByteBuffer) {
        responseBytesSent += bytes.readableBytes
        write(bytes)
    }
    func tunnelFlush() { flushIfNeeded() }
    var tunnelWritable: Bool { isWritable }
    func tunnelPauseReading() { pauseReading() }
    func tunnelResumeReading() { resumeReading() }
    func tunnelClose() {
        tunnel = nil
        guard state != .closed, context != nil else { return }
        state = .closed
        writeLastAndClose(context.channel.allocator.buffer(capacity: 0))
    }
}
