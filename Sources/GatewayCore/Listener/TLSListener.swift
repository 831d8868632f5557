import HTTP1Wire
import NIOCore
import NIOSSL
import NIOTLS

/// The pipelines of the ports Istio Gateway `servers` open. A plaintext port is set up exactly
/// as the main listener (one `DownstreamHandler`), so TLS costs nothing where it is not used.
enum GatewayListenerPipeline {
    /// A client has this long to finish its TLS handshake (HAProxy's `timeout client` default
    /// order of magnitude); the request timeouts start once it has.
    static let handshakeTimeout = TimeAmount.seconds(10)

    /// Sets up one accepted connection of `port` with the listener as this loop's snapshot has
    /// it now: a reload that renews a certificate applies to the next connection accepted.
    static func initialize(_ channel: Channel, port: Int, worker: Worker) throws {
        worker.eventLoop.assertInEventLoop()
        let pipeline = channel.pipeline.syncOperations
        guard let listener = worker.snapshot.config.gatewayListeners.first(where: { $0.port == port }) else {
            // The port left the config with a reload: its listener stays bound until a restart,
            // and its connections are refused.
            channel.close(promise: nil)
            return
        }
        switch listener.kind {
        case .plaintext(httpsRedirect: true):
            try pipeline.addHandler(HTTPSRedirectHandler(worker: worker))
        case .plaintext(httpsRedirect: false):
            if listener.http2 {
                // HTTP/2 with prior knowledge beside HTTP/1.1 (protocol HTTP2 or GRPC): the first bytes decide.
                try pipeline.addHandler(HTTP2PrefaceSniffer(worker: worker))
            } else {
                try pipeline.addHandler(DownstreamHandler(worker: worker))
            }
        case .tls(let table):
            let deadline = TLSHandshakeDeadline(worker: worker)
            if table.servers.count == 1 && table.servers[0].hosts.contains("*") {
                // One certificate for every name: no need to read the SNI first.
                try pipeline.addHandler(NIOSSLServerHandler(context: table.servers[0].context))
            } else {
                // Envoy's filter chain match on `server_names`: the ClientHello's SNI picks the
                // server, whose handler then takes the handshake from its first byte.
                try pipeline.addHandler(ByteToMessageHandler(SNIHandler { result in
                    var sni: String? = nil
                    if case .hostname(let name) = result { sni = name }
                    guard let server = table.server(for: sni) else {
                        worker.listenerStats.inc(.noFilterChainMatch, row: worker.row)
                        channel.close(promise: nil)
                        return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel)
                    }
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: server.context),
                                                                       position: .before(deadline))
                    }
                }))
            }
            try pipeline.addHandler(deadline)
            if listener.http2 {
                try pipeline.addHandler(alpnHandler(channel, worker: worker))
            } else {
                try pipeline.addHandler(DownstreamHandler(worker: worker, isSecure: true))
            }
        }
    }

    /// After the handshake, the protocol ALPN settled on picks the connection's handler: `h2`
    /// makes it an HTTP/2 connection, anything else (`http/1.1`, or a client that offered
    /// nothing) HTTP/1.1. Bytes read before the choice wait in the negotiation handler, which
    /// then hands them on and leaves the pipeline.
    static func alpnHandler(_ channel: Channel, worker: Worker) -> ApplicationProtocolNegotiationHandler {
        ApplicationProtocolNegotiationHandler(alpnCompleteHandler: { result in
            channel.eventLoop.makeCompletedFuture {
                if case .negotiated("h2") = result {
                    try HTTP2Downstream.configurePipeline(channel, worker: worker, isSecure: true)
                } else {
                    try channel.pipeline.syncOperations.addHandler(DownstreamHandler(worker: worker, isSecure: true))
                }
            }
        })
    }
}

