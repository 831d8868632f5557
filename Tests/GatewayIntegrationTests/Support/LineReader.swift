import Foundation

/// Lines of a child's output, read on a background thread so a test can wait with a deadline.
final class LineReader: @unchecked Sendable {
    // @unchecked: `lines` is only touched under `lock`.
    private let lock = NSCondition()
    private var lines: [String] = []

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let nl = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[pending.startIndex..<nl], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...nl)
                    lock.lock()
                    lines.append(line)
                    lock.signal()
                    lock.unlock()
                }
            }
        }
    }

    /// The next line, or nil when none comes within `timeout` seconds.
    func next(timeout: Double) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        lock.lock()
        defer { lock.unlock() }
        while lines.isEmpty {
            if !lock.wait(until: deadline) { return nil }
        }
        return lines.removeFirst()
    }
}
