import NIOCore

/// An HTTP/2 connection's flushes of one event-loop turn, sent as one. A connection's streams
/// end one by one as their upstream responses arrive, each inside another socket's read, and
/// NIOHTTP2 flushes the connection for every stream's frames unless the connection itself is
/// reading: a write(2) per stream (a third of the gateway's time under h2load -m 100, perf).
/// Here a flush only marks the connection; the write happens once the loop has handled this
/// turn's events (NIO runs queued tasks after them), with every stream's frames in it, as
/// HAProxy writes what a turn produced. A close sends what waits first. The same holds for an
/// HTTP/2 upstream connection, whose streams start inside client connections' reads.
/// Sits right below NIOHTTP2's handler (above TLS, which then encrypts the turn's frames at once).
final class FlushCoalescer: ChannelOutboundHandler {
    typealias OutboundIn = Any
    typealias OutboundOut = Any

    private var context: ChannelHandlerContext?
    private var flushScheduled = false
    /// A flush arrived and was not passed on yet.
    private var flushPending = false

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        if flushPending {
            flushPending = false
            context.flush()
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        flushPending = true
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolatedUnsafeUnchecked().execute { [self] in
            flushScheduled = false
            flushNow()
        }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        flushNow()
        context.close(mode: mode, promise: promise)
    }

    private func flushNow() {
        guard flushPending, let context else { return }
        flushPending = false
        context.flush()
    }
}
