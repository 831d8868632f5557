import NIOCore

/// Whether a connection is reading (Envoy's `readDisable`), and why not. Unread bytes wait in
/// the kernel, and TCP slows the sender. A connection reads only while no reason holds, so two
/// concerns (flow control, a client's backlog) never undo each other's pause.
struct ReadPause {
    struct Reasons: OptionSet {
        let rawValue: UInt8
        /// The other side of the proxy cannot keep up (Envoy's watermark flow control).
        static let flowControl = Reasons(rawValue: 1 << 0)
        /// A client has more unprocessed bytes (pipelined requests) than may be buffered now,
        /// or has not taken the answers it already has.
        static let backlog = Reasons(rawValue: 1 << 1)
    }

    private(set) var reasons: Reasons = []

    var paused: Bool { !reasons.isEmpty }

    /// Adds or removes `reason`; true when `reason` itself changed (for the counters).
    mutating func set(_ pause: Bool, _ reason: Reasons = .flowControl, on context: ChannelHandlerContext?) -> Bool {
        guard pause != reasons.contains(reason), let context else { return false }
        let wasPaused = paused
        if pause { reasons.insert(reason) } else { reasons.remove(reason) }
        if paused != wasPaused {
            try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: !paused)
        }
        return true
    }
}
