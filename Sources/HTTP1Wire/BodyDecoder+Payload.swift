extension BodyDecoder {
    /// Consumes as `consume` does and calls `payload` with each range of `bytes` that is body
    /// content, without chunked framing (sizes, extensions, CRLFs, trailers): what a peer that
    /// cannot read chunked coding (an HTTP/1.0 client) is sent instead. Framing bytes are fed one
    /// at a time; they are a few per chunk.
    public mutating func consume(
        _ bytes: UnsafeRawBufferPointer, payload: (Range<Int>) -> Void
    ) throws(HTTPParseError) -> Int {
        try consume(bytes, payload: payload, trailer: { _ in })
    }

    /// `consume(_:payload:)` that also calls `trailer` with each range of `bytes` that is part of
    /// the trailer section (its field lines with their CRLFs, then the final CRLF), for a peer
    /// that frames trailers itself (an HTTP/2 stream's trailing HEADERS). The section is checked
    /// as it is read and bounded by `maxTrailerBytes`.
    public mutating func consume(
        _ bytes: UnsafeRawBufferPointer, payload: (Range<Int>) -> Void, trailer: (Range<Int>) -> Void
    ) throws(HTTPParseError) -> Int {
        var i = 0
        while i < bytes.count && !isComplete {
            switch state {
            case .chunkData(let remaining):
                let end = i + min(remaining, bytes.count - i)
                let taken = try consume(UnsafeRawBufferPointer(rebasing: bytes[i..<end]))
                assert(taken == end - i, "chunk data is taken whole")
                payload(i..<end)
                i = end
            case .lengthRemaining, .untilClose:
                let taken = try consume(UnsafeRawBufferPointer(rebasing: bytes[i...]))
                payload(i..<(i + taken))
                i += taken
            case .trailerLineStart, .trailerName, .trailerValue, .trailerLF, .trailerEndLF:
                i += try consume(UnsafeRawBufferPointer(rebasing: bytes[i..<(i + 1)]))
                trailer((i - 1)..<i)
            default:
                i += try consume(UnsafeRawBufferPointer(rebasing: bytes[i..<(i + 1)]))
            }
        }
        return i
    }
}
