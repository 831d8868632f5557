import HTTP1Wire
import NIOCore
import NIOHPACK
import NIOHTTP2

/// One HTTP/2 connection to an upstream host (h2c with prior knowledge, or ALPN h2 over the
/// rule's TLS), carrying many requests at once, each on a stream of its own (Envoy's HTTP/2
/// `ActiveClient`). Design: every stream is a child channel whose pipeline is an
/// `HTTP2UpstreamStreamCodec` (HTTP/2 frames <-> the gateway's HTTP/1.1 wire form) and an
/// ordinary `UpstreamConnection`; so the router, `UpstreamRequest`, response framing, timeouts,
/// flow control and accounting are the HTTP/1.1 ones, and only the pool (`HostPool`'s HTTP/2
/// strategy) knows that a "connection" it hands out is a stream. This handler sits behind
/// NIOHTTP2's on the connection's channel and follows what the pool needs of the connection:
/// the peer's SETTINGS_MAX_CONCURRENT_STREAMS, its GOAWAY, errors that end it, its close.
/// Confined to its event loop; every state change is made by the pool (`HostPool+HTTP2`).
final class UpstreamHTTP2Connection: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    enum State: Equatable {
        case connecting
        /// Takes new streams while it has room.
        case ready
        /// A GOAWAY came, `maxRequestsPerConnection` was reached, or it is too old: no new
        /// stream; it closes after its last one.
        case draining
        case closed
    }

    let pool: HostPool
    var state = State.connecting
    /// Streams open on it (counted from the pool's hand-out to the stream's end).
    var activeStreams = 0
    /// Streams it has carried (`maxRequestsPerConnection`).
    var streamsOpened = 0
    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §6.5.2: unlimited until it says).
    var peerMaxStreams = Int(Int32.max)
    /// The last stream id of the peer's GOAWAY: streams above it were never processed.
    private(set) var goAwayLastStreamID: HTTP2StreamID?
    /// The connection broke HTTP/2 (a connection error): its streams' failures are protocol
    /// errors (502), not resets.
    private(set) var protocolError = false
    var idleSince = NIODeadline.uptimeNanoseconds(0)
    var connectedAt = NIODeadline.uptimeNanoseconds(0)
    var connectStartedAt = NIODeadline.uptimeNanoseconds(0)
    /// The stream limit it was counted with while connecting (the pool's connecting capacity).
    var connectingCapacity = 0
    private var multiplexer: NIOHTTP2Handler.StreamMultiplexer?
    private var context: ChannelHandlerContext?

    init(pool: HostPool) { self.pool = pool }

    /// Puts NIOHTTP2's client handler and this one on `channel` (its connect, and TLS handshake,
    /// are done). `headerListLimit`: the response header list size advertised and enforced
    /// while decoding (an HPACK bomb stops there).
    func install(on channel: Channel, headerListLimit: Int) throws {
        var c = NIOHTTP2Handler.ConnectionConfiguration()
        c.initialSettings = [
            // The gateway accepts no pushed streams at all.
            HTTP2Setting(parameter: .enablePush, value: 0),
            HTTP2Setting(parameter: .maxConcurrentStreams, value: 0),
            HTTP2Setting(parameter: .initialWindowSize, value: 65535),
            HTTP2Setting(parameter: .headerTableSize, value: 4096),
            HTTP2Setting(parameter: .maxHeaderListSize, value: headerListLimit),
            HTTP2Setting(parameter: .maxFrameSize, value: 1 << 14),
        ]
        // The same checks and bounds against a hostile peer as on the client side.
        HTTP2Downstream.boundHostilePeer(&c)
        c.targetWindowSize = 1 << 20
        var s = NIOHTTP2Handler.StreamConfiguration()
        s.targetWindowSize = 65535
        s.outboundBufferSizeHighWatermark = 64 * 1024
        s.outboundBufferSizeLowWatermark = 32 * 1024
        let handler = NIOHTTP2Handler(mode: .client, eventLoop: channel.eventLoop, connectionConfiguration: c,
                                      streamConfiguration: s) { stream in
            // A pushed stream (refused by SETTINGS_ENABLE_PUSH 0 already): nothing takes it.
            stream.close(promise: nil)
            return stream.eventLoop.makeSucceededVoidFuture()
        }
        try channel.pipeline.syncOperations.addHandlers([FlushCoalescer(), handler, self])
        multiplexer = try handler.syncMultiplexer()
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Opens a stream for `stream` (an `UpstreamConnection` the pool made): its child channel
    /// gets the codec and `stream` as its handlers. NIOHTTP2 creates stream channels on the
    /// event loop's next tick; `opened` is called then, with false if it failed (the stream is
    /// open on the network once its HEADERS go out).
    func openStream(_ stream: UpstreamConnection, requestScheme: String, opened: @escaping (Bool) -> Void) {
        let callback = NIOLoopBound(opened, eventLoop: pool.eventLoop)
        guard let multiplexer else {
            pool.eventLoop.execute { callback.value(false) }
            return
        }
        let handlers = NIOLoopBound((HTTP2UpstreamStreamCodec(connection: self, scheme: requestScheme), stream),
                                    eventLoop: pool.eventLoop)
        let promise = pool.eventLoop.makePromise(of: Channel.self)
        promise.futureResult.whenComplete { result in
            if case .success = result { callback.value(true) } else { callback.value(false) }
        }
        multiplexer.createStreamChannel(promise: promise) { child in
            child.eventLoop.makeCompletedFuture {
                try child.pipeline.syncOperations.addHandlers([handlers.value.0, handlers.value.1])
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Stream-0 frames, NIOHTTP2 has acted on them already.
        switch unwrapInboundIn(data).payload {
        case .settings(.settings(let settings)):
            for setting in settings where setting.parameter == .maxConcurrentStreams {
                peerMaxStreams = setting.value
                pool.http2SettingsChanged(self)
            }
        case .goAway(let lastStreamID, _, _):
            // Delivered before NIOHTTP2 closes the streams above `lastStreamID`, so they can
            // tell they were refused rather than reset.
            goAwayLastStreamID = min(goAwayLastStreamID ?? lastStreamID, lastStreamID)
            pool.http2GoAway(self)
        default:
            break
        }
    }

    /// Connection errors (NIOHTTP2 sent its GOAWAY): the upstream broke HTTP/2 — an oversized
    /// or undecodable header block, bad frames, a flood. Stream errors reach the stream alone.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard HTTP2DownstreamConnection.endsConnection(error) || error is NIOHTTP2Errors.ExcessivelyLargeHeaderBlock
            || error is NIOHTTP2Errors.ExcessiveNumberOfGlitches
        else { return }
        // Counted by each stream it fails (`upstream_cx_protocol_error`), as an HTTP/1.1 one.
        protocolError = true
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        pool.http2Closed(self)
        context.fireChannelInactive()
    }

    /// A stream that ended before its response head: refused (never processed, safe to send
    /// again) when the upstream said so, or when it lies above the upstream's GOAWAY.
    func wasRefused(_ streamID: HTTP2StreamID?, code: HTTP2ErrorCode?) -> Bool {
        if code == .refusedStream { return true }
        guard let last = goAwayLastStreamID else { return false }
        guard let streamID else { return true }
        return streamID > last
    }

    /// Closes the connection: a GOAWAY (NO_ERROR) first, so the upstream knows it was on purpose.
    func close() {
        guard let context, state != .closed else { return }
        // No stream more on it while the close is under way.
        if state == .ready { state = .draining }
        let channel = context.channel
        let goAway = HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: .rootStream, errorCode: .noError, opaqueData: nil))
        context.writeAndFlush(wrapOutboundOut(goAway)).whenComplete { _ in channel.close(promise: nil) }
    }
}

