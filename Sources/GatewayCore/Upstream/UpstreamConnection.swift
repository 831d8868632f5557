import DirectIO
import HTTP1Wire
import NIOCore

/// Why a try's connection ended without a complete response.
enum UpstreamFailure {
    /// Closed or reset before the response was complete.
    case reset
    /// An HTTP/2 stream the upstream refused before processing it (REFUSED_STREAM, or above a
    /// GOAWAY's last stream id): safe to send again.
    case refusedStream
    /// The upstream's bytes are not a valid HTTP/1.1 response (Envoy's upstream protocol error).
    case protocolError(HTTPParseError)
}

/// What an upstream connection reports to the request it is serving. Every call is made with
/// the connection's state already updated, so the request may act at once (close, retry).
protocol UpstreamResponseSink: AnyObject {
    /// The final response head. Returns false when the request lets go of this response (it will
    /// retry): the connection then reads no more of it and closes.
    func upstreamResponseHead(_ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming) -> Bool
    /// A 1xx interim response (100 Continue); the final head follows.
    func upstreamInterimHead(_ bytes: ByteBuffer)
    func upstreamResponseBody(_ body: ByteBuffer)
    func upstreamResponseEnd()
    /// The upstream switched to the protocol the request asked for (a 101 to a WebSocket
    /// upgrade): `rest` is what it sent after the head. The connection leaves HTTP for good; the
    /// sink makes it one end of a tunnel (`startTunnel`) or closes it.
    func upstreamSwitchedProtocols(_ head: MessageHead, bytes: ByteBuffer, rest: ByteBuffer?)
    /// One read batch from the upstream is over: bytes held back to coalesce should go out.
    func upstreamReadComplete()
    /// The connection failed before the response was complete; `responseStarted`: its head came.
    func upstreamFailed(_ failure: UpstreamFailure, responseStarted: Bool)
    /// The connection's outbound buffer crossed a watermark: stop or resume reading the request body.
    func upstreamWritabilityChanged(_ writable: Bool)
}

