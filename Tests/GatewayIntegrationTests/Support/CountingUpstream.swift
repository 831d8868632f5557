import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A plain-socket upstream that counts every connection and every byte it receives, keeps the
/// bytes for failure messages, and answers `200 ok` to each request head it sees (so a normal
/// request through the gateway can be served). It does no HTTP validation of its own: whatever
/// the gateway lets through is counted, a smuggled request hidden in a body included.
final class CountingUpstream: @unchecked Sendable {
    private var listener: LoopbackListener!
    var port: Int { listener.port }
    private let lock = NSLock()
    private var _connections = 0
    private var _received: [UInt8] = []
    private var clientFDs: [Int32] = []

    init() throws {
        listener = try LoopbackListener(backlog: 64) { [weak self] c in
            guard let self else { Glibc.close(c); return }
            lock.lock()
            _connections += 1
            clientFDs.append(c)
            lock.unlock()
            Thread { [self] in serve(c) }.start()
        }
    }

    var connections: Int { lock.lock(); defer { lock.unlock() }; return _connections }
    var bytesReceived: Int { lock.lock(); defer { lock.unlock() }; return _received.count }
    var received: String { lock.lock(); defer { lock.unlock() }; return String(decoding: _received, as: UTF8.self) }

    private func serve(_ fd: Int32) {
        defer {
            // Forgotten under the lock before it is closed, so `close()` never shuts down a
            // descriptor number the process has reused meanwhile.
            lock.lock()
            clientFDs.removeAll { $0 == fd }
            lock.unlock()
            Glibc.close(fd)
        }
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return }
            lock.lock()
            _received += chunk[0..<n]
            lock.unlock()
            pending += chunk[0..<n]
            // One answer per blank line that ends a head; bodies are not framed (the requests
            // this upstream is meant to serve have none).
            while let end = Self.find([13, 10, 13, 10], in: pending) {
                pending.removeFirst(end + 4)
                let answer = Array("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".utf8)
                _ = answer.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
        }
    }

    private static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
        return nil
    }

    func close() {
        listener.stop()
        lock.lock()
        for fd in clientFDs { shutdown(fd, Int32(SHUT_RDWR)) }
        lock.unlock()
    }
}