/// Closes a TLS connection whose handshake has not completed in time, then leaves the pipeline.
final class TLSHandshakeDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let worker: Worker
    private var timer: Scheduled<Void>?

    init(worker: Worker) { self.worker = worker }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        let worker = self.worker
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: GatewayListenerPipeline.handshakeTimeout) {
            worker.listenerStats.inc(.tlsHandshakeTimeouts, row: worker.row)
            channel.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? TLSUserEvent, case .handshakeCompleted = e {
            worker.listenerStats.inc(.tlsHandshakes, row: worker.row)
            timer?.cancel()
            timer = nil
            context.fireUserInboundEventTriggered(event)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A failed handshake (a client certificate refused under MUTUAL, no common version).
        if error is NIOSSLError || error is BoringSSLError { worker.listenerStats.inc(.tlsHandshakeErrors, row: worker.row) }
        context.fireErrorCaught(error)
    }
}

/// A plaintext server with `tls.httpsRedirect`: every request is answered `301` to the same URL
/// with `https` (Envoy's `require_tls: ALL`), a Host's `:80` dropped and any other port kept.
/// A head with an absolute-form target is redirected by its Host header like any other.
/// The connection closes after the answer, so no request body is ever read.
final class HTTPSRedirectHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let worker: Worker
    private var requests: MessageFramer
    private var admitted = false
    private var answered = false
    private var timer: Scheduled<Void>?

    init(worker: Worker) {
        self.worker = worker
        let limits = worker.snapshot.config.downstream
        requests = MessageFramer(.request, options: HeadParser.Options(
            maxHeadBytes: limits.maxRequestHeadersKb * 1024, maxHeadersCount: limits.maxHeadersCount))
    }

    func channelActive(context: ChannelHandlerContext) {
        guard worker.listenerStats.openConnection(limit: worker.snapshot.maxDownstreamConnections,
                                                  row: worker.row)
        else {
            context.close(promise: nil)
            return
        }
        admitted = true
        // The head must arrive within the request headers timeout (or 10 s when that is off).
        let channel = context.channel
        let worker = self.worker
        timer = context.eventLoop.assumeIsolated().scheduleTask(
            in: worker.snapshot.config.downstream.requestHeadersTimeout ?? .seconds(10)) {
            worker.listenerStats.inc(.headerTimeouts, row: worker.row)
            channel.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        requests.reset()
        if admitted {
            admitted = false
            worker.listenerStats.closeConnection(row: worker.row)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered, admitted else { return }
        requests.append(unwrapInboundIn(data))
        let reply: ByteBuffer
        do throws(HTTPParseError) {
            guard case .head(let bytes) = try requests.next() else { return }
            let head = requests.head
            worker.listenerStats.inc(.requestsTotal, row: worker.row)
            if let location = Self.location(head, bytes) {
                worker.listenerStats.countResponse(301, row: worker.row)
                reply = LocalReply.make(status: 301, body: "", close: true, extraHeaders: [("location", location)],
                                        allocator: context.channel.allocator)
            } else {
                worker.listenerStats.countResponse(400, row: worker.row)
                reply = LocalReply.make(status: 400, body: "a request needs a Host to be redirected to https", close: true,
                                        allocator: context.channel.allocator)
            }
        } catch {
            worker.listenerStats.inc(.protocolErrors, row: worker.row)
            worker.listenerStats.countResponse(error.status, row: worker.row)
            reply = LocalReply.make(status: error.status, body: error.reason, close: true, allocator: context.channel.allocator)
        }
        answered = true
        requests.reset()
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(reply)).whenComplete { _ in channel.close(promise: nil) }
    }

    /// Envoy's `https_redirect`: the scheme swapped, a Host's `:80` dropped, the path kept.
    static let redirect = CompiledRedirect(RedirectConfig(scheme: "https"))

    /// The https URL of the request (nil: it has no Host).
    static func location(_ head: MessageHead, _ bytes: ByteBuffer) -> String? {
        bytes.withUnsafeReadableBytes { redirect.location(head, $0, localPort: 0) }
    }
}
