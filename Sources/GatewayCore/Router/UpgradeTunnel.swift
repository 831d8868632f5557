import NIOCore

/// One side of a tunnel: the client's connection or the upstream's. Both are HTTP/1.1
/// connections that stopped framing after a 101 and now hand their bytes to the tunnel.
protocol TunnelEnd: AnyObject {
    /// Bytes for this side's peer socket, sent at the next `tunnelFlush`.
    func tunnelWrite(_ bytes: ByteBuffer)
    func tunnelFlush()
    /// Whether this side's socket takes bytes as fast as they come (under its high watermark).
    var tunnelWritable: Bool { get }
    func tunnelPauseReading()
    func tunnelResumeReading()
    /// Closes this side (once its written bytes are out).
    func tunnelClose()
}

/// A WebSocket after the upstream's `101 Switching Protocols` (Envoy's upgraded stream, which
/// it then proxies like TCP): bytes are copied both ways untouched until either side closes, and
/// the close is passed on. Flow control as for a response: a side that cannot keep up stops the
/// other's reads. The upstream connection stays an active request of its pool for the tunnel's
/// life, so the cluster's `maxConnections` and `http2MaxRequests` count it; the client's stream
/// idle timeout ends a tunnel in which nothing moves. Confined to the client's event loop.
final class UpgradeTunnel {
    private weak var client: TunnelEnd?
    private weak var upstream: TunnelEnd?
    /// Told once, when the tunnel is over (the router filter logs the request then).
    private var onEnd: ((_ fromClient: Int, _ toClient: Int) -> Void)?
    private let eventLoop: EventLoop
    private(set) var bytesFromClient = 0
    private(set) var bytesToClient = 0
    private(set) var isOver = false

    init(client: TunnelEnd, upstream: TunnelEnd, eventLoop: EventLoop,
         onEnd: @escaping (_ fromClient: Int, _ toClient: Int) -> Void) {
        self.client = client
        self.upstream = upstream
        self.eventLoop = eventLoop
        self.onEnd = onEnd
    }

    /// Bytes one side read, for the other.
    func received(_ bytes: ByteBuffer, from side: TunnelEnd) {
        eventLoop.assertInEventLoop()
        guard !isOver, let peer = peer(of: side) else { return }
        if side === client { bytesFromClient += bytes.readableBytes } else { bytesToClient += bytes.readableBytes }
        peer.tunnelWrite(bytes)
        // The peer's buffer is over its watermark: this side waits (resumed by `writabilityChanged`).
        if !peer.tunnelWritable { side.tunnelPauseReading() }
    }

    /// One read batch of `side` is over: what it read goes out to the peer now.
    func readComplete(from side: TunnelEnd) {
        guard !isOver else { return }
        peer(of: side)?.tunnelFlush()
    }

    func writabilityChanged(of side: TunnelEnd) {
        guard !isOver, let peer = peer(of: side) else { return }
        if side.tunnelWritable { peer.tunnelResumeReading() } else { peer.tunnelPauseReading() }
    }

    /// One side closed (or must close: a timeout, a drain): the other is closed after the bytes
    /// already written to it, and the tunnel is over.
    func close(from side: TunnelEnd?) {
        eventLoop.assertInEventLoop()
        guard !isOver else { return }
        isOver = true
        let client = self.client
        let upstream = self.upstream
        self.client = nil
        self.upstream = nil
        if side !== client { client?.tunnelClose() }
        if side !== upstream { upstream?.tunnelClose() }
        let onEnd = self.onEnd
        self.onEnd = nil
        onEnd?(bytesFromClient, bytesToClient)
    }

    private func peer(of side: TunnelEnd) -> TunnelEnd? {
        if side === client { return upstream }
        assert(side === upstream, "a tunnel end of this tunnel")
        return client
    }
}
