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

    /// Stops reading for `reason`; true when `reason` was not holding yet (for the counters).
    @discardableResult
    mutating func pause(_ reason: Reasons, on context: ChannelHandlerContext?) -> Bool {
        update(reason, holds: true, on: context)
    }

    /// Lifts `reason`; reading resumes when no other reason holds. True when `reason` was holding.
    @discardableResult
    mutating func resume(_ reason: Reasons, on context: ChannelHandlerContext?) -> Bool {
        update(reason, holds: false, on: context)
    }

    /// Pauses or resumes for `reason` as `holds` says.
    @discardableResult
    mutating func update(_ reason: Reasons, holds pause: Bool, on context: ChannelHandlerContext?) -> Bool {
        guard pause != reasons.contains(reason), let context else { return false }
        let wasPaused = paused
        if pause { reasons.insert(reason) } else { reasons.remove(reason) }
        if paused != wasPaused {
            try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: !paused)
        }
        return true
    }
}
