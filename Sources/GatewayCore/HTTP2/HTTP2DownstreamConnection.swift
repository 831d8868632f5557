import HTTP1Wire
import NIOCore
import NIOHPACK
import NIOHTTP2

/// One HTTP/2 client connection: NIOHTTP2's handler does the framing, flow control and the
/// protections against hostile peers; this handler, behind it on the connection's channel, does
/// what `DownstreamHandler` does for an HTTP/1.1 connection: the listener's connection limit and
/// counters, the idle and duration timeouts, and the drain (GOAWAY, then the streams in flight
/// finish). Each stream is an `HTTP2DownstreamStream` on its own child channel. Confined to its
/// event loop.
final class HTTP2DownstreamConnection: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    let worker: Worker
    /// The listener's limits as of this connection's accept (a reload applies to new connections).
    let limits: DownstreamLimits
    /// The HeadParser's limits for the HTTP/1.1 form of each request head.
    let headOptions: HeadParser.Options
    private var context: ChannelHandlerContext?
    private var admitted = false
    /// The streams with a request in progress, for the tick's stream idle timeouts; at most
    /// SETTINGS_MAX_CONCURRENT_STREAMS, which NIOHTTP2 enforces before a stream exists.
    private var streams: [ObjectIdentifier: HTTP2DownstreamStream] = [:]
    /// The newest stream the client opened: the last a GOAWAY lets finish.
    private var lastStreamID = HTTP2StreamID.rootStream
    private let connectedAt: NIODeadline
    private var idleSince: NIODeadline
    /// A GOAWAY went out (drain, maximum duration, idle): the connection closes once its last stream ends.
    private var goingAway = false
    /// The connection closes once its last GOAWAY is written.
    private var closing = false

    /// The connection is TLS: every stream's request is https (`x-forwarded-proto`, scheme matches).
    let isSecure: Bool

    init(worker: Worker, isSecure: Bool = false) {
        self.worker = worker
        self.isSecure = isSecure
        limits = worker.snapshot.config.downstream
        headOptions = HeadParser.Options(maxHeadBytes: limits.maxRequestHeadersKb * 1024,
                                         maxHeadersCount: limits.maxHeadersCount)
        connectedAt = worker.coarseNow
        idleSince = connectedAt
    }

    private(set) lazy var clientAddress: String = ClientAddressText.of(context?.channel.remoteAddress)
    private(set) lazy var localPort: Int = context?.channel.localAddress?.port ?? 0
    var connectionAddresses: String {
        "\(context?.channel.remoteAddress?.description ?? "")\(context?.channel.localAddress?.description ?? "")"
    }

    // MARK: the connection's life

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // Added after ALPN (or after the preface was recognised), the connection is active already.
        if context.channel.isActive { admit(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        admit(context)
        context.fireChannelActive()
    }

    /// Counts the connection against the listener's `maxConnections`; past it, closes it at once.
    private func admit(_ context: ChannelHandlerContext) {
        guard !admitted else { return }
        guard worker.listenerStats.openConnection(limit: worker.snapshot.maxDownstreamConnections, row: worker.row) else {
            context.close(promise: nil)
            return
        }
        admitted = true
        worker.http2Connections[ObjectIdentifier(self)] = self
        worker.listenerStats.inc(.http2ConnectionsTotal, row: worker.row)
        worker.listenerStats.inc(.http2ConnectionsActive, row: worker.row)
        if worker.draining { goAway() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The streams' child channels are closed by the multiplexer; each ends its own request.
        if admitted {
            admitted = false
            worker.listenerStats.closeConnection(row: worker.row)
            worker.http2Connections[ObjectIdentifier(self)] = nil
            worker.listenerStats.add(.http2ConnectionsActive, -1, row: worker.row)
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Frames of stream 0 (SETTINGS, PING, GOAWAY): NIOHTTP2 has acted on them already. The
        // client's GOAWAY: it opens no more streams, so the connection goes after the last.
        if case .goAway = unwrapInboundIn(data).payload {
            goingAway = true
            if streams.isEmpty { sendGoAwayAndClose() }
        }
    }

    /// NIOHTTP2 reports stream errors (it reset that stream; the others go on) and connection
    /// errors (it wrote a GOAWAY and leaves the closing to its user) alike, as the error alone.
    /// Those that end the connection are these: the floods and rapid resets (ENHANCE_YOUR_CALM),
    /// a broken frame or preface, an oversized header block, a peer that does not read.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard Self.endsConnection(error), !lingering else { return }
        worker.listenerStats.inc(.http2ConnectionErrors, row: worker.row)
        lingerAndClose(context)
    }

    /// How long a connection ended by an error stays half-closed before it is closed.
    static let lingerTime = TimeAmount.seconds(1)
    private var lingering = false

    /// Sends NIOHTTP2's GOAWAY (it may still be unflushed) and then FIN, stops reading, and closes
    /// `lingerTime` later (a lingering close, RFC 9112 §9.6). Closed at once, a socket with the
    /// client's unread frames in it answers with a reset, which may reach the client before it
    /// has read the GOAWAY and take it away: a flooding client would never learn why.
    private func lingerAndClose(_ context: ChannelHandlerContext) {
        lingering = true
        context.flush()
        let channel = context.channel
        try? channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
        let halfClosed = context.eventLoop.makePromise(of: Void.self)
        halfClosed.futureResult.whenComplete { result in
            // A channel that cannot close its output alone (TLS without half-closure) closes whole.
            guard case .success = result else { return channel.close(promise: nil) }
            channel.eventLoop.scheduleTask(in: Self.lingerTime) { channel.close(promise: nil) }
        }
        context.close(mode: .output, promise: halfClosed)
    }

    static func endsConnection(_ error: Error) -> Bool {
        switch error {
        case is NIOHTTP2Errors.ExcessiveRSTFrames, is NIOHTTP2Errors.ExcessiveControlFrames,
             is NIOHTTP2Errors.ExcessiveEmptyDataFrames, is NIOHTTP2Errors.ExcessiveContinuationFrames,
             is NIOHTTP2Errors.ExcessiveStreamErrors, is NIOHTTP2Errors.ExcessiveNumberOfGlitches,
             is NIOHTTP2Errors.ExcessiveOutboundFrameBuffering, is NIOHTTP2Errors.ExcessivelyLargeHeaderBlock,
             is NIOHTTP2Errors.UnableToParseFrame, is NIOHTTP2Errors.BadClientMagic,
             is NIOHTTP2Errors.MissingPreface, is NIOHTTP2Errors.FlowControlViolation,
             is NIOHTTP2Errors.InvalidSetting, is any NIOHPACKError:
            return true
        default:
            return false
        }
    }

    // MARK: streams

    func streamOpened(_ stream: HTTP2DownstreamStream, id: HTTP2StreamID?) {
        streams[ObjectIdentifier(stream)] = stream
        if let id, id > lastStreamID { lastStreamID = id }
    }

    func streamClosed(_ stream: HTTP2DownstreamStream) {
        guard streams.removeValue(forKey: ObjectIdentifier(stream)) != nil else { return }
        if streams.isEmpty {
            idleSince = worker.coarseNow
            if goingAway { sendGoAwayAndClose() }
        }
    }

    // MARK: drain and timeouts

    /// A graceful GOAWAY (NO_ERROR, RFC 9113 §6.8): the client opens no new stream here, the
    /// streams it has finish, and the connection closes after the last. A stream newer than the
    /// last one announced, already on its way, is refused by NIOHTTP2; the client may retry it
    /// elsewhere, as nothing of it was processed.
    func goAway() {
        guard !goingAway, let context else { return }
        goingAway = true
        worker.listenerStats.inc(.http2GoAwaysSent, row: worker.row)
        if streams.isEmpty {
            sendGoAwayAndClose()
        } else {
            context.writeAndFlush(wrapOutboundOut(goAwayFrame), promise: nil)
        }
    }

    private var goAwayFrame: HTTP2Frame {
        HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: lastStreamID, errorCode: .noError, opaqueData: nil))
    }

    /// The last stream's end (or the GOAWAY itself) may still wait unflushed in NIOHTTP2's
    /// buffer when its stream reports closed: a close now would drop it. A GOAWAY behind it
    /// (repeating one is allowed, RFC 9113 §6.8) is written after it, and the close waits for that.
    private func sendGoAwayAndClose() {
        guard let context, !closing else { return }
        closing = true
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(goAwayFrame)).whenComplete { _ in channel.close(promise: nil) }
    }

    /// Called on every worker tick (Envoy's downstream timeouts, per stream and per connection).
    func checkTimeouts(now: NIODeadline) {
        if let limit = limits.streamIdleTimeout {
            for stream in streams.values { stream.checkTimeouts(now: now, limit: limit) }
        }
        if let limit = limits.maxConnectionDuration, now - connectedAt >= limit {
            if !goingAway { worker.listenerStats.inc(.maxDurationReached, row: worker.row) }
            goAway()
        } else if streams.isEmpty, let limit = limits.idleTimeout, now - idleSince >= limit, !goingAway {
            worker.listenerStats.inc(.connectionIdleTimeouts, row: worker.row)
            goAway()
        }
    }
}