/// What a stream's codec tells its `UpstreamConnection` about how the stream ended.
struct UpstreamStreamEnded {
    let failure: UpstreamFailure
}

/// The first handler of an upstream stream's child channel: translates the HTTP/1.1 request the
/// `UpstreamConnection` writes (head bytes, then the body sized or chunked) into HEADERS and DATA,
/// and the HTTP/2 response back into the HTTP/1.1 form its framer reads — the head, the body
/// chunked (or as sent, when the upstream gave a content-length), the upstream's trailers as the
/// chunked trailer section. Request trailers have no HTTP/1.1-side source here and are not sent.
final class HTTP2UpstreamStreamCodec: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// The largest request head accepted from the router (it wrote it, within the listener's limits).
    static let maxRequestHead = 1 << 20

    fileprivate enum RequestState {
        /// Gathering the head bytes.
        case head(ByteBuffer?)
        /// A body of this many bytes still to send.
        case sized(Int)
        case chunked(BodyDecoder)
        /// END_STREAM went out.
        case done
    }

    private enum ResponseState {
        case head
        /// DATA goes on as it came (the upstream's content-length frames it).
        case sized
        /// DATA goes on as chunks.
        case chunked
        case done
    }

    private unowned let connection: UpstreamHTTP2Connection
    private let scheme: String
    private var request = RequestState.head(nil)
    private var response = ResponseState.head
    private var requestIsHead = false
    private var reported = false

    init(connection: UpstreamHTTP2Connection, scheme: String) {
        self.connection = connection
        self.scheme = scheme
    }

    // MARK: the request, HTTP/1.1 -> HTTP/2

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var bytes = unwrapOutboundIn(data)
        switch request {
        case .head(let held):
            if var held {
                held.writeBuffer(&bytes)
                bytes = held
            }
            let parsed: MessageHead?
            switch bytes.parseHead(.request, options: .init(maxHeadBytes: Self.maxRequestHead, maxHeadersCount: 10_000)) {
            case .success(let h): parsed = h
            case .failure:
                // The router wrote it: an HTTP/1.1 head the gateway made cannot be refused here.
                assertionFailure("the router's request head does not parse")
                context.close(promise: nil)
                return
            }
            guard let head = parsed else {
                request = .head(bytes)
                promise?.succeed()
                return
            }
            requestIsHead = bytes.withUnsafeReadableBytes { equalsExactly($0, head.method, "HEAD") }
            let headers = HTTP2Heads.requestHeaders(head, bytes, scheme: scheme)
            bytes.moveReaderIndex(forwardBy: head.length)
            switch HeadParser.requestFraming(head) {
            case .contentLength(let n) where n > 0:
                request = .sized(n)
            case .chunked:
                request = .chunked(BodyDecoder(.chunked))
            default:
                request = .done
            }
            context.write(wrapOutboundOut(.headers(.init(headers: headers, endStream: request.isDone))), promise: nil)
            if bytes.readableBytes > 0 {
                body(context: context, bytes, promise: promise)
            } else {
                promise?.succeed()
            }
        default:
            body(context: context, bytes, promise: promise)
        }
    }

    private func body(context: ChannelHandlerContext, _ bytes: ByteBuffer, promise: EventLoopPromise<Void>?) {
        switch request {
        case .sized(let left):
            let n = min(left, bytes.readableBytes)
            request = left - n == 0 ? .done : .sized(left - n)
            let part = bytes.getSlice(at: bytes.readerIndex, length: n)!
            context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(part), endStream: request.isDone))), promise: promise)
        case .chunked(var decoder):
            // The framing was checked on its way in; this pass finds the payload.
            var parts: [ByteBuffer] = []
            _ = try? bytes.withUnsafeReadableBytes { raw throws(HTTPParseError) in
                try decoder.consume(raw) { range in
                    parts.append(bytes.getSlice(at: bytes.readerIndex + range.lowerBound, length: range.count)!)
                }
            }
            request = decoder.isComplete ? .done : .chunked(decoder)
            for (i, part) in parts.enumerated() {
                let last = i == parts.count - 1 && request.isDone
                context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(part), endStream: last))), promise: nil)
            }
            if parts.isEmpty && request.isDone {
                context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))), promise: nil)
            }
            promise?.succeed()
        case .head, .done:
            // Nothing more belongs to this request (bytes after its end cannot come from the router).
            promise?.succeed()
        }
    }

    // MARK: the response, HTTP/2 -> HTTP/1.1

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let h):
            do throws(HTTPParseError) {
                try responseHeaders(context: context, h.headers, endStream: h.endStream)
            } catch {
                failProtocol(context: context, error)
            }
        case .data(let d):
            guard case .byteBuffer(let bytes) = d.data else { return }
            switch response {
            case .sized:
                if bytes.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(bytes)) }
                if d.endStream { response = .done }
            case .chunked:
                var out = context.channel.allocator.buffer(capacity: bytes.readableBytes + 16)
                if bytes.readableBytes > 0 {
                    out.writeString(String(bytes.readableBytes, radix: 16))
                    out.writeStaticString("\r\n")
                    out.writeImmutableBuffer(bytes)
                    out.writeStaticString("\r\n")
                }
                if d.endStream {
                    out.writeStaticString("0\r\n\r\n")
                    response = .done
                }
                if out.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(out)) }
            case .head, .done:
                failProtocol(context: context, HTTPParseError(502, "DATA outside a response body"))
            }
        default:
            break
        }
    }

    private func responseHeaders(context: ChannelHandlerContext, _ headers: HPACKHeaders, endStream: Bool) throws(HTTPParseError) {
        switch response {
        case .head:
            var out = context.channel.allocator.buffer(capacity: 512)
            let status = try HTTP2Heads.responseHead(headers, into: &out)
            if status < 200 {
                // 1xx: an interim head (101 is not HTTP/2's, RFC 9113 §8.6).
                guard status != 101, !endStream else { throw HTTPParseError(502, "invalid interim response from upstream") }
                out.writeStaticString("\r\n")
                context.fireChannelRead(wrapInboundOut(out))
                return
            }
            let noBody = requestIsHead || status == 204 || status == 304
            let hasLength = headers.contains(name: "content-length")
            if endStream {
                // No body: said with a content-length of 0 where the status may have one.
                if !noBody && !hasLength { out.writeStaticString("content-length: 0\r\n") }
                response = .done
            } else if hasLength || noBody {
                response = .sized
            } else {
                out.writeStaticString("transfer-encoding: chunked\r\n")
                response = .chunked
            }
            out.writeStaticString("\r\n")
            context.fireChannelRead(wrapInboundOut(out))
        case .chunked:
            guard endStream else { throw HTTPParseError(502, "HEADERS inside a response body") }
            var out = context.channel.allocator.buffer(capacity: 256)
            try HTTP2Heads.trailerSection(headers, into: &out)
            response = .done
            context.fireChannelRead(wrapInboundOut(out))
        case .sized:
            // Trailers after a body framed by content-length: HTTP/1.1 has no place for them.
            guard endStream else { throw HTTPParseError(502, "HEADERS inside a response body") }
            response = .done
        case .done:
            throw HTTPParseError(502, "HEADERS after the response ended")
        }
    }

    private func failProtocol(context: ChannelHandlerContext, _ error: HTTPParseError) {
        report(context: context, .protocolError(error))
        context.close(promise: nil)
    }

    /// The stream ended abnormally: the upstream reset it, NIOHTTP2 found it malformed, or the
    /// connection went. Its `UpstreamConnection` learns how before it sees the channel go.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        let closed = error as? NIOHTTP2Errors.StreamClosed
        let id = closed?.streamID ?? (try? context.channel.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID))
        if response == .head && connection.wasRefused(id, code: closed?.errorCode) {
            // Refused, or above a GOAWAY (its HEADERS may not even have gone out): never processed.
            report(context: context, .refusedStream)
        } else if connection.protocolError || (closed == nil && error is any NIOHTTP2Error) {
            // The connection broke HTTP/2, or NIOHTTP2 found this stream's frames malformed.
            report(context: context, protocolFailure)
        } else {
            report(context: context, .reset)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if response != .done {
            if connection.protocolError {
                report(context: context, protocolFailure)
            } else if response == .head, connection.wasRefused(try? context.channel.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID), code: nil) {
                report(context: context, .refusedStream)
            }
        }
        context.fireChannelInactive()
    }

    private var protocolFailure: UpstreamFailure { .protocolError(HTTPParseError(502, "upstream HTTP/2 protocol error")) }

    private func report(context: ChannelHandlerContext, _ failure: UpstreamFailure) {
        guard !reported else { return }
        reported = true
        context.fireUserInboundEventTriggered(UpstreamStreamEnded(failure: failure))
    }
}

extension HTTP2UpstreamStreamCodec.RequestState {
    var isDone: Bool { if case .done = self { true } else { false } }
}
