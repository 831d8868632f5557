import DirectIO
import HTTP1Wire
import NIOCore

/// One client connection: frames HTTP/1.1 requests from the raw bytes, hands each to a
/// `ProxyExchange`, and writes what comes back. One request at a time; pipelined bytes wait.
final class DownstreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum State {
        case head
        case body
        /// The request is complete; waiting for the response to finish.
        case awaitingResponse
        case closed
    }

    let worker: Worker
    private(set) var context: ChannelHandlerContext!
    private var input: ByteBuffer?
    private var state = State.head
    private var body = BodyDecoder(.none)
    private(set) var exchange: ProxyExchange?
    /// The client's address as X-Forwarded-For and the per-client rate limit see it.
    private(set) lazy var clientAddress: String = context.channel.remoteAddress?.ipAddress ?? "unknown"

    /// Responses go out with one send(2) on the client's socket when NIO has nothing queued for it.
    private let writer = DirectWriter()

    init(worker: Worker) { self.worker = worker }

    var requestComplete: Bool { state == .awaitingResponse }
    var channel: Channel { context.channel }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// The context holds this handler: dropping the reference back lets both go when the
    /// connection is over (channelInactive came first, so no exchange calls in any more).
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        worker.downstreams[ObjectIdentifier(self)] = self
        worker.listenerStats.inc(.connectionsTotal, row: worker.row)
        worker.listenerStats.inc(.connectionsActive, row: worker.row)
        writer.attach(context.channel)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        worker.downstreams[ObjectIdentifier(self)] = nil
        worker.listenerStats.add(.connectionsActive, -1, row: worker.row)
        state = .closed
        if let exchange {
            self.exchange = nil
            exchange.downstreamClosed()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let incoming = unwrapInboundIn(data)
        if var buffered = input {
            input = nil
            var more = incoming
            buffered.writeBuffer(&more)
            input = buffered
        } else {
            input = incoming
        }
        processInput()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded()
    }

    /// Whether NIO's outbound buffer for the client is under its high watermark. While it is
    /// not, the exchange stops reading its upstream (Envoy's flow control).
    private(set) var writable = true

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        writable = context.channel.isWritable
        exchange?.downstreamWritabilityChanged(writable)
        context.fireChannelWritabilityChanged()
    }

    /// Not reading the client while the upstream takes the request body slower than it comes.
    private var reading = ReadPause()

    func pauseReading() {
        if reading.set(true, on: context) { worker.listenerStats.inc(.flowControlPausedReading, row: worker.row) }
    }

    func resumeReading() {
        if reading.set(false, on: context) { worker.listenerStats.inc(.flowControlResumedReading, row: worker.row) }
    }

    /// Sends what was written; a flush with nothing to send does not walk the pipeline.
    @inline(__always) func flushIfNeeded() {
        if writer.needsFlush, let context { writer.flush(context: context) }
    }

    private func processInput() {
        // Holding on to a drained buffer would keep NIO from reusing its receive buffer
        // (it reuses one only while nobody else references it) and cost a copy per read.
        defer { if input?.readableBytes == 0 { input = nil } }
        while let buffer = input, buffer.readableBytes > 0 {
            switch state {
            case .closed, .awaitingResponse:
                return
            case .head:
                if exchange != nil { return }
                var buffer = buffer
                switch buffer.parseHead(.request) {
                case .failure(let error):
                    input = nil
                    protocolError(error)
                    return
                case .success(nil):
                    return
                case .success(let head?):
                    let headBytes = buffer.readSlice(length: head.length)!
                    input = buffer
                    body = BodyDecoder(HeadParser.requestFraming(head))
                    state = .body
                    worker.listenerStats.inc(.requestsTotal, row: worker.row)
                    worker.listenerStats.inc(.requestsActive, row: worker.row)
                    // The body bytes already here go to the exchange before it picks a connection,
                    // so a malformed body is refused before anything reaches the upstream.
                    guard consumeBody() else { return }
                    if body.isComplete { state = .awaitingResponse }
                    ProxyExchange.start(downstream: self, head: head, headBytes: headBytes)
                }
            case .body:
                guard consumeBody() else { return }
                if body.isComplete { requestEnded() }
            }
        }
    }

    /// Moves body bytes from the input into the exchange (or keeps them for it to collect).
    private func consumeBody() -> Bool {
        guard var buffer = input, !body.isComplete else { return true }
        switch buffer.consumeBody(&body) {
        case .failure(let error):
            input = nil
            if let exchange {
                self.exchange = nil
                exchange.requestMalformed(error)
            } else {
                protocolError(error)
            }
            return false
        case .success(let n):
            if n > 0 {
                let part = buffer.readSlice(length: n)!
                input = buffer
                pendingBody(part)
            }
            return true
        }
    }

    /// Body that arrived before the exchange existed is held here and given to it at start.
    private(set) var earlyBody: ByteBuffer?

    private func pendingBody(_ part: ByteBuffer) {
        if let exchange {
            exchange.requestBodyPart(part)
        } else if earlyBody == nil {
            earlyBody = part
        } else {
            var p = part
            earlyBody!.writeBuffer(&p)
        }
    }

    func takeEarlyBody() -> ByteBuffer? {
        defer { earlyBody = nil }
        return earlyBody
    }

    func attach(_ exchange: ProxyExchange) { self.exchange = exchange }

    /// Head buffers each request on this connection reuses: the head sent upstream and the one
    /// sent back. An exchange takes one and gives it back when done with it; while a write
    /// still holds the old storage, `clear` allocates anew, so reuse never touches bytes in flight.
    var spareUpstreamHead: ByteBuffer?
    var spareResponseHead: ByteBuffer?

    @inline(__always) func reuse(_ spare: inout ByteBuffer?, capacity: Int) -> ByteBuffer {
        guard var buffer = spare else { return context.channel.allocator.buffer(capacity: capacity) }
        spare = nil
        buffer.clear(minimumCapacity: capacity)
        return buffer
    }

    private func requestEnded() {
        state = .awaitingResponse
        exchange?.requestEnded()
    }

    /// Called by the exchange once its response is fully written.
    func responseComplete(close: Bool) {
        exchange = nil
        resumeReading()
        worker.listenerStats.add(.requestsActive, -1, row: worker.row)
        if close || worker.draining || state != .awaitingResponse {
            state = .closed
            guard let context else { return }
            writeLastAndClose(context.channel.allocator.buffer(capacity: 0))
            return
        }
        state = .head
        if input != nil { processInput() }
    }

    /// A response that must close the connection after it (drain, HTTP/1.0, body left unread).
    func mustCloseAfterResponse(requestKeepAlive: Bool) -> Bool {
        !requestKeepAlive || worker.draining || state != .awaitingResponse
    }

    @inline(__always) func write(_ buffer: ByteBuffer, flush: Bool = false) {
        guard let context else { return }
        writer.write(buffer, context: context)
        if flush { writer.flush(context: context) }
    }

    private func protocolError(_ error: HTTPParseError) {
        worker.listenerStats.inc(.protocolErrors, row: worker.row)
        worker.listenerStats.countResponse(error.status, row: worker.row)
        state = .closed
        let reply = LocalReply.make(
            status: error.status, body: error.reason, close: true, allocator: context.channel.allocator)
        writeLastAndClose(reply)
    }

    /// Writes `bytes` behind everything written before (a response still held goes first) and
    /// closes the connection once they are out.
    private func writeLastAndClose(_ bytes: ByteBuffer) {
        flushIfNeeded()
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(bytes)).whenComplete { _ in channel.close(promise: nil) }
    }

    /// Drain: a connection between requests is closed now; a busy one closes after its response.
    func closeIfIdle() {
        if exchange == nil && state == .head { context?.close(promise: nil) }
    }
}

/// Responses the gateway writes itself (errors, overload, rate limit, fault abort).
enum LocalReply {
    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 400: return "Bad Request"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 408: return "Request Timeout"
        case 413: return "Payload Too Large"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Status \(status)"
        }
    }

    static func make(
        status: Int, body: String, close: Bool, extraHeaders: [(String, String)] = [],
        allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        var out = allocator.buffer(capacity: 160 + body.utf8.count)
        out.writeStaticString("HTTP/1.1 ")
        out.writeDecimal(status)
        out.writeString(" \(reasonPhrase(status))\r\ncontent-type: text/plain\r\ncontent-length: ")
        out.writeDecimal(body.utf8.count)
        out.writeStaticString("\r\n")
        for (name, value) in extraHeaders {
            out.writeString(name)
            out.writeStaticString(": ")
            out.writeString(value)
            out.writeStaticString("\r\n")
        }
        if close { out.writeStaticString("connection: close\r\n") }
        out.writeStaticString("\r\n")
        out.writeString(body)
        return out
    }
}
