import HTTP1Wire
import NIOCore
import NIOHTTP2

/// How a client connection becomes an HTTP/2 one. Two ways in: h2c with prior knowledge on the
/// plaintext listener (`HTTP2PrefaceSniffer`), and ALPN `h2` after a TLS handshake: the TLS
/// listener's negotiation handler calls `configurePipeline` in place of adding a
/// `DownstreamHandler`.
enum HTTP2Downstream {
    /// Makes `channel` the server side of an HTTP/2 connection whose streams go through the
    /// router as requests: NIOHTTP2's handler (framing, HPACK, flow control, the protections
    /// below), then an `HTTP2DownstreamConnection`, and an `HTTP2DownstreamStream` per stream.
    /// Call on the channel's event loop, with nothing after the TLS handler (or nothing at all)
    /// in the pipeline; the channel may be active already (the server preface then goes out at once).
    /// The client's connection preface must be the first bytes read after this.
    /// `isSecure`: the connection is TLS (ALPN chose h2), so its streams' scheme is https.
    static func configurePipeline(_ channel: Channel, worker: Worker, isSecure: Bool = false) throws {
        worker.eventLoop.assertInEventLoop()
        let limits = worker.snapshot.config.downstream
        let options = limits.http2 ?? HTTP2Options()
        let connection = HTTP2DownstreamConnection(worker: worker, isSecure: isSecure)
        let loopBound = NIOLoopBound(connection, eventLoop: worker.eventLoop)
        let handler = NIOHTTP2Handler(
            mode: .server, eventLoop: channel.eventLoop,
            connectionConfiguration: connectionConfiguration(options, limits),
            streamConfiguration: streamConfiguration(options)
        ) { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandler(HTTP2DownstreamStream(connection: loopBound.value))
            }
        }
        try channel.pipeline.syncOperations.addHandlers([FlushCoalescer(), handler, connection])
    }

    /// The connection's SETTINGS and NIOHTTP2's bounds against hostile peers, each set here
    /// rather than left to the library's defaults, so a library update cannot loosen them unseen.
    static func connectionConfiguration(_ options: HTTP2Options, _ limits: DownstreamLimits)
        -> NIOHTTP2Handler.ConnectionConfiguration
    {
        var c = NIOHTTP2Handler.ConnectionConfiguration()
        c.initialSettings = [
            // Streams one connection may have open; NIOHTTP2 refuses more with REFUSED_STREAM.
            HTTP2Setting(parameter: .maxConcurrentStreams, value: options.maxConcurrentStreams),
            // Body bytes a stream may send before the gateway reads them (per-stream flow control).
            HTTP2Setting(parameter: .initialWindowSize, value: options.initialStreamWindowSize),
            // The HPACK dynamic table the client's encoder may fill: bounds the decoder's memory.
            HTTP2Setting(parameter: .headerTableSize, value: 4096),
            // The decoded header list (RFC 7541 sizes: name + value + 32 per field), checked while
            // decoding so an HPACK bomb stops at this size. It is the HTTP/1.1 head limit plus the
            // 32-byte overhead per field, so a list within it that is still too big in HTTP/1.1
            // form gets the HeadParser's 431 on its stream, like an HTTP/1.1 request.
            HTTP2Setting(parameter: .maxHeaderListSize,
                         value: min(limits.maxRequestHeadersKb * 1024 + 32 * min(limits.maxHeadersCount, 1000), 1 << 24)),
            HTTP2Setting(parameter: .maxFrameSize, value: 1 << 14),
            // The gateway never pushes.
            HTTP2Setting(parameter: .enablePush, value: 0),
        ]
        boundHostilePeer(&c)
        // Suspicious events (stream errors, refused streams) a connection may cause before it is closed.
        c.maximumConnectionGlitches = 200
        // The connection's receive window: body bytes all streams together may send ahead.
        c.targetWindowSize = options.initialConnectionWindowSize
        // PING, SETTINGS, PRIORITY frames received: 200 in 30 s, then ENHANCE_YOUR_CALM.
        c.controlFrameRateLimit.maximumCount = 200
        c.controlFrameRateLimit.windowLength = .seconds(30)
        return c
    }

    /// NIOHTTP2's checks and bounds against a hostile peer, the same for clients and upstreams.
    static func boundHostilePeer(_ c: inout NIOHTTP2Handler.ConnectionConfiguration) {
        // RFC 9113 §8.2 and §8.3 on every header block: pseudo-headers, connection-specific
        // fields, uppercase names, `te`; a violation resets that stream (PROTOCOL_ERROR).
        c.headerBlockValidation = .enabled
        // RFC 9113 §8.1.1: DATA must add up to content-length.
        c.contentLengthValidation = .enabled
        // Empty DATA frames in a row without END_STREAM cost work and move nothing (CVE-2019-9518).
        c.maximumSequentialEmptyDataFrames = 1
        // Control frames (PING and SETTINGS acks, RST_STREAM) queued for a peer that does not
        // read: past this the connection is closed (CVE-2019-9512, 9515: PING and SETTINGS floods).
        c.maximumBufferedControlFrames = 1000
        // CONTINUATION frames after one HEADERS (the 2024 CONTINUATION flood).
        c.maximumSequentialContinuationFrames = 5
        // Closed streams remembered so their late frames are ignored rather than errors.
        c.maximumRecentlyResetStreams = 32
    }

    static func streamConfiguration(_ options: HTTP2Options) -> NIOHTTP2Handler.StreamConfiguration {
        var s = NIOHTTP2Handler.StreamConfiguration()
        // The stream's window, refilled as the gateway reads (its reads pause with the upstream's).
        s.targetWindowSize = options.initialStreamWindowSize
        // Response bytes a stream holds for a client whose window is shut before it turns
        // unwritable, and the filter stops reading the upstream (Envoy's watermarks).
        s.outboundBufferSizeHighWatermark = 64 * 1024
        s.outboundBufferSizeLowWatermark = 32 * 1024
        // RST_STREAM frames received: 200 in 30 s, then GOAWAY ENHANCE_YOUR_CALM (rapid reset,
        // CVE-2023-44487: streams opened and reset at once, each costing a request upstream).
        s.streamResetFrameRateLimit.maximumCount = 200
        s.streamResetFrameRateLimit.windowLength = .seconds(30)
        // Stream errors the client causes (malformed blocks, bad DATA): the same bound.
        s.streamErrorRateLimit.maximumCount = 200
        s.streamErrorRateLimit.windowLength = .seconds(30)
        return s
    }
}

