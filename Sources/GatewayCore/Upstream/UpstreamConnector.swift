#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

/// Opens the TCP connection of a new `UpstreamConnection` (its handler is `connection`). The
/// gateway's connects through `ClientBootstrap`; tests hand the pool embedded channels.
protocol UpstreamConnector: Sendable {
    /// `settings`: the cluster's `connectTimeout` and `tcpKeepalive`.
    func connect(_ connection: UpstreamConnection, to host: Host, on eventLoop: EventLoop,
                 settings: ConnectionPoolSettings) -> EventLoopFuture<Void>
}

/// The gateway's connector: a socket per connection, TCP_NODELAY, `connectTimeout`.
struct SocketConnector: UpstreamConnector {
    func connect(_ connection: UpstreamConnection, to host: Host, on eventLoop: EventLoop,
                 settings: ConnectionPoolSettings) -> EventLoopFuture<Void> {
        guard let address = host.address else {
            // Failed from the event loop's queue, as a refused connect would be, never inside
            // the request that asked for the connection.
            return eventLoop.submit { throw UnresolvedEndpoint(endpoint: host.endpoint) }
        }
        var bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(settings.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
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
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(connection)
                }
            }
            .connect(to: address)
            .map { _ in }
    }

    private static func seconds(_ t: TimeAmount) -> SocketOptionValue {
        SocketOptionValue(t.nanoseconds / 1_000_000_000)
    }
}

/// An endpoint whose address did not resolve when the config was loaded: a connect failure.
struct UnresolvedEndpoint: Error {
    let endpoint: Endpoint
}
