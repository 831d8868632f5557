#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import TraceWire

/// One event loop's access log: lines are formatted into a buffer and handed to the
/// `AccessLogWriter` in batches, so a request costs a few appends rather than a syscall, and
/// the blocking write(2) happens on the writer's thread, never on the event loop.
final class AccessLog {
    private let writer: AccessLogWriter?
    private var buffer: [UInt8] = []
    /// Whole lines in `buffer`, for the dropped-lines count if the writer has no room.
    private var lines = 0
    private var cachedSecond = -1
    private var cachedPrefix: [UInt8] = []
    static let flushBytes = 32 * 1024

    /// `writer == nil` turns logging off.
    init(writer: AccessLogWriter?) {
        self.writer = writer
        buffer.reserveCapacity(Self.flushBytes + 1024)
    }

    var isEnabled: Bool { writer != nil }

    struct Entry {
        var method: ByteBuffer
        var path: ByteBuffer
        var minorVersion: Int
        /// The request came on an HTTP/2 stream (its head was made HTTP/1.1 for the upstream).
        var http2 = false
        var status: Int
        var flags: ResponseFlags
        var bytesReceived: Int
        var bytesSent: Int
        var durationMs: Int
        var upstreamServiceMs: Int?
        var upstreamHost: Endpoint?
        var requestID: ByteBuffer?
        var route: String?
        /// The W3C trace id the request carried on (the client's, or the one the gateway started).
        var traceIDHigh: UInt64
        var traceIDLow: UInt64
    }

    /// `[2026-11-25T06:49:20.123Z] "GET /path HTTP/1.1" 200 - 0 27 3 2 "127.0.0.1:8082" "<request id>" "route" <trace id>`
    ///
    /// The trace id is last, so parsers of the earlier fields keep working; it is 32 lowercase
    /// hex digits the gateway writes itself (never the client's bytes), so it is not quoted.
    ///
    /// Quoted fields are escaped (`\"`, `\\`, `\xHH` for bytes outside printable ASCII): the
    /// path and the request id are the client's bytes, and must not end a field early, forge
    /// a line or carry terminal escapes to whoever reads the log.
    func log(_ e: Entry) {
        guard writer != nil else { return }
        appendTimestamp()
        buffer.append(contentsOf: " \"".utf8)
        appendEscaped(e.method)
        buffer.append(0x20)
        appendEscaped(e.path)
        if e.http2 {
            buffer.append(contentsOf: " HTTP/2\" ".utf8)
        } else {
            buffer.append(contentsOf: e.minorVersion == 1 ? " HTTP/1.1\" ".utf8 : " HTTP/1.0\" ".utf8)
        }
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
        if let h = e.upstreamHost { appendEscaped(h.description) } else { buffer.append(UInt8(ascii: "-")) }
        buffer.append(contentsOf: "\" \"".utf8)
        if let id = e.requestID { appendEscaped(id) } else { buffer.append(UInt8(ascii: "-")) }
        buffer.append(contentsOf: "\" \"".utf8)
        appendEscaped(e.route ?? "-")
        buffer.append(contentsOf: "\" ".utf8)
        appendTraceID(e.traceIDHigh, e.traceIDLow)
        buffer.append(0x0A)
        lines += 1
        if buffer.count >= Self.flushBytes { flush() }
    }

    /// Hands the buffered lines to the writer; never waits for them to be written.
    func flush() {
        guard let writer, !buffer.isEmpty else { return }
        writer.handOver(&buffer, lines: lines)
        lines = 0
        if buffer.capacity < Self.flushBytes { buffer.reserveCapacity(Self.flushBytes + 1024) }
    }

    @inline(__always) private func appendEscaped(_ b: ByteBuffer) {
        b.withUnsafeReadableBytes { appendEscaped($0) }
    }

    @inline(__always) private func appendEscaped(_ s: String) {
        var s = s
        s.withUTF8 { appendEscaped(UnsafeRawBufferPointer($0)) }
    }

    @inline(__always) static func needsEscape(_ c: UInt8) -> Bool {
        c < 0x20 || c > 0x7E || c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\")
    }

    private func appendEscaped(_ bytes: UnsafeRawBufferPointer) {
        // Nearly every field is plain: copy it whole, escape byte by byte only when needed.
        guard bytes.contains(where: Self.needsEscape) else {
            buffer.append(contentsOf: bytes)
            return
        }
        let hex: StaticString = "0123456789abcdef"
        for c in bytes {
            if !Self.needsEscape(c) {
                buffer.append(c)
            } else if c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") {
                buffer.append(UInt8(ascii: "\\"))
                buffer.append(c)
            } else {
                buffer.append(UInt8(ascii: "\\"))
                buffer.append(UInt8(ascii: "x"))
                buffer.append(hex.utf8Start[Int(c >> 4)])
                buffer.append(hex.utf8Start[Int(c & 0xF)])
            }
        }
    }

    @inline(__always) private func appendTraceID(_ high: UInt64, _ low: UInt64) {
        let at = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: 32))
        buffer.withUnsafeMutableBytes { p in
            TraceParent.writeHex(high, to: p, at: at)
            TraceParent.writeHex(low, to: p, at: at + 16)
        }
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
