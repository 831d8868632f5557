/// Finds where a message body ends without changing its bytes: the proxy forwards chunked
/// bodies verbatim and only needs to know the boundaries (and to refuse a malformed chunk).
///
/// Chunked framing is checked as strictly as heads (RFC 9112 §7.1): the next hop reads these
/// bytes with its own parser, so anything two parsers could split differently (junk after a
/// chunk size, a bare LF, a trailer line that is really a request line) is refused here.
public struct BodyDecoder: Sendable {
    enum State: Sendable, Equatable {
        case lengthRemaining(Int)
        case chunkSize(value: Int, digits: Int)
        /// Whitespace after the size digits: only more of it or ";" may follow.
        case chunkSizeBWS(size: Int)
        /// After the first ";" up to CR; `length` counts the extensions' bytes.
        case chunkExtension(size: Int, length: Int, at: ExtensionPart)
        case chunkSizeLF(size: Int)
        case chunkData(remaining: Int)
        case chunkDataCR
        case chunkDataLF
        /// Trailer section (RFC 9112 §7.1.2): field lines, then an empty line.
        case trailerLineStart
        /// `length` name bytes so far; `framing` has a bit for each of `framingFieldName(_:)`
        /// the name still spells.
        case trailerName(length: Int, framing: UInt8)
        case trailerValue
        case trailerLF
        case trailerEndLF
        case untilClose
        case done
    }

    /// Where in `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )` a byte is.
    enum ExtensionPart: UInt8, Sendable {
        case beforeName, name, afterName, beforeValue, token, quoted, quotedEscape, quotedEnd, afterValue
    }

    var state: State
    let errorStatus: Int
    /// Bytes of the trailer section so far.
    var trailerBytes = 0

    /// 16 hex digits overflow Int; real chunks are far smaller.
    static let maxChunkSizeDigits = 15
    /// Extensions of one chunk-size line (RFC 9112 §7.1.1 asks servers to bound them; none are
    /// used in practice, but per-chunk signatures of about 100 bytes exist, so the bound is per
    /// line rather than per body).
    public static let maxChunkExtensionBytes = 4096
    /// The whole trailer section.
    public static let maxTrailerBytes = 16 * 1024

    public init(_ framing: BodyFraming, errorStatus: Int = 400) {
        self.errorStatus = errorStatus
        switch framing {
        case .none: state = .done
        case .contentLength(let n): state = n > 0 ? .lengthRemaining(n) : .done
        case .chunked: state = .chunkSize(value: 0, digits: 0)
        case .untilClose: state = .untilClose
        }
    }

    public var isComplete: Bool { state == .done }

    /// Inside a chunk-size line (size, extensions) or the trailer section: framing that is only
    /// known to be valid once its line, or the whole trailer, has ended. A proxy holds such bytes
    /// back until then, so a malformed line is never partly forwarded (bounded by
    /// `maxChunkExtensionBytes` and `maxTrailerBytes`).
    public var isInFramingLine: Bool {
        switch state {
        case .chunkSize(_, let digits): return digits > 0
        case .chunkSizeBWS, .chunkExtension, .chunkSizeLF: return true
        case .trailerLineStart, .trailerName, .trailerValue, .trailerLF, .trailerEndLF: return true
        default: return false
        }
    }

