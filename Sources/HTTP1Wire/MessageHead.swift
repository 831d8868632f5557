#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a message head or body was refused. `status` is what the client gets (the connection is
/// closed after it), `reason` goes into the body and the access log.
public struct HTTPParseError: Error, Equatable, Sendable {
    public var status: Int
    public var reason: String
    public init(_ status: Int, _ reason: String) {
        self.status = status
        self.reason = reason
    }
}

/// How the body of a message is delimited (RFC 9112 §6).
public enum BodyFraming: Equatable, Sendable {
    case none
    case contentLength(Int)
    case chunked
    /// Response without Content-Length or chunking: the body ends when the upstream closes.
    case untilClose
}

/// Byte offsets (relative to the head's first byte) and the facts the proxy needs about one
/// HTTP/1.x message head, found in a single pass. The head bytes themselves are not copied:
/// unchanged header lines are later forwarded as they came.
public struct MessageHead: Sendable {
    /// Bytes of the whole head including the blank line.
    public var length: Int = 0
    /// Request: method and target ranges. Response: unused.
    public var method: Range<Int> = 0..<0
    public var target: Range<Int> = 0..<0
    /// Response status code.
    public var status: Int = 0
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    public var minorVersion: Int = 1
    public var contentLength: Int? = nil
    public var chunked = false
    public var connectionClose = false
    public var connectionKeepAlive = false
    public var host: Range<Int>? = nil
    public var requestID: Range<Int>? = nil
    public var forwardedFor: Range<Int>? = nil
    /// True when a header line must not be forwarded verbatim (hop-by-hop or rewritten), so the
    /// head has to be copied line by line instead of in one piece.
    public var needsLineRewrite = false

    public init() {}

    /// Whether the connection may carry another message after this one (RFC 9112 §9.3).
    public var keepAlive: Bool {
        if connectionClose { return false }
        return minorVersion == 1 || connectionKeepAlive
    }
}

@inline(__always) public func lowercased(_ b: UInt8) -> UInt8 { (b >= 65 && b <= 90) ? b | 0x20 : b }

/// RFC 9110 token characters (method and header names).
@inline(__always) public func isTokenChar(_ b: UInt8) -> Bool {
    switch b {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
    case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
        UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
        UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
        return true
    default: return false
    }
}

/// Case-insensitive comparison of `bytes[range]` with a lower-case ASCII literal.
@inline(__always)
public func equalsLowercase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString) -> Bool {
    guard range.count == literal.utf8CodeUnitCount else { return false }
    let lit = literal.utf8Start
    var i = 0
    for p in range {
        if lowercased(bytes[p]) != lit[i] { return false }
        i += 1
    }
    return true
}

