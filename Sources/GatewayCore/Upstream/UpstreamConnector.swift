#if canImport(Glibc)
import Glibc
#endif
import DirectIO
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// Opens the TCP connection of a new `UpstreamConnection` (its handler is `connection`). The
/// gateway's connects through `ClientBootstrap`; tests hand the pool embedded channels.
protocol UpstreamConnector: Sendable {
    /// `settings`: the cluster's `connectTimeout` and `tcpKeepalive`.
    func connect(_ connection: UpstreamConnection, to host: Host, on eventLoop: EventLoop,
                 settings: ConnectionPoolSettings) -> EventLoopFuture<Void>
    /// As above, over TLS when `tls` is set: the future succeeds once the handshake has, and
    /// `connection` joins the pipeline only then, so a refused certificate is a connect failure.
    /// `serviceHost`: the ServiceEntry host, the SNI name when `tls` names none.
    func connect(_ connection: UpstreamConnection, to host: Host, on eventLoop: EventLoop,
                 settings: ConnectionPoolSettings, tls: UpstreamTLSConfig?, serviceHost: String) -> EventLoopFuture<Void>
    /// An HTTP/2 connection: as above (TLS offering ALPN `h2`), with `install` putting the HTTP/2
    /// handlers on the channel once it is connected (and past its handshake).
    func connectHTTP2(to host: Host, on eventLoop: EventLoop, settings: ConnectionPoolSettings, tls: UpstreamTLSConfig?,
                      serviceHost: String, install: @escaping (Channel) throws -> Void) -> EventLoopFuture<Void>
}

extension UpstreamConnector {
    /// Connectors that speak plaintext only (the tests' embedded ones).
    func connect(_ connection: UpstreamConnection, to host: Host, on eventLoop: EventLoop,
                 settings: ConnectionPoolSettings, tls: UpstreamTLSConfig?, serviceHost: String) -> EventLoopFuture<Void> {
        precondition(tls == nil, "this connector cannot speak TLS")
        return connect(connection, to: host, on: eventLoop, settings: settings)
    }

    /// Connectors without HTTP/2 (the tests' embedded ones): every connect fails.
    func connectHTTP2(to host: Host, on eventLoop: EventLoop, settings: ConnectionPoolSettings, tls: UpstreamTLSConfig?,
                      serviceHost: String, install: @escaping (Channel) throws -> Void) -> EventLoopFuture<Void> {
        eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
    }
}

/// The gateway's connector: a socket per connection, TCP_NODELAY, `connectTimeout`.
struct SocketConnector: UpstreamConnector {
    func connect(_ connection: UpstreamConnection, to host: Host, on eventLoop: EventLoop,
                 settings: ConnectionPoolSettings) -> EventLoopFuture<Void> {
        connect(connection, to: host, on: eventLoop, settings: settings, tls: nil, serviceHost: "")
    }