/// On a listener with `http2`, the first bytes of a connection tell HTTP/2 with prior knowledge
/// (the client preface, RFC 9113 §3.4) from HTTP/1.1; this handler reads them, installs the one
/// or the other, and leaves the pipeline. It holds fewer than 24 bytes, for at most the
/// listener's request headers timeout. An HTTP/1.1 `Upgrade: h2c` is not honoured: the upgrade
/// field goes like every hop-by-hop field.
final class HTTP2PrefaceSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    let worker: Worker
    private var held: ByteBuffer?
    private var decided = false
    private var timer: Scheduled<Void>?

    init(worker: Worker) {
        self.worker = worker
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // A connection that sends nothing is not yet counted by either protocol's handler.
        let limit = worker.snapshot.config.downstream.requestHeadersTimeout ?? .seconds(10)
        let channel = context.channel
        timer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: limit) { [self] in
            if !decided { channel.close(promise: nil) }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !decided else {
            context.fireChannelRead(data)
            return
        }
        var bytes = unwrapInboundIn(data)
        if var earlier = held {
            earlier.writeBuffer(&bytes)
            bytes = earlier
            held = nil
        }
        let n = min(bytes.readableBytes, Self.preface.count)
        let matches = bytes.withUnsafeReadableBytes { b in (0..<n).allSatisfy { b[$0] == Self.preface[$0] } }
        if matches && n < Self.preface.count {
            held = bytes
            return
        }
        decided = true
        do {
            if matches {
                try HTTP2Downstream.configurePipeline(context.channel, worker: worker)
            } else {
                try context.pipeline.syncOperations.addHandler(DownstreamHandler(worker: worker))
            }
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(wrapInboundOut(bytes))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