/// Header names that are hop-by-hop (RFC 9110 §7.6.1) and never forwarded.
@inline(__always)
public func isHopByHop(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> Bool {
    switch name.count {
    case 2: return equalsLowercase(bytes, name, "te")
    case 7: return equalsLowercase(bytes, name, "upgrade") || equalsLowercase(bytes, name, "trailer")
    case 10: return equalsLowercase(bytes, name, "connection") || equalsLowercase(bytes, name, "keep-alive")
    case 16: return equalsLowercase(bytes, name, "proxy-connection")
    default: return false
    }
}

public enum HeadParser {
    /// Envoy's default `max_request_headers_kb` is 60.
    public static let maxHeadBytes = 60 * 1024

    public enum Kind: Sendable { case request, response }

    /// Parses a complete head at the start of `bytes`. Returns nil when the blank line has not
    /// arrived yet (and the head is still within the size limit).
    public static func parse(_ bytes: UnsafeRawBufferPointer, kind: Kind) throws(HTTPParseError) -> MessageHead? {
        guard let end = findHeadEnd(bytes) else {
            if bytes.count > maxHeadBytes {
                throw HTTPParseError(431, "request header fields too large")
            }
            return nil
        }
        if end > maxHeadBytes { throw HTTPParseError(431, "request header fields too large") }
        var head = MessageHead()
        head.length = end
        var pos: Int
        switch kind {
        case .request: pos = try parseRequestLine(bytes, &head)
        case .response: pos = try parseStatusLine(bytes, &head)
        }
        try parseHeaderLines(bytes, from: pos, to: end - 2, &head, kind: kind)
        return head
    }

    /// Offset just past "\r\n\r\n" (also accepts a bare-LF blank line so it can be rejected clearly).
    static func findHeadEnd(_ bytes: UnsafeRawBufferPointer) -> Int? {
        let n = bytes.count
        guard n >= 4, let base = bytes.baseAddress else { return nil }
        var i = 3
        while i < n {
            // Jump from LF to LF with memchr: heads are mostly printable bytes.
            guard let p = memchr(base + i, 0x0A, n - i) else { return nil }
            let lf = base.distance(to: UnsafeRawPointer(p))
            if lf >= 3 && bytes[lf - 1] == 0x0D && bytes[lf - 2] == 0x0A && bytes[lf - 3] == 0x0D {
                return lf + 1
            }
            i = lf + 1
        }
        return nil
    }

    static func parseRequestLine(_ b: UnsafeRawBufferPointer, _ head: inout MessageHead) throws(HTTPParseError) -> Int {
        var i = 0
        while i < b.count && isTokenChar(b[i]) { i += 1 }
        guard i > 0, i < b.count, b[i] == 0x20 else { throw HTTPParseError(400, "malformed request line") }
        head.method = 0..<i
        i += 1
        let targetStart = i
        while i < b.count && b[i] > 0x20 && b[i] != 0x7F { i += 1 }
        guard i > targetStart, i < b.count, b[i] == 0x20 else { throw HTTPParseError(400, "malformed request target") }
        head.target = targetStart..<i
        i += 1
        head.minorVersion = try parseVersion(b, at: i)
        i += 8
        guard i + 1 < b.count, b[i] == 0x0D, b[i + 1] == 0x0A else { throw HTTPParseError(400, "malformed request line") }
        return i + 2
    }

    static func parseVersion(_ b: UnsafeRawBufferPointer, at i: Int) throws(HTTPParseError) -> Int {
        guard i + 8 <= b.count, b[i] == 0x48, b[i + 1] == 0x54, b[i + 2] == 0x54, b[i + 3] == 0x50,
              b[i + 4] == 0x2F, b[i + 6] == 0x2E, (0x30...0x39).contains(b[i + 5]), (0x30...0x39).contains(b[i + 7])
        else { throw HTTPParseError(400, "malformed HTTP version") }
        guard b[i + 5] == 0x31, b[i + 7] <= 0x31 else { throw HTTPParseError(505, "HTTP version not supported") }
        return Int(b[i + 7] - 0x30)
    }

    static func parseStatusLine(_ b: UnsafeRawBufferPointer, _ head: inout MessageHead) throws(HTTPParseError) -> Int {
        head.minorVersion = try parseVersion(b, at: 0)
        guard b.count > 12, b[8] == 0x20 else { throw HTTPParseError(502, "malformed upstream status line") }
        var status = 0
        for j in 9..<12 {
            let d = b[j] &- 0x30
            guard d <= 9 else { throw HTTPParseError(502, "malformed upstream status code") }
            status = status * 10 + Int(d)
        }
        guard status >= 100 else { throw HTTPParseError(502, "malformed upstream status code") }
        head.status = status
        var i = 12
        while i < b.count && b[i] != 0x0A { i += 1 }
        guard i < b.count, b[i - 1] == 0x0D else { throw HTTPParseError(502, "malformed upstream status line") }
        return i + 1
    }

    static func parseHeaderLines(
        _ b: UnsafeRawBufferPointer, from start: Int, to end: Int, _ head: inout MessageHead, kind: Kind
    ) throws(HTTPParseError) {
        let bad = kind == .request ? 400 : 502
        var i = start
        var sawTransferEncoding = false
        while i < end {
            let nameStart = i
            while i < end && isTokenChar(b[i]) { i += 1 }
            // A space before the colon or a folded line is a smuggling vector: refuse (RFC 9112 §5.1-5.2).
            guard i > nameStart, i < end, b[i] == UInt8(ascii: ":") else {
                throw HTTPParseError(bad, "malformed header line")
            }
            let name = nameStart..<i
            i += 1
            while i < end && (b[i] == 0x20 || b[i] == 0x09) { i += 1 }
            let valueStart = i
            while i < end && b[i] != 0x0D {
                let c = b[i]
                if c < 0x20 && c != 0x09 || c == 0x7F { throw HTTPParseError(bad, "invalid character in header value") }
                i += 1
            }
            guard i + 1 < end + 2, b[i] == 0x0D, b[i + 1] == 0x0A else { throw HTTPParseError(bad, "header line not ended by CRLF") }
            var valueEnd = i
            while valueEnd > valueStart && (b[valueEnd - 1] == 0x20 || b[valueEnd - 1] == 0x09) { valueEnd -= 1 }
            let value = valueStart..<valueEnd
            i += 2
            try classify(b, name: name, value: value, &head, &sawTransferEncoding, bad: bad, kind: kind)
        }
        if sawTransferEncoding {
            if head.contentLength != nil {
                if kind == .request {
                    throw HTTPParseError(400, "both Content-Length and Transfer-Encoding")
                }
                head.contentLength = nil  // RFC 9112 §6.3: Transfer-Encoding wins in a response
            }
            if kind == .request && head.minorVersion == 0 {
                throw HTTPParseError(400, "Transfer-Encoding in an HTTP/1.0 request")
            }
        }
    }

    @inline(__always)
    static func classify(
        _ b: UnsafeRawBufferPointer, name: Range<Int>, value: Range<Int>, _ head: inout MessageHead,
        _ sawTE: inout Bool, bad: Int, kind: Kind
    ) throws(HTTPParseError) {
        switch name.count {
        case 4:
            if equalsLowercase(b, name, "host") {
                if head.host != nil { throw HTTPParseError(bad, "duplicate Host header") }
                head.host = value
            }
        case 10:
            if equalsLowercase(b, name, "connection") {
                head.needsLineRewrite = true
                forEachToken(b, value) { token in
                    if equalsLowercase(b, token, "close") { head.connectionClose = true }
                    else if equalsLowercase(b, token, "keep-alive") { head.connectionKeepAlive = true }
                }
            } else if equalsLowercase(b, name, "keep-alive") {
                head.needsLineRewrite = true
            }
        case 12:
            if equalsLowercase(b, name, "x-request-id") { head.requestID = value }
        case 14:
            if equalsLowercase(b, name, "content-length") {
                guard let n = parseContentLength(b, value) else {
                    throw HTTPParseError(bad, "invalid Content-Length")
                }
                if let previous = head.contentLength, previous != n {
                    throw HTTPParseError(bad, "conflicting Content-Length headers")
                }
                head.contentLength = n
            }
        case 15:
            if equalsLowercase(b, name, "x-forwarded-for") {
                head.forwardedFor = value
                head.needsLineRewrite = true
            }
        case 17:
            if equalsLowercase(b, name, "transfer-encoding") {
                sawTE = true
                // Only "chunked" as the final coding is framed here; anything else cannot be delimited.
                var last: Range<Int>? = nil
                forEachToken(b, value) { last = $0 }
                guard let last, equalsLowercase(b, last, "chunked") else {
                    if kind == .request { throw HTTPParseError(501, "unsupported Transfer-Encoding") }
                    head.chunked = false
                    return
                }
                head.chunked = true
            }
        default:
            if isHopByHop(b, name) { head.needsLineRewrite = true }
        }
    }

    /// Comma-separated tokens of a header value, trimmed.
    @inline(__always)
    static func forEachToken(_ b: UnsafeRawBufferPointer, _ value: Range<Int>, _ body: (Range<Int>) -> Void) {
        var i = value.lowerBound
        while i < value.upperBound {
            while i < value.upperBound && (b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x2C) { i += 1 }
            let s = i
            while i < value.upperBound && b[i] != 0x2C { i += 1 }
            var e = i
            while e > s && (b[e - 1] == 0x20 || b[e - 1] == 0x09) { e -= 1 }
            if e > s { body(s..<e) }
        }
    }

    /// Digits only (a list of identical values is accepted, as RFC 9110 §8.6 allows).
    static func parseContentLength(_ b: UnsafeRawBufferPointer, _ value: Range<Int>) -> Int? {
        var result: Int? = nil
        var ok = true
        forEachToken(b, value) { token in
            guard token.count <= 15 else { ok = false; return }
            var n = 0
            for p in token {
                let d = b[p] &- 0x30
                guard d <= 9 else { ok = false; return }
                n = n * 10 + Int(d)
            }
            if let r = result, r != n { ok = false }
            result = n
        }
        return ok ? result : nil
    }

    /// The request's body framing (RFC 9112 §6.3).
    public static func requestFraming(_ head: MessageHead) -> BodyFraming {
        if head.chunked { return .chunked }
        if let n = head.contentLength, n > 0 { return .contentLength(n) }
        return .none
    }

    /// The response's body framing given the request method and the status.
    public static func responseFraming(_ head: MessageHead, requestWasHead: Bool) -> BodyFraming {
        if requestWasHead || head.status < 200 || head.status == 204 || head.status == 304 { return .none }
        if head.chunked { return .chunked }
        if let n = head.contentLength { return n > 0 ? .contentLength(n) : .none }
        return .untilClose
    }
}

extension MessageHead {
    /// Looks a header up by lower-case name (used only by routes that match on headers).
    public func value(of lowercaseName: String, in b: UnsafeRawBufferPointer) -> String? {
        var result: String? = nil
        var i = 0
        // skip the start line
        while i < length && b[i] != 0x0A { i += 1 }
        i += 1
        let nameBytes = Array(lowercaseName.utf8)
        while i < length - 2 {
            let lineStart = i
            while i < length && b[i] != 0x0A { i += 1 }
            let line = lineStart..<(i - 1)
            i += 1
            guard let colon = line.firstIndex(where: { b[$0] == UInt8(ascii: ":") }) else { continue }
            guard colon - lineStart == nameBytes.count else { continue }
            var same = true
            for k in 0..<nameBytes.count where lowercased(b[lineStart + k]) != nameBytes[k] { same = false; break }
            guard same else { continue }
            var vs = colon + 1
            while vs < line.upperBound && (b[vs] == 0x20 || b[vs] == 0x09) { vs += 1 }
            var ve = line.upperBound
            while ve > vs && (b[ve - 1] == 0x20 || b[ve - 1] == 0x09) { ve -= 1 }
            result = String(decoding: UnsafeRawBufferPointer(rebasing: b[vs..<ve]), as: UTF8.self)
            break
        }
        return result
    }
}
