import NIOCore

/// The last write of a connection, held back until its flush so that both go down the pipeline
/// as one `writeAndFlush`. Every outbound call reaches NIO's pipeline head, whose handler is one
/// instance shared by every channel: each call retains and releases it, a cache line both event
/// loops write. A response or request usually leaves in one write, so holding it halves those
/// calls (uprobes: 4 fewer shared reference-count writes per proxied request). Holds the value
/// itself, not an `NIOAny`: copying an existential box costs more than the call it saves.
struct HeldWrite<Payload> {
    private var held: Payload?

    /// Queues `data` behind what was written before: the held write goes down now, `data` waits.
    @inline(__always)
    mutating func write(_ data: Payload, on context: ChannelHandlerContext) {
        if let previous = held { context.write(NIOAny(previous), promise: nil) }
        held = data
    }

    /// Sends everything written; false when there was nothing to send.
    @inline(__always) @discardableResult
    mutating func flush(on context: ChannelHandlerContext) -> Bool {
        guard let last = held else { return false }
        held = nil
        context.writeAndFlush(NIOAny(last), promise: nil)
        return true
    }

    /// Forgets the held write: the connection is gone and nothing more leaves it.
    mutating func drop() { held = nil }
}