    func connect(_ connection: UpstreamConnection, to host: Host, on eventLoop: EventLoop,
                 settings: ConnectionPoolSettings, tls: UpstreamTLSConfig?, serviceHost: String) -> EventLoopFuture<Void> {
        if Self.connectsDirectly(settings, tls: tls), let address = host.address, DirectSocket.isLoopback(address),
           case .connected(let fd) = DirectSocket.connect(to: address)
        {
            connection.useDirectSends(descriptor: fd)
            let install = NIOLoopBound(connection, eventLoop: eventLoop)
            let bootstrap = bootstrap(eventLoop, settings)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(install.value) }
                }
            // Registered from the loop's queue, never inside the request that asked for the
            // connection: on the loop, registering completes at once, and the pool's callback
            // would hand the connection out while its caller is still asking.
            return eventLoop.flatSubmit { bootstrap.withConnectedSocket(fd).map { _ in } }
        }
        return open(host, on: eventLoop, settings: settings, tls: tls, tlsContext: tls?.context, serviceHost: serviceHost) {
            try $0.pipeline.syncOperations.addHandler(connection)
        }
    }

    /// Whether a connection is made with `DirectSocket.connect`, so that its requests go out with
    /// one send(2) each (see `DirectWriter`): plaintext to a loopback address (where the handshake
    /// is over when connect returns; anywhere else NIO connects, within connectTimeout; a refused
    /// loopback connect falls through to NIO's, which fails and reports as any connect does), and
    /// only for a pool that keeps its connections. With `maxRequestsPerConnection: 1` a connect is
    /// part of every request, and the request is pending until epoll reports the connect a turn
    /// later, as in Envoy: that window is what `http1MaxPendingRequests` sheds in (the seed's
    /// `siege -c2` trips the breaker in it). A direct connect ends it within the same turn.
    static func connectsDirectly(_ settings: ConnectionPoolSettings, tls: UpstreamTLSConfig?) -> Bool {
        tls == nil && settings.maxRequestsPerConnection != 1
    }

    func connectHTTP2(to host: Host, on eventLoop: EventLoop, settings: ConnectionPoolSettings, tls: UpstreamTLSConfig?,
                      serviceHost: String, install: @escaping (Channel) throws -> Void) -> EventLoopFuture<Void> {
        open(host, on: eventLoop, settings: settings, tls: tls, tlsContext: tls?.h2Context, serviceHost: serviceHost,
             install: install)
    }

    /// The socket, TLS with `tlsContext` when `tls` is set, then `install` (after the handshake).
    private func open(_ host: Host, on eventLoop: EventLoop, settings: ConnectionPoolSettings, tls: UpstreamTLSConfig?,
                      tlsContext: NIOSSLContext?, serviceHost: String,
                      install: @escaping (Channel) throws -> Void) -> EventLoopFuture<Void> {
        // Called on `eventLoop`, the channel's, only.
        let install = NIOLoopBound(install, eventLoop: eventLoop)
        guard let address = host.address else {
            // Failed from the event loop's queue, as a refused connect would be, never inside
            // the request that asked for the connection.
            return eventLoop.submit { throw UnresolvedEndpoint(endpoint: host.endpoint) }
        }
        let bootstrap = bootstrap(eventLoop, settings)
        guard let tls, let tlsContext else {
            return bootstrap
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try install.value(channel)
                    }
                }
                .connect(to: address)
                .map { _ in }
        }
        // The SNI name, which the certificate must be for unless subjectAltNames say otherwise;
        // an IP address cannot be sent as SNI (nor checked as a name).
        let sni = tls.sni ?? serviceHost
        let serverName: String? = (try? sni.validateSNIName()) != nil ? sni : nil
        let handshake = eventLoop.makePromise(of: Void.self)
        return bootstrap
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let tlsHandler = try NIOSSLClientHandler(context: tlsContext, serverHostname: serverName)
                    try channel.pipeline.syncOperations.addHandler(tlsHandler)
                    try channel.pipeline.syncOperations.addHandler(UpstreamTLSHandshake(
                        tlsHandler: tlsHandler, subjectAltNames: tls.subjectAltNames, promise: handshake,
                        timeout: settings.connectTimeout))
                }
            }
            .connect(to: address)
            .flatMapError { error in
                // No channel, or it never connected: the handshake will not report, nor leak.
                handshake.fail(error)
                return eventLoop.makeFailedFuture(error)
            }
            .flatMap { channel in
                handshake.futureResult.flatMapThrowing {
                    try install.value(channel)
                }.flatMapErrorThrowing { error in
                    channel.close(promise: nil)
                    throw error
                }
            }
    }

    /// TCP_NODELAY, `connectTimeout` and the rule's `tcpKeepalive`, for every upstream socket.
    private func bootstrap(_ eventLoop: EventLoop, _ settings: ConnectionPoolSettings) -> ClientBootstrap {
        var bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(settings.connectTimeout)
            // At the TCP level (`.socketOption` would be SOL_SOCKET's option 1, SO_DEBUG).
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
        if let keepalive = settings.tcpKeepalive {
            bootstrap = bootstrap.channelOption(.socketOption(.so_keepalive), value: 1)
            if let probes = keepalive.probes {
                bootstrap = bootstrap.channelOption(.tcpOption(.init(rawValue: TCP_KEEPCNT)), value: SocketOptionValue(probes))
            }
            if let time = keepalive.time {
                bootstrap = bootstrap.channelOption(.tcpOption(.init(rawValue: TCP_KEEPIDLE)), value: Self.seconds(time))
            }
            if let interval = keepalive.interval {
                bootstrap = bootstrap.channelOption(.tcpOption(.init(rawValue: TCP_KEEPINTVL)), value: Self.seconds(interval))
            }
        }
        return bootstrap
    }

    private static func seconds(_ t: TimeAmount) -> SocketOptionValue {
        SocketOptionValue(t.nanoseconds / 1_000_000_000)
    }
}

