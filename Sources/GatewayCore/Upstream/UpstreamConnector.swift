import NIOCore
import NIOPosix

/// Opens the TCP connection of a new `UpstreamConnection` (its handler is `connection`). The
/// gateway's connects through `ClientBootstrap`; tests hand the pool embedded channels.
protocol UpstreamConnector: Sendable {
    func connect(_ connection: UpstreamConnection, to host: Host, on eventLoop: EventLoop,
                 timeout: TimeAmount) -> EventLoopFuture<Void>
}

/// The gateway's connector: a socket per connection, TCP_NODELAY, `connectTimeout`.
struct SocketConnector: UpstreamConnector {
    func connect(_ connection: UpstreamConnection, to host: Host, on eventLoop: EventLoop,
                 timeout: TimeAmount) -> EventLoopFuture<Void> {
        guard let address = host.address else {
            // Failed from the event loop's queue, as a refused connect would be, never inside
            // the request that asked for the connection.
            return eventLoop.submit { throw UnresolvedEndpoint(endpoint: host.endpoint) }
        }
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(connection)
                }
            }
            .connect(to: address)
            .map { _ in }
    }
}

/// An endpoint whose address did not resolve when the config was loaded: a connect failure.
struct UnresolvedEndpoint: Error {
    let endpoint: Endpoint
}
