import NIOCore

/// Whether a connection is reading (Envoy's `readDisable`): flow control stops reading the side
/// that is ahead while the other side's outbound buffer is over its high watermark. Unread bytes
/// wait in the kernel, and TCP slows the sender.
struct ReadPause {
    private(set) var paused = false

    /// Pauses or resumes reading; true when that changed anything (for the counters).
    mutating func set(_ pause: Bool, on context: ChannelHandlerContext?) -> Bool {
        guard pause != paused, let context else { return false }
        paused = pause
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: !pause)
        return true
    }
}