/// An endpoint whose address did not resolve when the config was loaded: a connect failure.
struct UnresolvedEndpoint: Error {
    let endpoint: Endpoint
}

/// The endpoint's certificate is valid but carries none of the rule's `subjectAltNames`.
struct SubjectAltNameMismatch: Error, CustomStringConvertible {
    let expected: [String]
    var description: String { "the upstream certificate carries none of the subjectAltNames \(expected)" }
}

/// Waits for the TLS handshake with an endpoint (at most the connect timeout, which covers the
/// handshake as Envoy's does), checks `subjectAltNames` on the certificate, then leaves.
final class UpstreamTLSHandshake: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let tlsHandler: NIOSSLClientHandler
    private let subjectAltNames: [String]
    private var promise: EventLoopPromise<Void>?
    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?

    init(tlsHandler: NIOSSLClientHandler, subjectAltNames: [String], promise: EventLoopPromise<Void>, timeout: TimeAmount) {
        self.tlsHandler = tlsHandler
        self.subjectAltNames = subjectAltNames
        self.promise = promise
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let timeout = self.timeout
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
            self?.fail(ChannelError.connectTimeout(timeout), context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        // Removed with the channel before the handshake ended: the connect failed.
        promise?.fail(ChannelError.ioOnClosedChannel)
        promise = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let e = event as? TLSUserEvent, case .handshakeCompleted = e else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        if !subjectAltNames.isEmpty {
            let names = tlsHandler.peerCertificate.map(Self.names) ?? []
            guard names.contains(where: { n in subjectAltNames.contains { Self.matches(certificateName: n, $0) } }) else {
                fail(SubjectAltNameMismatch(expected: subjectAltNames), context: context)
                return
            }
        }
        timer?.cancel()
        let promise = self.promise
        self.promise = nil
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        promise?.succeed()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error, context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(ChannelError.eof, context: context)
    }

    private func fail(_ error: Error, context: ChannelHandlerContext) {
        timer?.cancel()
        guard let promise else { return }
        self.promise = nil
        promise.fail(error)
        context.close(promise: nil)
    }

    /// The certificate's DNS, URI and IP subject alternative names, as text.
    static func names(_ certificate: NIOSSLCertificate) -> [String] {
        certificate._subjectAlternativeNames().compactMap { san -> String? in
            switch san.nameType {
            case .dnsName, .uri: return String(decoding: san.contents, as: UTF8.self)
            case .ipAddress:
                let bytes = Array(san.contents)
                if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
                if bytes.count == 16, let a = try? SocketAddress(packedIPAddress: ByteBuffer(bytes: bytes), port: 0) {
                    return a.ipAddress
                }
                return nil
            default: return nil
            }
        }
    }

    /// Envoy's exact SAN match; a certificate's `*.example.com` covers one label.
    static func matches(certificateName: String, _ expected: String) -> Bool {
        if certificateName.caseInsensitiveCompare(expected) == .orderedSame { return true }
        guard certificateName.hasPrefix("*."), let dot = expected.firstIndex(of: ".") else { return false }
        return expected[dot...].caseInsensitiveCompare(certificateName.dropFirst()) == .orderedSame
    }
}
