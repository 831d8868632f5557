import NIOCore

/// A connection's outbound bytes, sent with one `send(2)` on its descriptor when nothing of the
/// connection is queued in NIO, else written through NIO behind what is queued there. Only the
/// handler that owns the connection writes through it, on the connection's event loop.
///
/// The fast case of a request or a response is one buffer written and then flushed: it is held
/// until the flush and sent directly; what the kernel does not take at once (a full socket
/// buffer), and every write while NIO still has bytes queued, goes through NIO, which keeps the
/// order and reports errors by closing the channel as usual. Without a descriptor the held
/// buffer goes down NIO's pipeline with its flush as one `writeAndFlush`: each outbound call
/// retains NIO's pipeline head, one object every channel shares.
///
/// Every NIO call comes after the writer's own state is updated: the call can come back into
/// the owner (a writability change that flushes), which must then see what was already sent.
public final class DirectWriter {
    /// -1: everything goes through NIO (no descriptor, or not on Linux).
    public private(set) var descriptor: CInt
    /// The one buffer written since the last flush, while nothing written through NIO waits
    /// for a flush or (with a descriptor) for the socket.
    private var held: ByteBuffer?
    /// NIO writes not finished yet: later direct sends must wait behind them.
    private var queuedInNIO = 0
    /// Bytes handed to NIO and not flushed.
    private var unflushedInNIO = false

    /// `descriptor`: a socket the caller connected itself and handed to NIO
    /// (`DirectSocket.connect`, `ClientBootstrap.withConnectedSocket`); -1 writes through NIO only.
    /// NIO does not publish the descriptors of the channels it makes, so those write through NIO.
    public init(descriptor: CInt = -1) { self.descriptor = descriptor }

    /// Something to flush: held bytes or bytes in NIO.
    public var needsFlush: Bool { held != nil || unflushedInNIO }

    @inline(__always) public func write(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        if held == nil && queuedInNIO == 0 && !unflushedInNIO {
            held = buffer
            return
        }
        if let first = held {
            held = nil
            writeThroughNIO(first, context: context)
        }
        writeThroughNIO(buffer, context: context)
    }

    @inline(__always) public func flush(context: ChannelHandlerContext) {
        if let bytes = held {
            held = nil
            guard descriptor >= 0 else {
                // Nothing else waits in NIO (see `write`): one call down the pipeline.
                assert(!unflushedInNIO, "a held write never waits behind NIO's unflushed bytes")
                context.writeAndFlush(NIOAny(bytes), promise: nil)
                return
            }
            // A closed channel has closed its descriptor, whose number may already be another socket's.
            let sent = context.channel.isActive ? DirectSocket.send(descriptor, bytes) : 0
            if sent == bytes.readableBytes { return }
            var rest = bytes
            rest.moveReaderIndex(forwardBy: sent)
            writeThroughNIO(rest, context: context)
        }
        if unflushedInNIO {
            unflushedInNIO = false
            context.flush()
        }
    }

    @inline(__always) public func writeAndFlush(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        write(buffer, context: context)
        flush(context: context)
    }

    /// Forgets a held write (the connection is closing: its bytes will never go).
    public func discard() { held = nil }

    private func writeThroughNIO(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        unflushedInNIO = true
        // Counted only while direct sends are possible: they must not overtake these bytes.
        guard descriptor >= 0 else {
            context.write(NIOAny(buffer), promise: nil)
            return
        }
        queuedInNIO += 1
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolatedUnsafeUnchecked().whenComplete { _ in self.queuedInNIO -= 1 }
        context.write(NIOAny(buffer), promise: written)
    }
}
