#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// One event loop's access log: lines are formatted into a buffer and written to the file
/// descriptor in batches, so a request costs a few appends rather than a syscall.
final class AccessLog {
    private let fd: Int32?
    private var buffer: [UInt8] = []
    private var cachedSecond = -1
    private var cachedPrefix: [UInt8] = []
    static let flushBytes = 32 * 1024

    /// `fd == nil` turns logging off.
    init(fd: Int32?) {
        self.fd = fd
        buffer.reserveCapacity(Self.flushBytes + 1024)
    }

    var isEnabled: Bool { fd != nil }

    struct Entry {
        var method: ByteBuffer
        var path: ByteBuffer
        var minorVersion: Int
        var status: Int
        var flags: ResponseFlags
        var bytesReceived: Int
        var bytesSent: Int
        var durationMs: Int
        var upstreamServiceMs: Int?
        var upstreamHost: Endpoint?
        var requestID: ByteBuffer?
        var route: String?
    }

    /// `[2026-11-25T06:49:20.123Z] "GET /path HTTP/1.1" 200 - 0 27 3 2 "127.0.0.1:8082" "<request id>" "route"`
    func log(_ e: Entry) {
        guard fd != nil else { return }
        appendTimestamp()
        buffer.append(contentsOf: " \"".utf8)
        append(e.method)
        buffer.append(0x20)
        append(e.path)
        buffer.append(contentsOf: e.minorVersion == 1 ? " HTTP/1.1\" ".utf8 : " HTTP/1.0\" ".utf8)
        appendInt(e.status)
        buffer.append(0x20)
        e.flags.write(into: &buffer)
        buffer.append(0x20)
        appendInt(e.bytesReceived)
        buffer.append(0x20)
        appendInt(e.bytesSent)
        buffer.append(0x20)
        appendInt(e.durationMs)
        buffer.append(0x20)
        if let u = e.upstreamServiceMs { appendInt(u) } else { buffer.append(UInt8(ascii: "-")) }
        buffer.append(contentsOf: " \"".utf8)
        if let h = e.upstreamHost { buffer.append(contentsOf: h.description.utf8) } else { buffer.append(UInt8(ascii: "-")) }
        buffer.append(contentsOf: "\" \"".utf8)
        if let id = e.requestID { append(id) } else { buffer.append(UInt8(ascii: "-")) }
        buffer.append(contentsOf: "\" \"".utf8)
        buffer.append(contentsOf: (e.route ?? "-").utf8)
        buffer.append(contentsOf: "\"\n".utf8)
        if buffer.count >= Self.flushBytes { flush() }
    }

    func flush() {
        guard let fd, !buffer.isEmpty else { return }
        buffer.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = write(fd, raw.baseAddress! + off, raw.count - off)
                if n <= 0 {
                    if n < 0 && errno == EINTR { continue }
                    break
                }
                off += n
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }

    @inline(__always) private func append(_ b: ByteBuffer) {
        b.withUnsafeReadableBytes { buffer.append(contentsOf: $0) }
    }

    @inline(__always) private func appendInt(_ v: Int) {
        if v < 0 { buffer.append(UInt8(ascii: "-")); appendInt(-v); return }
        if v >= 10 { appendInt(v / 10) }
        buffer.append(UInt8(0x30 + v % 10))
    }

    private func appendTimestamp() {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let second = ts.tv_sec
        if second != cachedSecond {
            cachedSecond = second
            var t = time_t(second)
            var tmv = tm()
            gmtime_r(&t, &tmv)
            func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
            cachedPrefix = Array(
                "[\(tmv.tm_year + 1900)-\(two(tmv.tm_mon + 1))-\(two(tmv.tm_mday))T\(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec))."
                    .utf8)
        }
        buffer.append(contentsOf: cachedPrefix)
        let ms = ts.tv_nsec / 1_000_000
        buffer.append(UInt8(0x30 + ms / 100))
        buffer.append(UInt8(0x30 + (ms / 10) % 10))
        buffer.append(UInt8(0x30 + ms % 10))
        buffer.append(contentsOf: "Z]".utf8)
    }
}
