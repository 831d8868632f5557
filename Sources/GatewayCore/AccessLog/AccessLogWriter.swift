#if canImport(Glibc)
import Glibc
#endif
import DequeModule
import Foundation

/// Writes access log lines to their file descriptor on a thread of its own, so a slow or
/// stalled reader (a full stdout pipe, a terminal scrolled back) never blocks an event loop.
///
/// Event loops hand over whole buffers of whole lines. The queue holds at most
/// `maxQueuedBytes`; a buffer that does not fit is dropped whole and its lines counted
/// (`server.access_log_dropped`), as Envoy prefers losing log lines to stalling traffic.
final class AccessLogWriter: @unchecked Sendable {
    // @unchecked: every mutable field is guarded by `condition`.
    static let defaultMaxQueuedBytes = 4 << 20

    let fd: Int32
    let maxQueuedBytes: Int
    /// Guards the queue only: an event loop holds it for an append, never during a write(2).
    private let condition = NSCondition()
    private var queue: Deque<(bytes: [UInt8], lines: Int)> = []
    /// Bytes queued plus the buffer being written.
    private var pending = 0
    /// Emptied buffers handed back to the loops, so a steady log allocates nothing.
    private var spares: [[UInt8]] = []
    private var dropped = 0
    private var stopping = false

    init(fd: Int32, maxQueuedBytes: Int = AccessLogWriter.defaultMaxQueuedBytes) {
        self.fd = fd
        self.maxQueuedBytes = maxQueuedBytes
        let thread = Thread { [self] in run() }
        thread.name = "access-log"
        thread.start()
    }

    /// Lines dropped because the queue was full or the descriptor refused them.
    var droppedLines: Int {
        condition.lock()
        defer { condition.unlock() }
        return dropped
    }

    /// Bytes handed over and not yet written.
    var pendingBytes: Int {
        condition.lock()
        defer { condition.unlock() }
        return pending
    }

    /// Takes `buffer` (`lines` whole lines) and leaves an empty one in its place. Called on an
    /// event loop: it waits only for the queue's lock, which no one holds across a write.
    func handOver(_ buffer: inout [UInt8], lines: Int) {
        guard !buffer.isEmpty else { return }
        condition.lock()
        if pending + buffer.count <= maxQueuedBytes {
            pending += buffer.count
            let spare = spares.popLast() ?? []
            queue.append((buffer, lines))
            buffer = spare
            condition.signal()
            condition.unlock()
        } else {
            dropped += lines
            condition.unlock()
            buffer.removeAll(keepingCapacity: true)
        }
    }

    /// Lets the thread finish what is queued and end.
    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        condition.lock()
        while true {
            while queue.isEmpty && !stopping { condition.wait() }
            guard var chunk = queue.popFirst() else { break }
            condition.unlock()
            let lost = write(chunk.bytes)
            let n = chunk.bytes.count
            chunk.bytes.removeAll(keepingCapacity: true)
            condition.lock()
            pending -= n
            dropped += lost
            if spares.count < 8 { spares.append(chunk.bytes) }
        }
        condition.unlock()
    }

    /// Blocking write of the whole buffer; returns the lines lost if the descriptor fails.
    private func write(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                if n > 0 {
                    off += n
                    continue
                }
                if n < 0 && errno == EINTR { continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                    // A descriptor someone made non-blocking: wait until it takes more.
                    var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&p, 1, 1000)
                    continue
                }
                // EPIPE, EBADF, ENOSPC...: the rest of this buffer is lost; count its lines.
                return raw[off...].reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
            }
            return 0
        }
    }
}
