/// `MessageFramer` without the bytes: told the bytes of the connection not taken yet, it says what
/// they begin with (a head, so many body bytes, the end of the message, or nothing complete yet),
/// and the caller drops what that step took before the next call. It holds no bytes and does not
/// import NIO, so the fuzz targets under fuzz/ drive the very state machine the gateway runs.
@usableFromInline struct RawMessageFramer: Sendable {
    enum Step {
        /// A head of `head.length` bytes, in `head`.
        case head
        /// This many body bytes, as framed (chunk sizes, extensions and trailers included).
        case body(Int)
        /// The message whose final head came last is complete.
        case end
        /// Nothing complete in the bytes given: call again with the same bytes and more.
        case needMore
    }

    let kind: HeadParser.Kind
    let options: HeadParser.Options
    /// Bytes at the start of the input already scanned without finding a head's end (see
    /// `HeadParser.parse`), so a head arriving in pieces is scanned once, not once per piece.
    private(set) var headScanned = 0
    /// A final head was returned and its message's end not yet.
    @usableFromInline private(set) var isInsideMessage = false
    /// The body of the message whose final head came last.
    @usableFromInline private(set) var body = BodyDecoder(.none)
    /// The head `step` returned last. Kept here rather than in `Step`, so the head is parsed in
    /// place and copied only by whoever keeps it.
    @usableFromInline private(set) var head = MessageHead()
    /// The framing of the head returned last (`.none` for an interim head).
    @usableFromInline private(set) var framing = BodyFraming.none
    /// The next final response head answers a HEAD request: it has no body, whatever it says.
    private(set) var respondingToHead = false

    init(_ kind: HeadParser.Kind, options: HeadParser.Options) {
        self.kind = kind
        self.options = options
    }

    /// Sets how the next final response is framed; it holds for that response only.
    mutating func expectResponse(toHead: Bool) {
        precondition(kind == .response, "only a response's framing depends on its request")
        assert(!isInsideMessage, "the request of a response is known before the response's head is parsed")
        respondingToHead = toHead
    }

    /// The body is inside a chunk-size line or the trailer section (see `BodyDecoder.isInFramingLine`).
    var isInFramingLine: Bool { isInsideMessage && body.isInFramingLine }

    /// Whether the body of the message in progress ends when the connection closes (a response
    /// without Content-Length or chunking): a close then ends it instead of cutting it off.
    @inlinable var endsAtClose: Bool { isInsideMessage && body.endsAtClose }

    /// What `bytes`, the input not taken yet, begin with. After a `.head` or `.body` the caller
    /// drops that many bytes from the front of its input; after `.needMore` it keeps them all.
    /// A 1xx response head (101 included) is interim: no body and no `.end` follow it, the next
    /// head does. Errors carry the status to answer: 4xx for requests, 502 for responses.
    @inline(__always)
    mutating func step(_ bytes: UnsafeRawBufferPointer) throws(HTTPParseError) -> Step {
        guard isInsideMessage else {
            guard !bytes.isEmpty else { return .needMore }
            guard try HeadParser.parse(bytes, kind: kind, options: options, scanned: headScanned, into: &head) else {
                headScanned = bytes.count
                return .needMore
            }
            headScanned = 0
            if head.isInterim {
                framing = .none
                return .head
            }
            framing = kind == .request
                ? HeadParser.requestFraming(head)
                : HeadParser.responseFraming(head, requestWasHead: respondingToHead)
            body = BodyDecoder(framing, errorStatus: kind == .request ? 400 : 502)
            isInsideMessage = true
            return .head
        }
        if body.isComplete {
            isInsideMessage = false
            respondingToHead = false
            return .end
        }
        let taken = try body.consume(bytes)
        assert(taken == bytes.count || body.isComplete, "an unfinished body takes every byte it is given")
        return taken > 0 ? .body(taken) : .needMore
    }
}

extension MessageHead {
    /// A 1xx response (100 Continue, 103 Early Hints, 101 Switching Protocols): the final response
    /// of the same request follows it. A 101 is followed by another protocol instead; a peer that
    /// did not ask to switch treats it as an error.
    @inlinable public var isInterim: Bool { kind == .response && status < 200 }
}