    /// Consumes body bytes from the start of `bytes`; returns how many belong to this body.
    /// Once `isComplete` is true the rest (if any) is the next message.
    public mutating func consume(_ bytes: UnsafeRawBufferPointer) throws(HTTPParseError) -> Int {
        var i = 0
        let n = bytes.count
        while i < n {
            switch state {
            case .done:
                return i
            case .untilClose:
                return n
            case .lengthRemaining(let remaining):
                let take = min(remaining, n - i)
                i += take
                state = remaining == take ? .done : .lengthRemaining(remaining - take)
            case .chunkData(let remaining):
                let take = min(remaining, n - i)
                i += take
                state = remaining == take ? .chunkDataCR : .chunkData(remaining: remaining - take)
            case .chunkSize(let value, let digits):
                let c = bytes[i]
                if let d = hexValue(c) {
                    guard digits < Self.maxChunkSizeDigits else { throw error("chunk size too large") }
                    state = .chunkSize(value: value << 4 | d, digits: digits + 1)
                } else if digits > 0 && c == 0x0D {
                    state = .chunkSizeLF(size: value)
                } else if digits > 0 && c == UInt8(ascii: ";") {
                    state = .chunkExtension(size: value, length: 0, at: .beforeName)
                } else if digits > 0 && (c == 0x20 || c == 0x09) {
                    state = .chunkSizeBWS(size: value)
                } else {
                    throw error("invalid chunk size")
                }
                i += 1
            case .chunkSizeBWS(let size):
                // BWS belongs to an extension: "5 6" or "5 " must not read as 5.
                let c = bytes[i]
                if c == UInt8(ascii: ";") {
                    state = .chunkExtension(size: size, length: 0, at: .beforeName)
                } else if c != 0x20 && c != 0x09 {
                    throw error("junk after chunk size")
                }
                i += 1
            case .chunkExtension(let size, let length, let part):
                let c = bytes[i]
                if c == 0x0D {
                    guard part == .name || part == .token || part == .quotedEnd else { throw error("malformed chunk extension") }
                    state = .chunkSizeLF(size: size)
                } else {
                    guard length < Self.maxChunkExtensionBytes else { throw error("chunk extension too long") }
                    guard let next = Self.extensionStep(part, c) else { throw error("malformed chunk extension") }
                    state = .chunkExtension(size: size, length: length + 1, at: next)
                }
                i += 1
            case .chunkSizeLF(let size):
                guard bytes[i] == 0x0A else { throw error("chunk size line not ended by CRLF") }
                state = size == 0 ? .trailerLineStart : .chunkData(remaining: size)
                i += 1
            case .chunkDataCR:
                guard bytes[i] == 0x0D else { throw error("chunk data longer than its size") }
                state = .chunkDataLF
                i += 1
            case .chunkDataLF:
                guard bytes[i] == 0x0A else { throw error("chunk not ended by CRLF") }
                state = .chunkSize(value: 0, digits: 0)
                i += 1
            case .trailerLineStart, .trailerName(_, _), .trailerValue, .trailerLF, .trailerEndLF:
                i = try consumeTrailer(bytes, from: i)
            }
        }
        return i
    }

    /// Trailer field lines: a token, a colon, a value without controls, CRLF; then CRLF. Not
    /// checking them let `0\r\n\nGET /smuggled ...` pass as one body to an upstream that reads
    /// a bare LF as a line end and then a second request.
    mutating func consumeTrailer(_ bytes: UnsafeRawBufferPointer, from start: Int) throws(HTTPParseError) -> Int {
        var i = start
        let n = bytes.count
        while i < n {
            let c = bytes[i]
            switch state {
            case .trailerLineStart:
                if c == 0x0D {
                    state = .trailerEndLF
                } else if isTokenChar(c) {
                    state = .trailerName(length: 1, framing: Self.stillSpelled(0b111, c, at: 0))
                } else {
                    throw error("malformed chunked trailer")
                }
            case .trailerName(let length, let framing):
                if c == UInt8(ascii: ":") {
                    for k in 0..<3 where framing & (1 << k) != 0 && Self.framingFieldName(k).utf8CodeUnitCount == length {
                        throw error("framing field in chunked trailer")
                    }
                    state = .trailerValue
                } else if isTokenChar(c) {
                    state = .trailerName(length: length + 1, framing: framing == 0 ? 0 : Self.stillSpelled(framing, c, at: length))
                } else {
                    throw error("malformed chunked trailer")
                }
            case .trailerValue:
                if c == 0x0D {
                    state = .trailerLF
                } else if c < 0x20 && c != 0x09 || c == 0x7F {
                    throw error("invalid character in chunked trailer")
                }
            case .trailerLF:
                guard c == 0x0A else { throw error("chunked trailer line not ended by CRLF") }
                state = .trailerLineStart
            case .trailerEndLF:
                guard c == 0x0A else { throw error("chunked trailer not ended by CRLF") }
                state = .done
                return i + 1
            default:
                return i
            }
            i += 1
            trailerBytes += 1
            if trailerBytes > Self.maxTrailerBytes { throw error("chunked trailer too large") }
        }
        return i
    }

