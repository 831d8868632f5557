import HTTP1Wire
import NIOCore
import NIOHPACK
import NIOHTTP2

/// One HTTP/2 stream of a client connection, on its own child channel of NIOHTTP2's multiplexer:
/// the router filter's `DownstreamStream` for one request, as `DownstreamHandler` is for an
/// HTTP/1.1 connection. The HEADERS become an HTTP/1.1 head that the HeadParser checks with the
/// listener's limits; DATA frames are the body (chunked upstream when the client gave no
/// content-length); what the filter sends back in HTTP/1.1 form becomes HEADERS and DATA.
/// Flow control is NIOHTTP2's: the stream's window refills only as this handler reads, and its
/// writability follows the peer's window and the child's outbound buffer. Confined to its event loop.
final class HTTP2DownstreamStream: ChannelInboundHandler, DownstreamStream {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    enum State {
        /// Waiting for the request's HEADERS.
        case head
        case body
        /// The request is complete; waiting for the response to finish.
        case awaitingResponse
        /// The response ended (or the stream was reset): nothing more goes either way.
        case closed
    }

    let worker: Worker
    let connection: HTTP2DownstreamConnection
    private var context: ChannelHandlerContext!
    private var state = State.head
    private var filter: RouterFilter?
    /// The body goes upstream chunked: the client gave no content-length.
    private var chunkedUpstream = false
    /// The content-length the client declared, checked against its DATA (RFC 9113 §8.1.1).
    private var declaredLength: Int?
    private var bodyReceived = 0
    /// A HEAD request: a local reply goes without its body.
    private var requestIsHead = false
    /// Header lines the router filter added for the next response head.
    private var addedResponseHeaders: [(String, String)]?
    /// Strips the upstream's chunked framing: HTTP/2 frames the body itself.
    private var dechunker: BodyDecoder?
    /// The upstream's chunked trailer section as read so far (bounded by the decoder's
    /// `maxTrailerBytes`): it ends the stream as HEADERS.
    private var responseTrailers: ByteBuffer?
    /// The request's content-type is gRPC's: the gateway's own answers become gRPC errors.
    private(set) var isGRPC = false
    /// The `grpc-status` the response carried (in a trailers-only head or in its trailers), or
    /// the one the gateway answered with; nil until known, and for other requests.
    private(set) var grpcStatus: Int?
    /// The response head went out and ended the stream (a 204, a HEAD answer, a 304).
    private var headEndedStream = false
    private var responseHeadSent = false
    private var unflushed = HeldWrite<HTTP2Frame.FramePayload>()
    private var reading = ReadPause()
    /// The last frame read or written (stream idle timeout).
    private(set) var lastActivity: NIODeadline

    init(connection: HTTP2DownstreamConnection) {
        self.connection = connection
        worker = connection.worker
        lastActivity = connection.worker.coarseNow
    }

