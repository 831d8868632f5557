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
    /// `version`: the start line's version is replaced with this one (`HTTP/1.1` for every request
    /// sent upstream, `HTTP/1.0` for a response to an HTTP/1.0 client); nil keeps it.
    /// `edit`: a response whose route changes headers; the lines it names are left out too.
    @inline(__always)
    static func copyWithoutHopByHop(
        _ head: MessageHead, from source: ByteBuffer, into out: inout ByteBuffer, dropFraming: Bool = false,
        version: StaticString? = nil, edit: ResponseHeadEdit? = nil
    ) {
        source.withUnsafeReadableBytes { b in
            guard head.needsLineRewrite || dropFraming || version != nil || edit != nil else {
                out.writeBytes(UnsafeRawBufferPointer(rebasing: b[0..<(head.length - 2)]))
                return
            }
            var i = 0
            while i < head.length && b[i] != 0x0A { i += 1 }
            if let version {
                // The parser took "HTTP/1.x" as the request line's last 8 bytes before CRLF, or the
                // status line's first 8.
                if head.kind == .request {
                    out.writeBytes(UnsafeRawBufferPointer(rebasing: b[0..<(i - 9)]))
                    out.writeStaticString(version)
                    out.writeStaticString("\r\n")
                } else {
                    out.writeStaticString(version)
                    out.writeBytes(UnsafeRawBufferPointer(rebasing: b[8...i]))
                }
            } else {
                out.writeBytes(UnsafeRawBufferPointer(rebasing: b[0...i]))
            }
            i += 1
            guard head.needsLineRewrite || dropFraming || edit != nil else {
                out.writeBytes(UnsafeRawBufferPointer(rebasing: b[i..<(head.length - 2)]))
                return
            }
            forEachEndToEndLine(head, b, from: i) { name, line in
                if let edit, edit.drops(b, name) { return }
                switch head.kind {
                case .request:
                    if equalsLowercase(b, name, "x-forwarded-for") || equalsLowercase(b, name, "x-forwarded-proto")
                        || isTraceContext(b, name)
                    {
                        return
                    }
                case .response:
                    if (head.hasTransferEncoding || dropFraming) && equalsLowercase(b, name, "content-length") { return }
                    if dropFraming && equalsLowercase(b, name, "transfer-encoding") { return }
                }
                out.writeBytes(UnsafeRawBufferPointer(rebasing: b[line]))
            }
        }
    }

    /// Calls `line` with the name and the whole line (CRLF included) of each header line from
    /// offset `start` to the head's blank line, leaving out hop-by-hop lines and the lines the
    /// Connection header names (RFC 9110 §7.6.1): what a proxy may forward at all.
    @inline(__always)
    static func forEachEndToEndLine(
        _ head: MessageHead, _ b: UnsafeRawBufferPointer, from start: Int, _ line: (_ name: Range<Int>, _ line: Range<Int>) -> Void
    ) {
        var i = start
        while i < head.length - 2 {
            let lineStart = i
            while b[i] != 0x0A { i += 1 }
            i += 1
            var colon = lineStart
            while b[colon] != UInt8(ascii: ":") { colon += 1 }
            let name = lineStart..<colon
            if isHopByHop(b, name) || head.connectionOptions.names(b, name) { continue }
            line(name, lineStart..<i)
        }
    }

    /// The request head sent upstream: the client's lines minus hop-by-hop ones and its trace
    /// context lines, plus X-Forwarded-For, X-Forwarded-Proto, `trace`'s traceparent (and
    /// tracestate) and (when the client sent none) an x-request-id that `writeRequestID` writes.
    /// Returns the request id as a slice (of `out` or of `source`).
    ///
    /// Upstream is always HTTP/1.1, as Envoy and HAProxy speak it: an HTTP/1.0 client's request
    /// goes out as HTTP/1.1 (with `defaultHost` as its Host when it had none), so the pooled
    /// connection stays open after the response whatever the client spoke.
    static func writeUpstreamHead(
        _ head: MessageHead, from source: ByteBuffer, clientAddress: String, secure: Bool = false, defaultHost: String,
        trace: RequestTrace, into out: inout ByteBuffer, writeRequestID: (inout ByteBuffer) -> Void
    ) -> ByteBuffer {
        copyWithoutHopByHop(head, from: source, into: &out, version: head.minorVersion == 0 ? "HTTP/1.1" : nil)
        if head.host == nil {
            out.writeStaticString("host: ")
            out.writeString(defaultHost)
            out.writeStaticString("\r\n")
        }
        return writeForwardingLines(head, from: source, clientAddress: clientAddress, secure: secure, trace: trace, into: &out,
                                    writeRequestID: writeRequestID)
    }

    /// The request head sent upstream for a route that changes it (VirtualService `rewrite` and
    /// `headers.request`): `target` replaces the client's (nil keeps it) and the client's goes in
    /// `x-envoy-original-path` as Envoy's router writes it, `authority` replaces the Host, and
    /// `edit`'s names are left out and its lines added. Otherwise as `writeUpstreamHead`.
    static func writeTransformedUpstreamHead(
        _ head: MessageHead, from source: ByteBuffer, clientAddress: String, secure: Bool = false, defaultHost: String,
        target: [UInt8]?, authority: [UInt8]?, edit: HeaderEdit?, trace: RequestTrace, into out: inout ByteBuffer,
        writeRequestID: (inout ByteBuffer) -> Void
    ) -> ByteBuffer {
        source.withUnsafeReadableBytes { b in
            out.writeBytes(UnsafeRawBufferPointer(rebasing: b[head.method]))
            out.writeStaticString(" ")
            if let target {
                out.writeBytes(target)
            } else {
                out.writeBytes(UnsafeRawBufferPointer(rebasing: b[head.target]))
            }
            out.writeStaticString(" HTTP/1.1\r\n")
            var i = 0
            while b[i] != 0x0A { i += 1 }
            forEachEndToEndLine(head, b, from: i + 1) { name, line in
                if equalsLowercase(b, name, "x-forwarded-for") || equalsLowercase(b, name, "x-forwarded-proto") { return }
                if isTraceContext(b, name) { return }
                if authority != nil && equalsLowercase(b, name, "host") { return }
                // The gateway's own, not a client's, says what the path was.
                if target != nil && equalsLowercase(b, name, "x-envoy-original-path") { return }
                if let edit, edit.drop.contains(b, name) { return }
                out.writeBytes(UnsafeRawBufferPointer(rebasing: b[line]))
            }
            if target != nil {
                out.writeStaticString("x-envoy-original-path: ")
                out.writeBytes(UnsafeRawBufferPointer(rebasing: b[head.target]))
                out.writeStaticString("\r\n")
            }
        }
        if let authority {
            out.writeStaticString("host: ")
            out.writeBytes(authority)
            out.writeStaticString("\r\n")
        } else if head.host == nil {
            out.writeStaticString("host: ")
            out.writeString(defaultHost)
            out.writeStaticString("\r\n")
        }
        if let edit { out.writeBytes(edit.lines) }
        return writeForwardingLines(head, from: source, clientAddress: clientAddress, secure: secure, trace: trace, into: &out,
                                    writeRequestID: writeRequestID)
    }

    /// The lines that ask the upstream to switch to WebSocket, which `writeUpstreamHead` drops
    /// with the other hop-by-hop lines: put back before the head's blank line.
    static func appendWebSocketUpgrade(to out: inout ByteBuffer) {
        assert(out.getBytes(at: out.writerIndex - 2, length: 2) == [13, 10], "a head ends with CRLF")
        out.moveWriterIndex(to: out.writerIndex - 2)
        out.writeStaticString("connection: upgrade\r\nupgrade: websocket\r\n\r\n")
    }

    /// The upstream's `101 Switching Protocols` for the client: its end-to-end lines and the
    /// Connection/Upgrade pair that accepts the WebSocket.
    static func writeSwitchingProtocolsHead(_ head: MessageHead, from source: ByteBuffer, into out: inout ByteBuffer) {
        assert(head.status == 101, "a protocol switch")
        copyWithoutHopByHop(head, from: source, into: &out)
        out.writeStaticString("connection: upgrade\r\nupgrade: websocket\r\n\r\n")
    }

    /// X-Forwarded-For, X-Forwarded-Proto (`secure`: the client's connection is TLS), the trace
    /// context, the request id and the blank line; returns the id.
    @inline(__always)
    static func writeForwardingLines(
        _ head: MessageHead, from source: ByteBuffer, clientAddress: String, secure: Bool, trace: RequestTrace,
        into out: inout ByteBuffer,
        writeRequestID: (inout ByteBuffer) -> Void
    ) -> ByteBuffer {
        out.writeStaticString("x-forwarded-for: ")
        if let xff = head.forwardedFor {
            out.writeImmutableBuffer(source.getSlice(at: source.readerIndex + xff.lowerBound, length: xff.count)!)
            out.writeStaticString(", ")
        }
        out.writeString(clientAddress)
        out.writeStaticString(secure ? "\r\nx-forwarded-proto: https\r\n" : "\r\nx-forwarded-proto: http\r\n")
        trace.writeHeaders(from: source, into: &out)
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
        upstreamServiceMs: Int, close: Bool, announceKeepAlive: Bool, version: StaticString? = nil,
        edit: ResponseHeadEdit? = nil
    ) {
        copyWithoutHopByHop(head, from: source, into: &out, dropFraming: dropFraming, version: version, edit: edit)
        if let edit { out.writeBytes(edit.lines) }
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
}

/// A request's `traceparent` or `tracestate` line: the gateway writes its own in their place.
@inline(__always)
func isTraceContext(_ b: UnsafeRawBufferPointer, _ name: Range<Int>) -> Bool {
    switch name.count {
    case 10: return equalsLowercase(b, name, "tracestate")
    case 11: return equalsLowercase(b, name, "traceparent")
    default: return false
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
