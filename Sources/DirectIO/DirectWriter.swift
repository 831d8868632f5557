import NIOCore

/// A connection's outbound bytes, sent with one `send(2)` on its descriptor when nothing of the
/// connection is queued in NIO, else written through NIO behind what is queued there. Only the
/// handler that owns the connection writes through it, on the connection's event loop.
///
/// The fast case of a request or a response is one buffer written and then flushed: it is held
/// until the flush and sent directly; what the kernel does not take at once (a full socket
/// buffer), and every write while NIO still has bytes queued, goes through NIO, which keeps the
/// order and reports errors by closing the channel as usual.
public final class DirectWriter {
    /// -1: everything goes through NIO (no descriptor, or not on Linux).
    public private(set) var descriptor: CInt
    /// The one buffer written since the last flush, while NIO has nothing queued.
    private var held: ByteBuffer?
    /// NIO writes not finished yet: later bytes must queue behind them.
    private var queuedInNIO = 0
    /// Bytes handed to NIO and not flushed.
    private var unflushedInNIO = false

    /// The channel whose descriptor is to be looked up, and how many flushes before that. Weak:
    /// the channel's pipeline holds the handler that holds this writer.
    private weak var channel: Channel?
    private var flushesBeforeLookup = 0
    /// A lookup is still to come (a plain flag: reading the weak reference costs atomics).
    private var lookupPending = false

    /// Flushes a connection makes before its descriptor is looked up. The lookup (reflection and
    /// two system calls, ~15 µs) costs what a few dozen direct sends save, so a connection that
    /// carries one request (`Connection: close`, `maxRequestsPerConnection: 1`) never pays it.
    public static let lookupAfterFlushes = 32

    public init(descriptor: CInt = -1) { self.descriptor = descriptor }

    /// Looks the descriptor up (see `DirectSocket.descriptor(of:)`) once the connected channel has
    /// flushed `after` times; until then NIO writes.
    public func attach(_ channel: Channel, after flushes: Int = DirectWriter.lookupAfterFlushes) {
        guard descriptor < 0 else { return }
        self.channel = channel
        lookupPending = true
        flushesBeforeLookup = flushes
        if flushes <= 0 && queuedInNIO == 0 { lookUpDescriptor() }
    }

    private func lookUpDescriptor() {
        if let channel, channel.isActive, let fd = DirectSocket.descriptor(of: channel) { descriptor = fd }
        channel = nil
        lookupPending = false
    }

    /// Something to flush: held bytes or bytes in NIO.
    public var needsFlush: Bool { held != nil || unflushedInNIO }

    @inline(__always) public func write(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        if descriptor >= 0 && held == nil && queuedInNIO == 0 {
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
        if lookupPending {
            flushesBeforeLookup -= 1
            // Not while NIO still has bytes of this connection: a direct send would overtake them.
            if flushesBeforeLookup <= 0 && queuedInNIO == 0 { lookUpDescriptor() }
        }
    }

    @inline(__always) public func writeAndFlush(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        write(buffer, context: context)
        flush(context: context)
    }

    private func writeThroughNIO(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        unflushedInNIO = true
        // Counted while direct sends are possible, or about to be once the descriptor is known.
        guard descriptor >= 0 || lookupPending else {
            context.write(NIOAny(buffer), promise: nil)
            return
        }
        queuedInNIO += 1
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolatedUnsafeUnchecked().whenComplete { _ in self.queuedInNIO -= 1 }
        context.write(NIOAny(buffer), promise: written)
    }
}