    /// Fields that frame the message or end the connection are refused in trailers (RFC 9110
    /// §6.5.1 forbids them there): the body is forwarded as it came, and a next hop that acts on
    /// them (llhttp refuses Content-Length and Transfer-Encoding trailers and closes after a
    /// `Connection: close` one) would read the stream differently from the gateway.
    @inline(__always) static func framingFieldName(_ k: Int) -> StaticString {
        switch k {
        case 0: return "content-length"
        case 1: return "transfer-encoding"
        default: return "connection"
        }
    }

    /// The bits of `framing` whose field name has `c` (case-insensitively) at `index`.
    static func stillSpelled(_ framing: UInt8, _ c: UInt8, at index: Int) -> UInt8 {
        var out: UInt8 = 0
        for k in 0..<3 where framing & (1 << k) != 0 {
            let name = framingFieldName(k)
            if index < name.utf8CodeUnitCount && name.utf8Start[index] == lowercased(c) { out |= 1 << k }
        }
        return out
    }

    /// One byte of chunk extensions (RFC 9112 §7.1.1), after the first ";"; nil when it does
    /// not fit the grammar. Extensions are forwarded untouched, so a next hop that parses them
    /// must not find anything but names, values and the whitespace the grammar allows.
    static func extensionStep(_ part: ExtensionPart, _ c: UInt8) -> ExtensionPart? {
        let space = c == 0x20 || c == 0x09
        switch part {
        case .beforeName:
            if space { return .beforeName }
            return isTokenChar(c) ? .name : nil
        case .name, .afterName:
            if part == .name && isTokenChar(c) { return .name }
            if space { return .afterName }
            if c == UInt8(ascii: "=") { return .beforeValue }
            return c == UInt8(ascii: ";") ? .beforeName : nil
        case .beforeValue:
            if space { return .beforeValue }
            if c == UInt8(ascii: "\"") { return .quoted }
            return isTokenChar(c) ? .token : nil
        case .token, .quotedEnd, .afterValue:
            if part == .token && isTokenChar(c) { return .token }
            if space { return .afterValue }
            return c == UInt8(ascii: ";") ? .beforeName : nil
        case .quoted:
            // qdtext: HTAB, SP, VCHAR but DQUOTE and backslash, obs-text
            if c == UInt8(ascii: "\"") { return .quotedEnd }
            if c == UInt8(ascii: "\\") { return .quotedEscape }
            return c == 0x09 || c >= 0x20 && c != 0x7F ? .quoted : nil
        case .quotedEscape:
            return c == 0x09 || c >= 0x20 && c != 0x7F ? .quoted : nil
        }
    }

    @inline(__always) func error(_ reason: String) -> HTTPParseError { HTTPParseError(errorStatus, reason) }

    /// Ends an `untilClose` body when the peer closes; any other unfinished body was truncated.
    public var endsAtClose: Bool { state == .untilClose }
}

@inline(__always) func hexValue(_ c: UInt8) -> Int? {
    switch c {
    case 0x30...0x39: return Int(c - 0x30)
    case 0x41...0x46: return Int(c - 0x41 + 10)
    case 0x61...0x66: return Int(c - 0x61 + 10)
    default: return nil
    }
}
