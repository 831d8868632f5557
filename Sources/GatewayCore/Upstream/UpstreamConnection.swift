import DirectIO
import HTTP1Wire
import NIOCore

/// What an upstream connection reports to the request it is serving.
protocol UpstreamResponseSink: AnyObject {
    func upstreamResponseHead(_ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming)
    func upstreamResponseBody(_ body: ByteBuffer)
    func upstreamResponseEnd()
    /// One read batch from the upstream is over: bytes held back to coalesce should go out.
    func upstreamReadComplete()
    /// The connection failed or closed before the response was complete.
    func upstreamReset(responseStarted: Bool)
    /// The upstream's bytes are not a valid HTTP/1.1 response (Envoy's upstream protocol error).
    func upstreamProtocolError(_ error: HTTPParseError, responseStarted: Bool)
    /// The connection's outbound buffer crossed a watermark: stop or resume reading the request body.
    func upstreamWritabilityChanged(_ writable: Bool)
}

/// One pooled HTTP/1.1 connection to an upstream host. Confined to its event loop.
/// It frames responses (head, body boundaries) and hands the bytes on unchanged.
final class UpstreamConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let pool: HostPool
    private(set) var channel: Channel?
    var sink: UpstreamResponseSink?
    var requestsServed = 0
    var idleSince = NIODeadline.uptimeNanoseconds(0)
    var isClosed = false
    /// Set once the TCP connect succeeded; until then the pool accounts for it as connecting.
    var connected = false
    /// Whether a request on this connection counts against `http2MaxRequests` right now.
    var hasActiveRequest = false
    /// Set when the response ended before the request body was all sent: the rest of that body
    /// would be read as the next request, so the connection must not be reused.
    var mustClose = false

    private var pending: ByteBuffer?
    /// Bytes of the head in `pending` the parser already scanned (a head arriving in pieces is
    /// scanned once, not once per read).
    private var headScanned = 0
    private var body: BodyDecoder?
    private var responseKeepAlive = true
    private var requestWasHead = false

    init(pool: HostPool) { self.pool = pool }

    /// Writes go through the handler's context: straight to the pipeline's head, with no
    /// event-loop check or walk from the tail as `Channel.write` does.
    private var context: ChannelHandlerContext?

    /// Writes through NIO (see `DownstreamHandler.writer`).
    private let writer = DirectWriter()

    func handlerAdded(context: ChannelHandlerContext) {
        channel = context.channel
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        sink?.upstreamWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    /// Not reading because the client takes the response slower than the upstream sends it.
    private var reading = ReadPause()

    func pauseReading() {
        if reading.set(true, on: context) { pool.countFlowControl(paused: true) }
    }

    func resumeReading() {
        if reading.set(false, on: context) { pool.countFlowControl(paused: false) }
    }

    /// The channel's pipeline holds this handler: dropping the references back lets both go.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        channel = nil
    }

    /// Starts one exchange: the caller writes the request bytes itself.
    func begin(sink: UpstreamResponseSink, requestIsHead: Bool) {
        // A pooled connection carries nothing of an earlier response: bytes after one close it.
        assert(pending == nil && headScanned == 0, "a reused upstream connection holds bytes of an earlier response")
        resumeReading()
        self.sink = sink
        requestWasHead = requestIsHead
        requestsServed += 1
        body = nil
        responseKeepAlive = true
    }

    @inline(__always) func write(_ buffer: ByteBuffer, flush: Bool) {
        guard let context else { return }
        writer.write(buffer, context: context)
        if flush { writer.flush(context: context) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        guard sink != nil else {
            // Bytes nobody asked for: the connection cannot be trusted any more.
            if releaseAfterRead {
                mustClose = true
            } else {
                context.close(promise: nil)
            }
            return
        }
        if pending != nil {
            pending!.writeBuffer(&incoming)
            incoming = pending!
            pending = nil
        }
        process(&incoming, context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        sink?.upstreamReadComplete()
        if releaseAfterRead {
            releaseAfterRead = false
            // Closed meanwhile: `channelInactive` gave the connection back already.
            guard !isClosed else { return }
            pool.released(self, reusable: responseKeepAlive && !mustClose)
        }
    }

    /// A response ended in this read batch: the connection goes back to the pool when the
    /// batch is over, so bytes the upstream sent after the response in the same batch are seen
    /// (and the connection closed) before anyone else's request is written to it.
    private var releaseAfterRead = false

    private func process(_ buffer: inout ByteBuffer, context: ChannelHandlerContext) {
        while buffer.readableBytes > 0, let sink {
            if body == nil {
                switch buffer.parseHead(.response, options: .responseDefaults, scanned: headScanned) {
                case .failure(let error):
                    fail(error, context: context)
                    return
                case .success(nil):
                    headScanned = buffer.readableBytes
                    pending = buffer
                    return
                case .success(let head?):
                    headScanned = 0
                    let headBytes = buffer.readSlice(length: head.length)!
                    if head.status == 101 {
                        // The gateway never asks to switch protocols (it drops Upgrade): an
                        // upstream that does is not speaking HTTP/1.1 with us.
                        fail(HTTPParseError(502, "upstream switched protocols unasked"), context: context)
                        return
                    }
                    if head.status < 200 {
                        // Interim answers (100 Continue) go through; the final one follows.
                        sink.upstreamResponseHead(head, bytes: headBytes, framing: .none)
                        continue
                    }
                    responseKeepAlive = head.keepAlive && !Self.announcesForbiddenBody(head, requestWasHead: requestWasHead)
                    let framing = HeadParser.responseFraming(head, requestWasHead: requestWasHead)
                    if framing == .untilClose { responseKeepAlive = false }
                    body = BodyDecoder(framing, errorStatus: 502)
                    sink.upstreamResponseHead(head, bytes: headBytes, framing: framing)
                    // The request may have let go of this connection (a retry): stop reading it.
                    guard self.sink != nil else { return }
                }
            }
            if !body!.isComplete {
                let n: Int
                switch buffer.consumeBody(&body!) {
                case .success(let taken): n = taken
                case .failure(let error):
                    fail(error, context: context)
                    return
                }
                if n > 0 {
                    sink.upstreamResponseBody(buffer.readSlice(length: n)!)
                    guard self.sink != nil else { return }
                }
            }
            if body!.isComplete {
                // Bytes after a complete response (a body on a 204 or a HEAD answer, more than
                // Content-Length said) were sent for no request: whatever they are, they must never
                // be read as the next request's response, so the connection is not reused. This
                // is decided before the response ends, because ending it may hand the connection on.
                if buffer.readableBytes > 0 {
                    mustClose = true
                    buffer.clear()
                }
                finishResponse(context: context)
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

    private func finishResponse(context: ChannelHandlerContext) {
        let sink = self.sink
        self.sink = nil
        body = nil
        sink?.upstreamResponseEnd()
        // An idle pooled connection must read, or it would not notice the upstream closing it.
        resumeReading()
        releaseAfterRead = true
    }

    /// The upstream broke HTTP/1.1: nothing more it sends can be trusted, so the connection goes.
    private func fail(_ error: HTTPParseError, context: ChannelHandlerContext) {
        let sink = self.sink
        self.sink = nil
        pool.countProtocolError()
        sink?.upstreamProtocolError(error, responseStarted: body != nil)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        if let sink {
            self.sink = nil
            if let body, body.endsAtClose {
                sink.upstreamResponseEnd()
            } else {
                sink.upstreamReset(responseStarted: body != nil)
            }
        }
        pool.closed(self)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        channel?.close(promise: nil)
    }

    /// The request gave up (timeout, client gone): the response will never be read, so the
    /// connection cannot be reused.
    func abandon() {
        sink = nil
        pool.requestEnded(self)
        close()
    }
}