/// One pooled HTTP/1.1 connection to an upstream host, or one stream of an HTTP/2 one (`carrier`
/// set: its channel is the stream's, behind an `HTTP2UpstreamStreamCodec` that speaks HTTP/1.1
/// to it). Confined to its event loop.
/// It frames responses (head, body boundaries) and hands the bytes on unchanged; its life is
/// the explicit `State` the pool moves it through (Envoy's `ActiveClient::State`).
final class UpstreamConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum State: Equatable {
        /// The TCP connect is in progress.
        case connecting
        /// In the pool's idle list, reading only to notice the upstream closing it.
        case idle
        /// Serving one request: the only state in which it counts as an active request.
        case active
        /// The response ended during the current read batch: the connection goes back to the
        /// pool when the batch is over, so bytes the upstream sent after the response in the
        /// same batch are seen (and the connection closed) before anyone else's request is written.
        case releasing
        /// Closed, or asked to close; the pool no longer counts it.
        case closed
    }

    let pool: HostPool
    /// The HTTP/2 connection this stream is on (nil: an HTTP/1.1 connection of its own).
    let carrier: UpstreamHTTP2Connection?
    /// HTTP/2: the request the pool opens this stream for, until its channel exists.
    var openingFor: PoolWaiter?
    /// How the stream ended, as its codec told before the channel closed (nil: a plain close).
    private var streamFailure: UpstreamFailure?
    /// Moved only by the pool (`HostPool.transition`), which keeps its counts in step.
    var state = State.connecting
    /// False once anything says this connection must not carry another request: the upstream's
    /// `Connection: close`, bytes after a response, a request body not sent whole.
    var reusable = true
    private(set) var channel: Channel?
    private var sink: UpstreamResponseSink?
    private(set) var requestsServed = 0
    var idleSince = NIODeadline.uptimeNanoseconds(0)
    /// When the connect completed: `maxConnectionDuration` counts from here, as Envoy's does.
    var connectedAt = NIODeadline.uptimeNanoseconds(0)
    /// When the pool began to connect it, for `upstream_cx_connect_ms`.
    var connectStartedAt = NIODeadline.uptimeNanoseconds(0)

    private var framer = MessageFramer(.response, options: .responseDefaults)
    private var requestWasHead = false
    /// The request in flight asked to switch to WebSocket: a 101 is its answer, not an error.
    private var upgradeRequested = false
    /// Set after a 101: every byte is the tunnel's, in both directions.
    private var tunnel: UpgradeTunnel?

    init(pool: HostPool, carrier: UpstreamHTTP2Connection? = nil) {
        self.pool = pool
        self.carrier = carrier
    }

    /// Writes go through the handler's context: straight to the pipeline's head, with no
    /// event-loop check or walk from the tail as `Channel.write` does.
    private var context: ChannelHandlerContext?
    /// A request's last write waits for its flush; on a socket the gateway connected itself
    /// (`useDirectSends`) the two are one `send(2)` when NIO has nothing queued.
    private var writer = DirectWriter()

    /// The connection's socket is one the gateway connected itself (`DirectSocket.connect`), with
    /// nothing but this handler in its pipeline: requests may be sent on it directly. Called
    /// before the channel is registered, so before anything is written.
    func useDirectSends(descriptor: CInt) {
        assert(context == nil && !writer.needsFlush, "direct sends are chosen before the connection is used")
        writer = DirectWriter(descriptor: descriptor)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        channel = context.channel
        self.context = context
    }

    /// The channel's pipeline holds this handler: dropping the references back lets both go.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        channel = nil
        writer.discard()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        tunnel?.writabilityChanged(of: self)
        sink?.upstreamWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    /// Not reading because the client takes the response slower than the upstream sends it.
    private var reading = ReadPause()

    func pauseReading() {
        if reading.pause(.flowControl, on: context) { pool.countFlowControl(paused: true) }
    }

    func resumeReading() {
        if reading.resume(.flowControl, on: context) {
            pool.countFlowControl(paused: false)
            // An HTTP/2 stream channel does not read again on autoRead alone (its frames wait
            // in the multiplexer, its window unrefilled) until asked to.
            if carrier != nil { context?.read() }
        }
    }

    /// Starts one request (the pool made this connection `.active`); the caller writes the request.
    func begin(sink: UpstreamResponseSink, requestIsHead: Bool, upgrade: Bool = false) {
        assert(state == .active, "a request begins only on a connection the pool handed out")
        // A pooled connection carries nothing of an earlier response: bytes after one close it.
        assert(framer.bufferedBytes == 0 && !framer.isInsideMessage, "bytes of an earlier response are left")
        framer.expectResponse(toHead: requestIsHead)
        requestWasHead = requestIsHead
        upgradeRequested = upgrade
        resumeReading()
        self.sink = sink
        requestsServed += 1
    }

    @inline(__always) func write(_ buffer: ByteBuffer, flush: Bool) {
        guard let context else { return }
        writer.write(buffer, context: context)
        if flush { writer.flush(context: context) }
    }

    func flush() {
        if let context { writer.flush(context: context) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let incoming = unwrapInboundIn(data)
        switch state {
        case .active:
            if let tunnel {
                tunnel.received(incoming, from: self)
                return
            }
            framer.append(incoming)
            process(context: context)
        case .releasing:
            // Bytes after a complete response, sent for no request: they must never be read as
            // the next request's response.
            reusable = false
        case .idle, .connecting:
            // Bytes nobody asked for: the connection cannot be trusted any more.
            reusable = false
            context.close(promise: nil)
        case .closed:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        tunnel?.readComplete(from: self)
        sink?.upstreamReadComplete()
        if state == .releasing { pool.released(self) }
    }

    /// Frames what arrived and hands it to the sink, until the response ends or the sink lets go.
    private func process(context: ChannelHandlerContext) {
        while state == .active, let sink {
            let event: MessageFramer.Event
            do {
                event = try framer.next()
            } catch {
                fail(.protocolError(error), context: context)
                return
            }
            switch event {
            case .needMore:
                return
            case .head(let bytes):
                let head = framer.head
                if head.status == 101 {
                    // Only a request that asked for WebSocket may be answered so (the gateway
                    // drops every other Upgrade); anything else is not speaking HTTP/1.1 with us.
                    guard upgradeRequested, head.connectionUpgrade, let upgrade = head.upgrade,
                          bytes.withUnsafeReadableBytes({ equalsLowercase($0, upgrade, "websocket") })
                    else {
                        fail(.protocolError(HTTPParseError(502, "upstream switched protocols unasked")), context: context)
                        return
                    }
                    reusable = false
                    self.sink = nil
                    sink.upstreamSwitchedProtocols(head, bytes: bytes, rest: framer.takeRemainingBytes())
                    return
                }
                if head.isInterim {
                    sink.upstreamInterimHead(bytes)
                    continue
                }
                if !head.keepAlive || Self.announcesForbiddenBody(head, requestWasHead: requestWasHead) || framer.endsAtClose {
                    reusable = false
                }
                guard sink.upstreamResponseHead(head, bytes: bytes, framing: framer.framing) else {
                    // The request will retry elsewhere: the rest of this response is not wanted.
                    self.sink = nil
                    reusable = false
                    pool.abandoned(self)
                    return
                }
            case .body(let part):
                sink.upstreamResponseBody(part)
            case .end:
                if framer.bufferedBytes > 0 {
                    // Bytes after a complete response (a body on a 204 or a HEAD answer, more
                    // than Content-Length said) were sent for no request: whatever they are, they
                    // must never be read as the next request's response.
                    reusable = false
                    framer.reset()
                }
                self.sink = nil
                // Handed back at the end of the read batch; an idle pooled connection must read,
                // or it would not notice the upstream closing it.
                pool.responseEnded(self)
                resumeReading()
                sink.upstreamResponseEnd()
                return
            }
        }
    }

    /// A 204 or 304, or an answer to HEAD, must not have a body (RFC 9110 §6.4.1); one that
    /// announces a chunked body, or a 204/304 with a non-zero Content-Length, may send it in a
    /// later packet, where nothing could tell it from the next response. Such a connection is
    /// closed after the response instead of reused. (A HEAD answer's Content-Length is the size
    /// the GET would have, so only chunking is suspicious there.)
    static func announcesForbiddenBody(_ head: MessageHead, requestWasHead: Bool) -> Bool {
        let noBodyStatus = head.status == 204 || head.status == 304
        guard noBodyStatus || requestWasHead else { return false }
        if head.chunked { return true }
        return noBodyStatus && (head.contentLength ?? 0) > 0
    }

    /// The upstream broke HTTP/1.1: nothing more it sends can be trusted, so the connection goes.
    private func fail(_ failure: UpstreamFailure, context: ChannelHandlerContext) {
        let sink = self.sink
        self.sink = nil
        let started = framer.isInsideMessage
        pool.countProtocolError()
        pool.abandoned(self)
        sink?.upstreamFailed(failure, responseStarted: started)
    }

    /// A stream's codec reports how the stream ended: a protocol error ends the try now; a reset
    /// or refusal is reported when the channel closes.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let ended = event as? UpstreamStreamEnded else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        if case .protocolError = ended.failure, state == .active, sink != nil {
            fail(ended.failure, context: context)
        } else {
            streamFailure = ended.failure
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let tunnel {
            self.tunnel = nil
            tunnel.close(from: self)
        }
        let sink = self.sink
        self.sink = nil
        let endsAtClose = framer.endsAtClose
        let started = framer.isInsideMessage
        pool.closed(self)
        guard let sink else { return }
        if endsAtClose {
            sink.upstreamResponseEnd()
        } else {
            sink.upstreamFailed(streamFailure ?? .reset, responseStarted: started)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    /// After a 101: the connection is one end of `tunnel` until it closes (it stays `.active`
    /// in its pool meanwhile, and is never reused).
    func startTunnel(_ tunnel: UpgradeTunnel) {
        assert(state == .active && sink == nil && !reusable, "a tunnel on the connection that switched protocols")
        self.tunnel = tunnel
        resumeReading()
    }

    /// Asks the channel to close; `channelInactive` reports it to the pool.
    func close() {
        reusable = false
        channel?.close(promise: nil)
    }

    /// The request gave up (timeout, client gone, retry): the response will never be read, so
    /// the connection cannot be reused.
    func abandon() {
        sink = nil
        pool.abandoned(self)
    }
}

extension UpstreamConnection: TunnelEnd {
    func tunnelWrite(_ bytes: ByteBuffer) { write(bytes, flush: false) }
    func tunnelFlush() { flush() }
    var tunnelWritable: Bool { channel?.isWritable ?? false }
    func tunnelPauseReading() { pauseReading() }
    func tunnelResumeReading() { resumeReading() }
    func tunnelClose() {
        tunnel = nil
        guard let context else { return }
        // After what was written: a close alone would drop bytes still queued.
        flush()
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}

extension UpstreamConnection: RoundEndFlush {
    func flushAtRoundEnd() { flush() }
}
