#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The HTTP/1.1 head parser: one pass over the bytes, offsets instead of copies.
///
/// It is strict where two parsers could disagree on where a message ends or what it means
/// (request smuggling): a proxy that accepts something its upstream reads differently forwards
/// an attack. So bare LFs, lists and repeats of the framing headers, unknown transfer codings,
/// folded or space-before-colon lines and control characters are refused, never repaired
/// (RFC 9112 §2.2, §5, §6; RFC 9110 §5.5, §8.6). Requests get 4xx, upstream responses 502.
public enum HeadParser {
    public enum Kind: Sendable { case request, response }

    /// Limits and policies of the parser, with Envoy's names and edge defaults.
    public struct Options: Sendable, Equatable {
        /// Envoy's `headers_with_underscores_action` (only the two actions this gateway offers).
        /// A name like `X_User` is refused by default: servers behind a proxy (CGI, WSGI, some
        /// frameworks) map `-` and `_` to the same variable, so it could shadow a header the
        /// proxy vets or sets.
        public enum HeadersWithUnderscores: Sendable, Equatable {
            case allow
            /// 400 for a request that has one; responses are never refused for it.
            case rejectRequest
        }

        /// The largest head, request line or status line to blank line (Envoy's
        /// `max_request_headers_kb`, 60). Past it: 431 for a request, 502 for a response.
        public var maxHeadBytes: Int
        /// The most header lines (Envoy's `max_headers_count`, 100). Past it: 431 / 502.
        public var maxHeadersCount: Int
        public var headersWithUnderscores: HeadersWithUnderscores

        public init(maxHeadBytes: Int = 60 * 1024, maxHeadersCount: Int = 100,
                    headersWithUnderscores: HeadersWithUnderscores = .rejectRequest) {
            self.maxHeadBytes = maxHeadBytes
            self.maxHeadersCount = maxHeadersCount
            self.headersWithUnderscores = headersWithUnderscores
        }

        /// Client requests: Envoy's edge defaults.
        public static let requestDefaults = Options()
        /// Upstream responses: the same limits; an upstream's header names are its own business.
        public static let responseDefaults = Options(headersWithUnderscores: .allow)

        @inline(__always) public static func defaults(for kind: Kind) -> Options {
            kind == .request ? requestDefaults : responseDefaults
        }
    }

    /// Parses a complete head at the start of `bytes` with the default options for `kind`.
    @inline(__always)
    public static func parse(_ bytes: UnsafeRawBufferPointer, kind: Kind) throws(HTTPParseError) -> MessageHead? {
        try parse(bytes, kind: kind, options: .defaults(for: kind))
    }

