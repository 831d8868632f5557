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
        /// Whitespace after the size digits: only more of it, ";" or CR may follow.
        case chunkSizeBWS(size: Int)
        /// After ";" up to CR; `length` counts the extension's bytes.
        case chunkExtension(size: Int, length: Int)
        case chunkSizeLF(size: Int)
        case chunkData(remaining: Int)
        case chunkDataCR
        case chunkDataLF
        /// Trailer section (RFC 9112 §7.1.2): field lines, then an empty line.
        case trailerLineStart
        case trailerName
        case trailerValue
        case trailerLF
        case trailerEndLF
        case untilClose
        case done
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
                    state = .chunkExtension(size: value, length: 0)
                } else if digits > 0 && (c == 0x20 || c == 0x09) {
                    state = .chunkSizeBWS(size: value)
                } else {
                    throw error("invalid chunk size")
                }
                i += 1
            case .chunkSizeBWS(let size):
                // chunk-ext = *( BWS ";" ... ): after the whitespace, "5 6" must not read as 5.
                let c = bytes[i]
                if c == UInt8(ascii: ";") {
                    state = .chunkExtension(size: size, length: 0)
                } else if c == 0x0D {
                    state = .chunkSizeLF(size: size)
                } else if c != 0x20 && c != 0x09 {
                    throw error("junk after chunk size")
                }
                i += 1
            case .chunkExtension(let size, let length):
                let c = bytes[i]
                if c == 0x0D {
                    state = .chunkSizeLF(size: size)
                } else if c < 0x20 && c != 0x09 || c == 0x7F {
                    throw error("invalid character in chunk extension")
                } else if length >= Self.maxChunkExtensionBytes {
                    throw error("chunk extension too long")
                } else {
                    state = .chunkExtension(size: size, length: length + 1)
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
            case .trailerLineStart, .trailerName, .trailerValue, .trailerLF, .trailerEndLF:
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
                    state = .trailerName
                } else {
                    throw error("malformed chunked trailer")
                }
            case .trailerName:
                if c == UInt8(ascii: ":") {
                    state = .trailerValue
                } else if !isTokenChar(c) {
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
