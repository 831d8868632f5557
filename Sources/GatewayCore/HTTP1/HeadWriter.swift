import HTTP1Wire
import NIOCore

/// Writes a head onward: header lines the proxy does not change go out as they came (in one copy
/// when nothing needs removing), hop-by-hop lines are dropped, and the proxy's own lines appended.
enum HeadWriter {
    /// Copies `head` from `source` into `out` without the closing blank line, leaving out:
    /// hop-by-hop lines and the lines the Connection header names (RFC 9110 §7.6.1); in a
    /// request, X-Forwarded-For and X-Forwarded-Proto (the caller appends its own); in a response
    /// framed by Transfer-Encoding, Content-Length (RFC 9112 §6.3: a client must not see both).
    /// `dropFraming`: a response whose body goes out without its framing headers (a 204, which
    /// must not carry them, or a chunked body de-chunked for an HTTP/1.0 client).
    @inline(__always)
    static func copyWithoutHopByHop(
        _ head: MessageHead, from source: ByteBuffer, into out: inout ByteBuffer, dropFraming: Bool = false
    ) {
        source.withUnsafeReadableBytes { b in
            guard head.needsLineRewrite || dropFraming else {
                out.writeBytes(UnsafeRawBufferPointer(rebasing: b[0..<(head.length - 2)]))
                return
            }
            var i = 0
            while i < head.length && b[i] != 0x0A { i += 1 }
            out.writeBytes(UnsafeRawBufferPointer(rebasing: b[0...i]))
            i += 1
            while i < head.length - 2 {
                let start = i
                while b[i] != 0x0A { i += 1 }
                i += 1
                var colon = start
                while b[colon] != UInt8(ascii: ":") { colon += 1 }
                let name = start..<colon
                if isHopByHop(b, name) || head.connectionOptions.names(b, name) { continue }
                switch head.kind {
                case .request:
                    if equalsLowercase(b, name, "x-forwarded-for") || equalsLowercase(b, name, "x-forwarded-proto") { continue }
                case .response:
                    if (head.hasTransferEncoding || dropFraming) && equalsLowercase(b, name, "content-length") { continue }
                    if dropFraming && equalsLowercase(b, name, "transfer-encoding") { continue }
                }
                out.writeBytes(UnsafeRawBufferPointer(rebasing: b[start..<i]))
            }
        }
    }

    /// The request head sent upstream: the client's lines minus hop-by-hop ones, plus
    /// X-Forwarded-For, X-Forwarded-Proto and (when the client sent none) an x-request-id that
    /// `writeRequestID` writes. Returns the request id as a slice (of `out` or of `source`).
    static func writeUpstreamHead(
        _ head: MessageHead, from source: ByteBuffer, clientAddress: String, into out: inout ByteBuffer,
        writeRequestID: (inout ByteBuffer) -> Void
    ) -> ByteBuffer {
        copyWithoutHopByHop(head, from: source, into: &out)
        out.writeStaticString("x-forwarded-for: ")
        if let xff = head.forwardedFor {
            out.writeImmutableBuffer(source.getSlice(at: source.readerIndex + xff.lowerBound, length: xff.count)!)
            out.writeStaticString(", ")
        }
        out.writeString(clientAddress)
        out.writeStaticString("\r\nx-forwarded-proto: http\r\n")
        if let id = head.requestID {
            out.writeStaticString("\r\n")
            return source.getSlice(at: source.readerIndex + id.lowerBound, length: id.count)!
        }
        out.writeStaticString("x-request-id: ")
        let at = out.writerIndex
        writeRequestID(&out)
        out.writeStaticString("\r\n\r\n")
        // Sliced only now: a slice taken before the last write would make that write copy the buffer.
        return out.getSlice(at: at, length: out.writerIndex - at - 4)!
    }

    /// The response head sent to the client: the upstream's lines minus hop-by-hop ones, plus
    /// x-envoy-upstream-service-time and the connection's own keep-alive or close line.
    /// `dropFraming`: see `copyWithoutHopByHop`.
    @inline(__always)
    static func writeResponseHead(
        _ head: MessageHead, from source: ByteBuffer, into out: inout ByteBuffer, dropFraming: Bool,
        upstreamServiceMs: Int, close: Bool, announceKeepAlive: Bool
    ) {
        copyWithoutHopByHop(head, from: source, into: &out, dropFraming: dropFraming)
        out.writeStaticString("x-envoy-upstream-service-time: ")
        out.writeDecimal(upstreamServiceMs)
        out.writeStaticString("\r\n")
        if close {
            out.writeStaticString("connection: close\r\n")
        } else if announceKeepAlive {
            out.writeStaticString("connection: keep-alive\r\n")
        }
        out.writeStaticString("\r\n")
    }

    @inline(__always)
    static func writeHeader(_ out: inout ByteBuffer, _ name: StaticString, _ value: Int) {
        out.writeStaticString(name)
        out.writeString(String(value))
        out.writeStaticString("\r\n")
    }
}

extension ByteBuffer {
    /// Writes `value` in decimal without making a String.
    @inline(__always) mutating func writeDecimal(_ value: Int) {
        if value < 10 {
            writeInteger(UInt8(0x30 + value))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        var n = 0
        var v = value
        withUnsafeMutableBytes(of: &digits) { d in
            while v > 0 && n < 24 {
                d[23 - n] = UInt8(0x30 + v % 10)
                v /= 10
                n += 1
            }
            writeBytes(UnsafeRawBufferPointer(rebasing: d[(24 - n)...]))
        }
    }
}
