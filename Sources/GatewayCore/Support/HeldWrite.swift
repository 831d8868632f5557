/// The last write of a connection, held back until its flush so that both go down the pipeline
/// as one `writeAndFlush`. Every outbound call reaches NIO's pipeline head, whose handler is one
/// instance shared by every channel: each call retains and releases it, a cache line both event
/// loops write. A response or request usually leaves in one write, so holding it halves those
/// calls. Holds the value itself, not an `NIOAny` (copying an existential box costs more than
/// the call it saves).
///
/// It only trades values: the caller makes the NIO call after the mutation has ended, because
/// that call can come back into the handler (a writability change that flushes, or writes)
/// and the held value must already be what the caller's code sees then.
struct HeldWrite<Payload> {
    private var held: Payload?

    /// Holds `data`; returns the write held before it, for the caller to write now (ahead of `data`).
    @inline(__always)
    mutating func hold(_ data: Payload) -> Payload? {
        defer { held = data }
        return held
    }

    /// The held write, for the caller to write and flush; nil when nothing waits.
    @inline(__always)
    mutating func take() -> Payload? {
        defer { held = nil }
        return held
    }
}