    var clientAddress: String { connection.clientAddress }
    var connectionAddresses: String { connection.connectionAddresses }
    var localPort: Int { connection.localPort }
    var isSecure: Bool { connection.isSecure }
    private(set) var isWritable = true
    var requestComplete: Bool { state == .awaitingResponse }
    var isHTTP2: Bool { true }
    private(set) var responseBytesSent = 0

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        isWritable = context.channel.isWritable
        connection.streamOpened(self, id: try? context.channel.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID))
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        _ = unflushed.take()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The client reset the stream, or the connection went: the request in flight is abandoned.
        let wasOpen = state != .closed
        state = .closed
        connection.streamClosed(self)
        guard wasOpen, let filter else { return }
        self.filter = nil
        filter.downstreamClosed()
        worker.listenerStats.add(.requestsActive, -1, row: worker.row)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A stream error (NIOHTTP2 sent RST_STREAM already): this stream is over, the others go on.
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state != .closed else { return }
        lastActivity = worker.coarseNow
        switch unwrapInboundIn(data) {
        case .headers(let h):
            if state == .head {
                startRequest(h.headers, endStream: h.endStream)
            } else if h.endStream {
                // Trailers (a gRPC client's): they end the chunked body upstream.
                requestBodyEnded(trailers: h.headers)
            } else {
                malformed(HTTPParseError(400, "HEADERS inside a request body"))
            }
        case .data(let d):
            guard state == .body, case .byteBuffer(let bytes) = d.data else {
                if state != .body { malformed(HTTPParseError(400, "DATA outside a request body")) }
                return
            }
            requestBody(bytes)
            if d.endStream { requestBodyEnded() }
        default:
            // WINDOW_UPDATE, PRIORITY, RST_STREAM are NIOHTTP2's; nothing else reaches a stream.
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        isWritable = context.channel.isWritable
        if isWritable { lastActivity = worker.coarseNow }
        filter?.downstreamWritabilityChanged(isWritable)
        context.fireChannelWritabilityChanged()
    }

    // MARK: the request

    private func startRequest(_ headers: HPACKHeaders, endStream: Bool) {
        worker.listenerStats.inc(.requestsTotal, row: worker.row)
        worker.listenerStats.inc(.requestsActive, row: worker.row)
        var bytes = context.channel.allocator.buffer(capacity: 512)
        let head: MessageHead
        do throws(HTTPParseError) {
            chunkedUpstream = try HTTP2Heads.requestHead(headers, hasBody: !endStream, into: &bytes)
            // Every limit and check of an HTTP/1.1 request applies: the head's size and line
            // count, underscores, the framing rules, Host.
            guard let parsed = try bytes.parseHead(.request, options: connection.headOptions).get(),
                  parsed.length == bytes.readableBytes else {
                throw HTTPParseError(400, "malformed request head")
            }
            head = parsed
        } catch {
            worker.listenerStats.inc(.protocolErrors, row: worker.row)
            worker.listenerStats.add(.requestsActive, -1, row: worker.row)
            worker.listenerStats.countResponse(error.status, row: worker.row)
            state = endStream ? .awaitingResponse : .body
            writeReply(LocalReply.make(status: error.status, body: error.reason, close: false,
                                       allocator: context.channel.allocator))
            finishStream(reset: false)
            return
        }
        declaredLength = head.contentLength
        isGRPC = GRPC.isGRPC(headers)
        if endStream, let n = declaredLength, n != 0 {
            worker.listenerStats.add(.requestsActive, -1, row: worker.row)
            worker.listenerStats.countResponse(400, row: worker.row)
            writeReply(LocalReply.make(status: 400, body: "content-length without DATA", close: false,
                                       allocator: context.channel.allocator))
            finishStream(reset: false)
            return
        }
        requestIsHead = head.method.count == 4 && bytes.withUnsafeReadableBytes { equalsExactly($0, head.method, "HEAD") }
        state = endStream ? .awaitingResponse : .body
        // May answer at once (a local reply): the stream then ends before this returns.
        guard let filter = RouterFilter.route(stream: self, worker: worker, head: head, headBytes: bytes,
                                              earlyBody: nil) else { return }
        self.filter = filter
        filter.begin()
    }

    private func requestBody(_ bytes: ByteBuffer) {
        bodyReceived += bytes.readableBytes
        if let n = declaredLength, bodyReceived > n {
            malformed(HTTPParseError(400, "DATA beyond content-length"))
            return
        }
        guard let filter, bytes.readableBytes > 0 else { return }
        if chunkedUpstream {
            var chunk = context.channel.allocator.buffer(capacity: bytes.readableBytes + 12)
            chunk.writeString(String(bytes.readableBytes, radix: 16))
            chunk.writeStaticString("\r\n")
            chunk.writeImmutableBuffer(bytes)
            chunk.writeStaticString("\r\n")
            filter.requestBodyPart(chunk)
        } else {
            filter.requestBodyPart(bytes)
        }
    }

    /// The request's last DATA, or its trailers, arrived. Trailers go upstream in the chunked
    /// body's trailer section; a body with a content-length has none in HTTP/1.1, so they are
    /// dropped there (as Envoy's HTTP/1.1 codec drops trailers it cannot send).
    private func requestBodyEnded(trailers: HPACKHeaders? = nil) {
        guard state == .body else { return }
        if let n = declaredLength, bodyReceived != n {
            malformed(HTTPParseError(400, "DATA shorter than content-length"))
            return
        }
        var last: ByteBuffer? = nil
        if chunkedUpstream {
            var bytes = context.channel.allocator.buffer(capacity: 5)
            if let trailers {
                do throws(HTTPParseError) {
                    try HTTP2Heads.lastChunk(trailers: trailers, into: &bytes)
                } catch {
                    malformed(error)
                    return
                }
            } else {
                bytes.writeStaticString("0\r\n\r\n")
            }
            last = bytes
        }
        state = .awaitingResponse
        guard let filter else { return }
        if let last { filter.requestBodyPart(last) }
        filter.requestBodyEnded()
    }

    private func malformed(_ error: HTTPParseError) {
        if let filter {
            filter.requestMalformed(error)
        } else {
            worker.listenerStats.inc(.protocolErrors, row: worker.row)
            resetStream()
        }
    }

    // MARK: flow control

    /// Not reading the stream: its DATA waits in the child channel, and the client's window for
    /// this stream is not refilled, so it stops sending (the connection's other streams go on).
    func pauseReading() {
        if reading.pause(.flowControl, on: context) { worker.listenerStats.inc(.flowControlPausedReading, row: worker.row) }
    }

    func resumeReading() {
        if reading.resume(.flowControl, on: context) {
            worker.listenerStats.inc(.flowControlResumedReading, row: worker.row)
            context.read()
        }
    }

    // MARK: the response (DownstreamStream)

    func headBuffer(capacity: Int) -> ByteBuffer { context.channel.allocator.buffer(capacity: capacity) }
    func recycle(_ buffer: ByteBuffer) {}

    func addResponseHeader(name: String, value: String) {
        addedResponseHeaders = (addedResponseHeaders ?? []) + [(name, value)]
    }

    func encodeInterimHead(_ bytes: ByteBuffer) {
        guard let head = parseResponseHead(bytes), head.status != 101 else { return }
        write(.headers(.init(headers: HTTP2Heads.responseHeaders(head, bytes))))
        flushIfNeeded()
    }

    func encodeHead(_ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming, upstreamServiceMs: Int) {
        encodeHead(head, bytes: bytes, framing: framing, upstreamServiceMs: upstreamServiceMs, edit: nil)
    }

    func encodeHead(_ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming, upstreamServiceMs: Int,
                    edit: ResponseHeadEdit) {
        encodeHead(head, bytes: bytes, framing: framing, upstreamServiceMs: upstreamServiceMs, edit: Optional(edit))
    }

    /// The response head in the HTTP/1.1 form every other path writes (hop-by-hop lines out, the
    /// route's edit, x-envoy-upstream-service-time, lines the filter added), then as HEADERS.
    private func encodeHead(_ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming, upstreamServiceMs: Int,
                            edit: ResponseHeadEdit?) {
        dechunker = framing == .chunked ? BodyDecoder(.chunked, errorStatus: 502) : nil
        var out = context.channel.allocator.buffer(capacity: bytes.readableBytes + 128)
        HeadWriter.writeResponseHead(
            head, from: bytes, into: &out, dropFraming: head.status == 204 || dechunker != nil,
            upstreamServiceMs: upstreamServiceMs, close: false, announceKeepAlive: false, edit: edit)
        appendAddedHeaders(&out)
        guard let converted = parseResponseHead(out) else {
            resetStream()
            return
        }
        // An empty body ends the stream with the head: a gRPC trailers-only answer
        // (`content-length: 0` from an HTTP/1.1 upstream) must reach the client as one HEADERS.
        sendHead(converted, out, endStream: framing == .none || framing == .contentLength(0))
    }

    private func appendAddedHeaders(_ out: inout ByteBuffer) {
        guard let added = addedResponseHeaders else { return }
        addedResponseHeaders = nil
        out.moveWriterIndex(to: out.writerIndex - 2)
        for (name, value) in added {
            out.writeString(name)
            out.writeStaticString(": ")
            out.writeString(value)
            out.writeStaticString("\r\n")
        }
        out.writeStaticString("\r\n")
    }

    private func parseResponseHead(_ bytes: ByteBuffer) -> MessageHead? {
        (try? bytes.parseHead(.response).get()) ?? nil
    }

    private func sendHead(_ head: MessageHead, _ bytes: ByteBuffer, endStream: Bool) {
        responseBytesSent += head.length
        responseHeadSent = true
        headEndedStream = endStream
        let headers = HTTP2Heads.responseHeaders(head, bytes)
        if isGRPC, let value = headers.first(name: "grpc-status") { grpcStatus = GRPC.parseStatus(value.utf8) }
        write(.headers(.init(headers: headers, endStream: endStream)))
    }

    func encodeBody(_ part: ByteBuffer) {
        guard !headEndedStream else { return }
        guard dechunker != nil else {
            sendData(part)
            return
        }
        // The upstream connection checked this framing already; this pass only finds the payload
        // and the trailer section.
        _ = try? part.withUnsafeReadableBytes { raw throws(HTTPParseError) in
            try dechunker!.consume(raw, payload: { range in
                sendData(part.getSlice(at: part.readerIndex + range.lowerBound, length: range.count)!)
            }, trailer: { range in
                if responseTrailers == nil { responseTrailers = context.channel.allocator.buffer(capacity: 64) }
                responseTrailers!.writeBytes(UnsafeRawBufferPointer(rebasing: raw[range]))
            })
        }
    }

    private func sendData(_ part: ByteBuffer, endStream: Bool = false) {
        responseBytesSent += part.readableBytes
        write(.data(.init(data: .byteBuffer(part), endStream: endStream)))
    }

    func flushResponse() { flushIfNeeded() }

    // `forceClose` closes an HTTP/1.1 connection after the reply; here the reply ends its stream
    // and the connection goes on serving the others, as Envoy's HTTP/2 codec does.
    func encodeLocalReply(status: Int, body: String, headers: [(String, String)], forceClose: Bool) {
        assert(!responseHeadSent, "a local reply after part of a response")
        if isGRPC {
            writeGRPCReply(status: status, message: body, headers: headers)
            return
        }
        writeReply(LocalReply.make(status: status, body: body, close: false, extraHeaders: headers,
                                   allocator: context.channel.allocator))
    }

    func encodeLocalReply(status: Int, body: [UInt8], headers: [(String, String)], edit: ResponseHeadEdit?,
                          forceClose: Bool) {
        assert(!responseHeadSent, "a local reply after part of a response")
        if isGRPC {
            writeGRPCReply(status: status, message: String(decoding: body, as: UTF8.self), headers: headers)
            return
        }
        writeReply(LocalReply.make(status: status, body: body, close: false, extraHeaders: headers, edit: edit,
                                   allocator: context.channel.allocator))
    }

    /// A local reply to a gRPC call: a gRPC error, trailers-only (`GRPC.localReply`).
    private func writeGRPCReply(status: Int, message: String, headers: [(String, String)]) {
        let (block, grpcStatus) = GRPC.localReply(httpStatus: status, message: message, headers: headers)
        self.grpcStatus = grpcStatus
        responseHeadSent = true
        headEndedStream = true
        for (name, value, _) in block { responseBytesSent += name.utf8.count + value.utf8.count + 4 }
        write(.headers(.init(headers: block, endStream: true)))
    }

    /// A whole local reply in HTTP/1.1 form: its head as HEADERS, its body as one DATA that ends
    /// the stream (a HEAD request's answer has none).
    private func writeReply(_ reply: ByteBuffer) {
        var reply = reply
        if addedResponseHeaders != nil, let head = parseResponseHead(reply) {
            var rebuilt = context.channel.allocator.buffer(capacity: reply.readableBytes + 128)
            rebuilt.writeImmutableBuffer(reply.getSlice(at: reply.readerIndex, length: head.length)!)
            appendAddedHeaders(&rebuilt)
            rebuilt.writeImmutableBuffer(reply.getSlice(at: reply.readerIndex + head.length,
                                                        length: reply.readableBytes - head.length)!)
            reply = rebuilt
        }
        guard let head = parseResponseHead(reply) else {
            resetStream()
            return
        }
        let bodyBytes = reply.readableBytes - head.length
        let hasBody = bodyBytes > 0 && !requestIsHead
        sendHead(head, reply, endStream: !hasBody)
        if hasBody {
            sendData(reply.getSlice(at: reply.readerIndex + head.length, length: bodyBytes)!, endStream: true)
        }
    }

    // WebSocket upgrades do not reach an HTTP/2 stream: NIOHTTP2 refuses the `upgrade` field.
    func encodeSwitchingProtocols(_ head: MessageHead, bytes: ByteBuffer) {
        assertionFailure("a 101 on an HTTP/2 stream")
        resetStream()
    }
    var tunnelEnd: TunnelEnd { preconditionFailure("no tunnel on an HTTP/2 stream") }
    func startTunnel(_ tunnel: UpgradeTunnel) { preconditionFailure("no tunnel on an HTTP/2 stream") }

    /// The response is over: the stream ends with an empty DATA (unless the head ended it), or
    /// is reset when it was cut off.
    func endStream(reset: Bool) {
        filter = nil
        worker.listenerStats.add(.requestsActive, -1, row: worker.row)
        finishStream(reset: reset)
    }

    private func finishStream(reset: Bool) {
        guard state != .closed, context != nil else { return }
        if reset {
            resetStream()
            return
        }
        if responseHeadSent && !headEndedStream {
            if let section = responseTrailers, section.readableBytes > 2 {
                // The upstream's trailers (a gRPC call's status) end the stream as HEADERS.
                responseTrailers = nil
                let trailers = HTTP2Heads.responseTrailers(section)
                if isGRPC, let value = trailers.first(name: "grpc-status") { grpcStatus = GRPC.parseStatus(value.utf8) }
                responseBytesSent += section.readableBytes
                write(.headers(.init(headers: trailers, endStream: true)))
            } else {
                write(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)))
            }
        }
        let bodyUnread = state != .awaitingResponse
        state = .closed
        flushIfNeeded()
        // The answer came before the whole request body (a refusal): the client need not send the
        // rest (RFC 9113 §8.1: RST_STREAM NO_ERROR after a complete response).
        if bodyUnread {
            context.writeAndFlush(wrapOutboundOut(.rstStream(.noError)), promise: nil)
        }
    }

    /// Cuts the stream off (RST_STREAM): the client must not wait for more of this response.
    private func resetStream() {
        state = .closed
        guard let context else { return }
        flushIfNeeded()
        context.writeAndFlush(wrapOutboundOut(.rstStream(.internalError)), promise: nil)
        context.close(promise: nil)
    }

    @inline(__always) private func write(_ payload: HTTP2Frame.FramePayload) {
        guard let context else { return }
        lastActivity = worker.coarseNow
        if let previous = unflushed.hold(payload) { context.write(wrapOutboundOut(previous), promise: nil) }
    }

    @inline(__always) private func flushIfNeeded() {
        if let context, let last = unflushed.take() { context.writeAndFlush(wrapOutboundOut(last), promise: nil) }
    }

    // MARK: timeouts

    /// Called by the connection on every worker tick: a stream with no frames either way for
    /// `streamIdleTimeout` is ended (Envoy's stream idle timeout, per stream on HTTP/2).
    func checkTimeouts(now: NIODeadline, limit: TimeAmount) {
        guard state != .closed, now - lastActivity >= limit else { return }
        worker.listenerStats.inc(.streamIdleTimeouts, row: worker.row)
        if let filter {
            filter.streamIdleTimedOut()
        } else {
            resetStream()
        }
    }
}