    /// Parses a complete head at the start of `bytes`. Returns nil when the blank line has not
    /// arrived yet and nothing seen so far is wrong (and the head is still within the limit).
    /// `scanned`: how many bytes an earlier call already found without the head's end (its
    /// `bytes.count` then), so a head arriving a byte at a time is scanned once, not once per byte.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, kind: Kind, options: Options, scanned: Int = 0
    ) throws(HTTPParseError) -> MessageHead? {
        var head = MessageHead()
        guard try parse(bytes, kind: kind, options: options, scanned: scanned, into: &head) else { return nil }
        return head
    }

    /// `parse` into a head the caller keeps: false (and `head` untouched) while the blank line
    /// has not arrived. The framers parse in place, since a head is ~200 bytes and every copy of
    /// it on the way to its handler costs a `memcpy`.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, kind: Kind, options: Options, scanned: Int = 0, into head: inout MessageHead
    ) throws(HTTPParseError) -> Bool {
        let bad = kind == .request ? 400 : 502
        // Offsets are kept in 32 bits (ConnectionOptions).
        let limit = min(options.maxHeadBytes, Int(UInt32.max))
        guard let end = try findHeadEnd(bytes, from: min(scanned, bytes.count), limit: limit, bad: bad) else {
            if bytes.count > limit { throw tooLarge(kind) }
            return false
        }
        head = MessageHead()
        head.kind = kind
        head.length = end
        let pos: Int
        switch kind {
        case .request: pos = try parseRequestLine(bytes, end: end, &head)
        case .response: pos = try parseStatusLine(bytes, end: end, &head)
        }
        try parseHeaderLines(bytes, from: pos, to: end - 2, &head, options: options)
        return true
    }

    static func tooLarge(_ kind: Kind) -> HTTPParseError {
        kind == .request
            ? HTTPParseError(431, "request header fields too large")
            : HTTPParseError(502, "upstream response headers too large")
    }

    /// Offset just past the CRLFCRLF that ends the head, or nil while it has not arrived within
    /// the first `limit` bytes. Every LF on the way must follow a CR: RFC 9112 §2.2 lets a
    /// recipient accept a bare LF, which is how a proxy and its upstream come to split a stream
    /// differently, so it is refused, and as soon as it arrives rather than after `limit` bytes
    /// of waiting for a CRLFCRLF that a bare-LF client never sends.
    /// Bytes before `from` were scanned by an earlier call (their LFs checked, no head end).
    static func findHeadEnd(_ bytes: UnsafeRawBufferPointer, from: Int = 0, limit: Int, bad: Int) throws(HTTPParseError) -> Int? {
        let n = min(bytes.count, limit)
        guard n > 0, let base = bytes.baseAddress else { return nil }
        var i = from
        while i < n {
            // Jump from LF to LF with memchr: heads are mostly printable bytes.
            guard let p = memchr(base + i, 0x0A, n - i) else { return nil }
            let lf = base.distance(to: UnsafeRawPointer(p))
            guard lf > 0, bytes[lf - 1] == 0x0D else { throw HTTPParseError(bad, "bare LF in message head") }
            // The LF before this CR was itself checked to follow a CR: this is CRLFCRLF.
            if lf >= 3 && bytes[lf - 2] == 0x0A { return lf + 1 }
            i = lf + 1
        }
        return nil
    }

    static func parseRequestLine(
        _ b: UnsafeRawBufferPointer, end: Int, _ head: inout MessageHead
    ) throws(HTTPParseError) -> Int {
        var i = 0
        while i < end && isTokenChar(b[i]) { i += 1 }
        guard i > 0, i < end, b[i] == 0x20 else { throw HTTPParseError(400, "malformed request line") }
        head.method = 0..<i
        i += 1
        let targetStart = i
        // URI characters are visible ASCII (RFC 3986); raw bytes above 0x7E are refused, as llhttp does.
        while i < end && b[i] > 0x20 && b[i] < 0x7F { i += 1 }
        guard i > targetStart, i < end, b[i] == 0x20 else { throw HTTPParseError(400, "malformed request target") }
        head.target = targetStart..<i
        i += 1
        head.minorVersion = try parseVersion(b, at: i, end: end, bad: 400, unsupported: 505)
        i += 8
        guard i + 1 < end, b[i] == 0x0D, b[i + 1] == 0x0A else { throw HTTPParseError(400, "malformed request line") }
        try checkTarget(b, head)
        return i + 2
    }

    /// The gateway routes origin-form paths (RFC 9112 §3.2.1), plus `OPTIONS *`.
    /// absolute-form (`GET http://host/path`) is what clients send a forward proxy; RFC 9112
    /// §3.2.2 asks a server to accept it, but then the target's authority would have to replace
    /// Host and the target be rewritten to origin-form before forwarding, which this gateway does
    /// not do: it refuses it (400) rather than route on something that is not a path or forward a
    /// target its upstream may resolve differently. authority-form belongs to CONNECT, and the
    /// gateway opens no tunnels (501).
    @inline(__always)
    static func checkTarget(_ b: UnsafeRawBufferPointer, _ head: MessageHead) throws(HTTPParseError) {
        if head.method.count == 7 && equalsExactly(b, head.method, "CONNECT") {
            throw HTTPParseError(501, "CONNECT is not supported")
        }
        let first = b[head.target.lowerBound]
        if first == UInt8(ascii: "/") { return }
        if first == UInt8(ascii: "*") {
            if head.target.count == 1 && equalsExactly(b, head.method, "OPTIONS") { return }
            throw HTTPParseError(400, "asterisk-form request target is only allowed with OPTIONS")
        }
        throw HTTPParseError(400, "absolute-form and authority-form request targets are not supported: send the path")
    }

    /// "HTTP/" DIGIT "." DIGIT; only 1.0 and 1.1 are spoken.
    static func parseVersion(
        _ b: UnsafeRawBufferPointer, at i: Int, end: Int, bad: Int, unsupported: Int
    ) throws(HTTPParseError) -> Int {
        guard i + 8 <= end, b[i] == 0x48, b[i + 1] == 0x54, b[i + 2] == 0x54, b[i + 3] == 0x50,
              b[i + 4] == 0x2F, b[i + 6] == 0x2E, (0x30...0x39).contains(b[i + 5]), (0x30...0x39).contains(b[i + 7])
        else { throw HTTPParseError(bad, "malformed HTTP version") }
        guard b[i + 5] == 0x31, b[i + 7] <= 0x31 else { throw HTTPParseError(unsupported, "HTTP version not supported") }
        return Int(b[i + 7] - 0x30)
    }

    /// HTTP-version SP 3DIGIT [SP reason-phrase] CRLF. The space before an empty reason is
    /// optional, as llhttp and most clients read it.
    static func parseStatusLine(
        _ b: UnsafeRawBufferPointer, end: Int, _ head: inout MessageHead
    ) throws(HTTPParseError) -> Int {
        head.minorVersion = try parseVersion(b, at: 0, end: end, bad: 502, unsupported: 502)
        guard end >= 14, b[8] == 0x20 else { throw HTTPParseError(502, "malformed upstream status line") }
        var status = 0
        for j in 9..<12 {
            let d = b[j] &- 0x30
            guard d <= 9 else { throw HTTPParseError(502, "malformed upstream status code") }
            status = status * 10 + Int(d)
        }
        guard status >= 100 else { throw HTTPParseError(502, "malformed upstream status code") }
        head.status = status
        var i = 12
        if b[i] == 0x20 {
            i += 1
            while i < end && b[i] != 0x0D {
                let c = b[i]
                if c < 0x20 && c != 0x09 || c == 0x7F { throw HTTPParseError(502, "invalid character in upstream reason phrase") }
                i += 1
            }
        }
        guard i + 1 < end, b[i] == 0x0D, b[i + 1] == 0x0A else { throw HTTPParseError(502, "malformed upstream status line") }
        return i + 2
    }

    /// What the header lines said about framing, checked once they are all read.
    struct FramingSeen {
        var chunkedCodings = 0
        /// A request's single unknown coding: 501, unless the head is malformed anyway (400 first).
        var unsupportedCoding = false
    }

    static func parseHeaderLines(
        _ b: UnsafeRawBufferPointer, from start: Int, to end: Int, _ head: inout MessageHead, options: Options
    ) throws(HTTPParseError) {
        let kind = head.kind
        let bad = kind == .request ? 400 : 502
        let rejectUnderscores = kind == .request && options.headersWithUnderscores == .rejectRequest
        var i = start
        var count = 0
        var seen = FramingSeen()
        while i < end {
            count += 1
            if count > options.maxHeadersCount {
                throw kind == .request
                    ? HTTPParseError(431, "too many header fields")
                    : HTTPParseError(502, "too many upstream header fields")
            }
            let nameStart = i
            while i < end && isTokenChar(b[i]) { i += 1 }
            // A space before the colon or a folded line is a smuggling vector: refuse (RFC 9112 §5.1-5.2).
            guard i > nameStart, i < end, b[i] == UInt8(ascii: ":") else {
                throw HTTPParseError(bad, "malformed header line")
            }
            let name = nameStart..<i
            if rejectUnderscores && memchr(b.baseAddress! + nameStart, 0x5F, name.count) != nil {
                throw HTTPParseError(400, "header name with an underscore")
            }
            i += 1
            while i < end && (b[i] == 0x20 || b[i] == 0x09) { i += 1 }
            let valueStart = i
            while i < end && b[i] != 0x0D {
                let c = b[i]
                if c < 0x20 && c != 0x09 || c == 0x7F { throw HTTPParseError(bad, "invalid character in header value") }
                i += 1
            }
            // findHeadEnd saw a CR before every LF; a CR not followed by LF is a bare CR.
            guard b[i] == 0x0D, b[i + 1] == 0x0A else { throw HTTPParseError(bad, "bare CR in header line") }
            var valueEnd = i
            while valueEnd > valueStart && (b[valueEnd - 1] == 0x20 || b[valueEnd - 1] == 0x09) { valueEnd -= 1 }
            let value = valueStart..<valueEnd
            i += 2
            try classify(b, name: name, value: value, &head, &seen, bad: bad)
        }
        head.headerCount = count
        if kind == .request {
            if head.hasTransferEncoding {
                if head.contentLength != nil { throw HTTPParseError(400, "both Content-Length and Transfer-Encoding") }
                if head.minorVersion == 0 { throw HTTPParseError(400, "Transfer-Encoding in an HTTP/1.0 request") }
                if seen.unsupportedCoding { throw HTTPParseError(501, "unsupported transfer coding") }
            }
            if head.host == nil && head.minorVersion == 1 { throw HTTPParseError(400, "missing Host header") }
        } else if head.hasTransferEncoding {
            if seen.chunkedCodings > 1 { throw HTTPParseError(502, "upstream applied chunked more than once") }
            if head.contentLength != nil {
                // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; the line is not forwarded.
                head.contentLength = nil
                head.needsLineRewrite = true
            }
        }
        if head.connectionOptions.count > 0 {
            // Values the client declared hop-by-hop are not carried on in the gateway's own lines.
            if head.forwardedFor != nil && head.connectionOptions.names(b, "x-forwarded-for") { head.forwardedFor = nil }
            if head.requestID != nil && head.connectionOptions.names(b, "x-request-id") { head.requestID = nil }
            if head.traceParent != nil && head.connectionOptions.names(b, "traceparent") { head.traceParent = nil }
            if head.traceState != nil && head.connectionOptions.names(b, "tracestate") { head.traceState = nil }
        }
    }

    @inline(__always)
    static func classify(
        _ b: UnsafeRawBufferPointer, name: Range<Int>, value: Range<Int>, _ head: inout MessageHead,
        _ seen: inout FramingSeen, bad: Int
    ) throws(HTTPParseError) {
        let isRequest = head.kind == .request
        switch name.count {
        case 4:
            if isRequest && equalsLowercase(b, name, "host") {
                if head.host != nil { throw HTTPParseError(400, "duplicate Host header") }
                guard isValidHost(b, value) else { throw HTTPParseError(400, "invalid Host header") }
                head.host = value
            }
        case 10:
            if equalsLowercase(b, name, "connection") {
                head.needsLineRewrite = true
                try forEachToken(b, value) { (token) throws(HTTPParseError) in
                    if equalsLowercase(b, token, "close") {
                        head.connectionClose = true
                    } else if equalsLowercase(b, token, "keep-alive") {
                        head.connectionKeepAlive = true
                    } else if isHopByHop(b, token) {
                        // removed anyway
                        if equalsLowercase(b, token, "upgrade") { head.connectionUpgrade = true }
                    } else if equalsLowercase(b, token, "content-length") || equalsLowercase(b, token, "transfer-encoding")
                        || equalsLowercase(b, token, "host")
                    {
                        // Dropping one of these on the way would leave the body unframed for the next hop.
                        throw HTTPParseError(bad, "Connection header names a framing header")
                    } else if !head.connectionOptions.append(token) {
                        throw HTTPParseError(bad, "too many Connection options")
                    }
                }
            } else if equalsLowercase(b, name, "keep-alive") {
                head.needsLineRewrite = true
            } else if isRequest && equalsLowercase(b, name, "tracestate") {
                head.traceState = head.traceState == nil ? value : value.lowerBound..<value.lowerBound
                head.needsLineRewrite = true
            }
        case 11:
            if isRequest && equalsLowercase(b, name, "traceparent") {
                head.traceParent = head.traceParent == nil ? value : value.lowerBound..<value.lowerBound
                head.needsLineRewrite = true
            }
        case 7:
            if equalsLowercase(b, name, "upgrade") {
                head.needsLineRewrite = true
                if head.upgrade == nil { head.upgrade = value }
            } else if equalsLowercase(b, name, "trailer") {
                head.needsLineRewrite = true
            }
        case 12:
            if isRequest && equalsLowercase(b, name, "x-request-id") { head.requestID = value }
        case 14:
            if equalsLowercase(b, name, "content-length") {
                // One line of digits only: RFC 9110 §8.6 lets a recipient take "5, 5" as 5, but
                // not every parser does, and Envoy refuses repeats too.
                if head.contentLength != nil { throw HTTPParseError(bad, "more than one Content-Length") }
                guard let n = parseContentLength(b, value) else { throw HTTPParseError(bad, "invalid Content-Length") }
                head.contentLength = n
            }
        case 15:
            if isRequest && equalsLowercase(b, name, "x-forwarded-for") {
                head.forwardedFor = value
                head.needsLineRewrite = true
            }
        case 17:
            if equalsLowercase(b, name, "transfer-encoding") {
                if isRequest {
                    try requestTransferEncoding(b, value, &head, &seen)
                } else {
                    try responseTransferEncoding(b, value, &head, &seen)
                }
            } else if isRequest && equalsLowercase(b, name, "x-forwarded-proto") {
                // The gateway appends its own.
                head.needsLineRewrite = true
            }
        default:
            if isHopByHop(b, name) { head.needsLineRewrite = true }
        }
    }

    /// A request body is framed by chunks only when Transfer-Encoding is exactly the single
    /// token `chunked` on a single line. A list (`gzip, chunked`, `chunked, chunked`) or a repeat
    /// is refused (400) even where its last coding is chunked: the gateway would have to undo
    /// the other codings, and parsers differ on lists. Another single coding is 501 (RFC 9112 §6.1).
    @inline(__always)
    static func requestTransferEncoding(
        _ b: UnsafeRawBufferPointer, _ value: Range<Int>, _ head: inout MessageHead, _ seen: inout FramingSeen
    ) throws(HTTPParseError) {
        if head.hasTransferEncoding { throw HTTPParseError(400, "more than one Transfer-Encoding header") }
        head.hasTransferEncoding = true
        if equalsLowercase(b, value, "chunked") {
            head.chunked = true
            return
        }
        guard !value.isEmpty else { throw HTTPParseError(400, "empty Transfer-Encoding") }
        var token = true
        for p in value {
            if b[p] == UInt8(ascii: ",") { throw HTTPParseError(400, "Transfer-Encoding list: only chunked is accepted") }
            if !isTokenChar(b[p]) { token = false }
        }
        guard token else { throw HTTPParseError(400, "malformed Transfer-Encoding") }
        seen.unsupportedCoding = true
    }

    /// Responses may list codings (lines combine into one list): chunked as the final coding
    /// frames the body, any other final coding means the body runs until the upstream closes
    /// (RFC 9112 §6.3). chunked applied twice is malformed.
    @inline(__always)
    static func responseTransferEncoding(
        _ b: UnsafeRawBufferPointer, _ value: Range<Int>, _ head: inout MessageHead, _ seen: inout FramingSeen
    ) throws(HTTPParseError) {
        head.hasTransferEncoding = true
        var tokens = 0
        forEachToken(b, value) { token in
            tokens += 1
            let isChunked = equalsLowercase(b, token, "chunked")
            if isChunked { seen.chunkedCodings += 1 }
            head.chunked = isChunked
        }
        if tokens == 0 { throw HTTPParseError(502, "empty upstream Transfer-Encoding") }
    }

    /// uri-host [":" port] (RFC 3986 reg-name, IP literal): no spaces, slashes, "@" or controls,
    /// so the Host a route matches on is the one the upstream sees.
    @inline(__always)
    static func isValidHost(_ b: UnsafeRawBufferPointer, _ value: Range<Int>) -> Bool {
        for p in value {
            switch b[p] {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: continue
            case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "!"),
                UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"),
                UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="),
                UInt8(ascii: ":"), UInt8(ascii: "%"), UInt8(ascii: "["), UInt8(ascii: "]"):
                continue
            default: return false
            }
        }
        return true
    }

    /// Comma-separated tokens of a header value, trimmed; empty elements are skipped.
    @inline(__always)
    static func forEachToken<E: Error>(
        _ b: UnsafeRawBufferPointer, _ value: Range<Int>, _ body: (Range<Int>) throws(E) -> Void
    ) throws(E) {
        var i = value.lowerBound
        while i < value.upperBound {
            while i < value.upperBound && (b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x2C) { i += 1 }
            let s = i
            while i < value.upperBound && b[i] != 0x2C { i += 1 }
            var e = i
            while e > s && (b[e - 1] == 0x20 || b[e - 1] == 0x09) { e -= 1 }
            if e > s { try body(s..<e) }
        }
    }

    /// 1 to 15 digits and nothing else (15 digits stay far from overflowing Int).
    static func parseContentLength(_ b: UnsafeRawBufferPointer, _ value: Range<Int>) -> Int? {
        guard !value.isEmpty, value.count <= 15 else { return nil }
        var n = 0
        for p in value {
            let d = b[p] &- 0x30
            guard d <= 9 else { return nil }
            n = n * 10 + Int(d)
        }
        return n
    }

    /// The request's body framing (RFC 9112 §6.3). This and `responseFraming` are inlinable: a call
    /// would copy the head it is given out of the framer that holds it.
    @inlinable @inline(__always) public static func requestFraming(_ head: MessageHead) -> BodyFraming {
        if head.chunked { return .chunked }
        if let n = head.contentLength, n > 0 { return .contentLength(n) }
        return .none
    }

    /// The response's body framing given the request method and the status.
    @inlinable @inline(__always) public static func responseFraming(_ head: MessageHead, requestWasHead: Bool) -> BodyFraming {
        if requestWasHead || head.status < 200 || head.status == 204 || head.status == 304 { return .none }
        if head.chunked { return .chunked }
        if let n = head.contentLength { return n > 0 ? .contentLength(n) : .none }
        return .untilClose
    }
}
