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
    /// Whether this is a request head (from a client) or a response head (from an upstream).
    public var kind: HeadParser.Kind = .request
    /// Bytes of the whole head including the blank line.
    public var length: Int = 0
    /// Request: method and target ranges. Response: unused.
    public var method: Range<Int> {
        @inlinable get { _method.range }
        set { _method = HeadRange(newValue) }
    }
    public var target: Range<Int> {
        @inlinable get { _target.range }
        set { _target = HeadRange(newValue) }
    }
    /// Response status code.
    public var status: Int = 0
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    public var minorVersion: Int = 1
    public var contentLength: Int? = nil
    /// The final transfer coding is chunked (the body is framed by chunks).
    public var chunked = false
    /// A Transfer-Encoding line was present. In a response it overrides a Content-Length line,
    /// which is then not forwarded (RFC 9112 §6.3).
    public var hasTransferEncoding = false
    public var connectionClose = false
    public var connectionKeepAlive = false
    /// The Connection header lists `upgrade`, and the value of the (first) Upgrade header: a
    /// request to switch protocols, or a 101's answer to one (RFC 9110 §7.8).
    public var connectionUpgrade = false
    public var upgrade: Range<Int>? {
        @inlinable get { _upgrade.optionalRange }
        set { _upgrade = HeadRange(newValue) }
    }
    public var host: Range<Int>? {
        @inlinable get { _host.optionalRange }
        set { _host = HeadRange(newValue) }
    }
    public var requestID: Range<Int>? {
        @inlinable get { _requestID.optionalRange }
        set { _requestID = HeadRange(newValue) }
    }
    public var forwardedFor: Range<Int>? {
        @inlinable get { _forwardedFor.optionalRange }
        set { _forwardedFor = HeadRange(newValue) }
    }
    /// W3C trace context lines of a request (the gateway writes its own in their place). A
    /// repeated line leaves an empty range: two traceparents make it invalid (W3C §3.2.2.7), and
    /// a tracestate split over lines is not forwarded.
    public var traceParent: Range<Int>? {
        @inlinable get { _traceParent.optionalRange }
        set { _traceParent = HeadRange(newValue) }
    }
    public var traceState: Range<Int>? {
        @inlinable get { _traceState.optionalRange }
        set { _traceState = HeadRange(newValue) }
    }
    /// Header names the Connection header lists (other than close, keep-alive and the names that
    /// are hop-by-hop anyway): those lines are not forwarded (RFC 9110 §7.6.1).
    public var connectionOptions = ConnectionOptions()
    /// Header lines in the head.
    public var headerCount = 0
    /// True when a header line must not be forwarded verbatim (hop-by-hop or rewritten), so the
    /// head has to be copied line by line instead of in one piece.
    public var needsLineRewrite = false

    // The ranges in 8 bytes each instead of 16 (24 optional): a head is copied by value several
    // times per request (framer, handler, router filter), and its size is what those copies cost.
    // Their getters are inlinable: a call across modules would have the caller copy the head.
    @usableFromInline var _method = HeadRange.empty
    @usableFromInline var _target = HeadRange.empty
    @usableFromInline var _upgrade = HeadRange.absent
    @usableFromInline var _host = HeadRange.absent
    @usableFromInline var _requestID = HeadRange.absent
    @usableFromInline var _forwardedFor = HeadRange.absent
    @usableFromInline var _traceParent = HeadRange.absent
    @usableFromInline var _traceState = HeadRange.absent

    public init() {}

    /// An HTTP/1.1 request to switch to WebSocket (RFC 6455 §4.1): GET, `Connection: upgrade`,
    /// `Upgrade: websocket` (the only protocol the gateway tunnels; any other Upgrade is dropped
    /// as hop-by-hop and the request goes on as plain HTTP/1.1), no body.
    public func isWebSocketUpgrade(_ b: UnsafeRawBufferPointer) -> Bool {
        guard kind == .request, connectionUpgrade, let upgrade, minorVersion == 1, !hasTransferEncoding,
              (contentLength ?? 0) == 0, equalsExactly(b, method, "GET")
        else { return false }
        return equalsLowercase(b, upgrade, "websocket")
    }

    /// Whether the connection may carry another message after this one (RFC 9112 §9.3).
    @inlinable public var keepAlive: Bool {
        if connectionClose { return false }
        return minorVersion == 1 || connectionKeepAlive
    }
}

/// The header names a Connection header lists, kept as offsets in fixed storage: no allocation
/// on the parser's path. Heads that list more than `capacity` are refused (a client has no reason
/// to name that many hop-by-hop headers, and dropping only some of them would forward the rest).
public struct ConnectionOptions: Sendable, Equatable {
    public static let capacity = 8
    /// Start and end offset of each option, in pairs. Heads are far below 4 GiB (the parser's
    /// size limit is capped there).
    private var bounds = SIMD16<UInt32>()
    public private(set) var count = 0

    public init() {}

    /// False when full.
    mutating func append(_ range: Range<Int>) -> Bool {
        guard count < Self.capacity else { return false }
        bounds[2 * count] = UInt32(truncatingIfNeeded: range.lowerBound)
        bounds[2 * count + 1] = UInt32(truncatingIfNeeded: range.upperBound)
        count += 1
        return true
    }

    public subscript(_ i: Int) -> Range<Int> { Int(bounds[2 * i])..<Int(bounds[2 * i + 1]) }

    /// Whether the header `name` is one of the options (case-insensitive).
    @inline(__always)
    public func names(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> Bool {
        var k = 0
        while k < count {
            if equalsIgnoringCase(bytes, self[k], name) { return true }
            k += 1
        }
        return false
    }

    /// Whether `literal` (lower case) is one of the options.
    func names(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
        var k = 0
        while k < count {
            if equalsLowercase(bytes, self[k], literal) { return true }
            k += 1
        }
        return false
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

/// Case-insensitive comparison of two ranges of `bytes` (header names).
@inline(__always)
public func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ a: Range<Int>, _ b: Range<Int>) -> Bool {
    guard a.count == b.count else { return false }
    var j = b.lowerBound
    for i in a {
        if lowercased(bytes[i]) != lowercased(bytes[j]) { return false }
        j += 1
    }
    return true
}

/// Case-sensitive comparison with a literal (methods are case-sensitive, RFC 9110 §9.1).
@inline(__always)
public func equalsExactly(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString) -> Bool {
    guard range.count == literal.utf8CodeUnitCount else { return false }
    let lit = literal.utf8Start
    var i = 0
    for p in range {
        if bytes[p] != lit[i] { return false }
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

/// A byte range of a head in 8 bytes, or no range (`absent`). Heads are far below 4 GiB (the
/// parser's size limit is capped there), so both offsets fit 32 bits.
@usableFromInline struct HeadRange: Sendable {
    @usableFromInline var start: UInt32
    @usableFromInline var end: UInt32

    static let empty = HeadRange(start: 0, end: 0)
    /// No range: an offset no head reaches.
    static let absent = HeadRange(start: .max, end: .max)

    private init(start: UInt32, end: UInt32) {
        self.start = start
        self.end = end
    }

    init(_ range: Range<Int>) {
        precondition(range.upperBound < Int(UInt32.max), "a head range past 4 GiB")
        self.init(start: UInt32(truncatingIfNeeded: range.lowerBound), end: UInt32(truncatingIfNeeded: range.upperBound))
    }

    init(_ range: Range<Int>?) {
        self = range.map(HeadRange.init) ?? .absent
    }

    @inlinable var range: Range<Int> { Int(start)..<Int(end) }
    @inlinable var optionalRange: Range<Int>? { start == .max ? nil : range }
}
