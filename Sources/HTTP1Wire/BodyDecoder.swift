/// Finds where a message body ends without changing its bytes: the proxy forwards chunked
/// bodies verbatim and only needs to know the boundaries (and to refuse a malformed chunk).
public struct BodyDecoder: Sendable {
    enum State: Sendable, Equatable {
        case lengthRemaining(Int)
        case chunkSize(value: Int, digits: Int)
        case chunkExtension(size: Int)
        case chunkSizeLF(size: Int)
        case chunkData(remaining: Int)
        case chunkDataCR
        case chunkDataLF
        case trailerLineStart
        case trailerLine
        case trailerLF(blank: Bool)
        case untilClose
        case done
    }

    var state: State
    let errorStatus: Int

    /// 16 hex digits overflow Int; real chunks are far smaller.
    static let maxChunkSizeDigits = 15

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
                    guard digits < Self.maxChunkSizeDigits else { throw HTTPParseError(errorStatus, "chunk size too large") }
                    state = .chunkSize(value: value << 4 | d, digits: digits + 1)
                } else if digits > 0 && c == 0x0D {
                    state = .chunkSizeLF(size: value)
                } else if digits > 0 && (c == UInt8(ascii: ";") || c == 0x20 || c == 0x09) {
                    state = .chunkExtension(size: value)
                } else {
                    throw HTTPParseError(errorStatus, "invalid chunk size")
                }
                i += 1
            case .chunkExtension(let size):
                let c = bytes[i]
                if c == 0x0D { state = .chunkSizeLF(size: size) }
                else if c < 0x20 && c != 0x09 { throw HTTPParseError(errorStatus, "invalid chunk extension") }
                i += 1
            case .chunkSizeLF(let size):
                guard bytes[i] == 0x0A else { throw HTTPParseError(errorStatus, "invalid chunk size line") }
                state = size == 0 ? .trailerLineStart : .chunkData(remaining: size)
                i += 1
            case .chunkDataCR:
                guard bytes[i] == 0x0D else { throw HTTPParseError(errorStatus, "chunk data longer than its size") }
                state = .chunkDataLF
                i += 1
            case .chunkDataLF:
                guard bytes[i] == 0x0A else { throw HTTPParseError(errorStatus, "chunk not ended by CRLF") }
                state = .chunkSize(value: 0, digits: 0)
                i += 1
            case .trailerLineStart:
                state = bytes[i] == 0x0D ? .trailerLF(blank: true) : .trailerLine
                i += 1
            case .trailerLine:
                if bytes[i] == 0x0D { state = .trailerLF(blank: false) }
                i += 1
            case .trailerLF(let blank):
                guard bytes[i] == 0x0A else { throw HTTPParseError(errorStatus, "malformed chunked trailer") }
                state = blank ? .done : .trailerLineStart
                i += 1
            }
        }
        return i
    }

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
