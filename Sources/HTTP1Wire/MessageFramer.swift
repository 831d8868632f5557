import NIOCore

/// Frames the HTTP/1.1 messages of one connection (requests from a client or responses from a
/// server) from its bytes as they are read: `append` what arrived, then take `next()` events
/// until `.needMore`. The one accumulate → head → body → end loop for the gateway's client and
/// upstream connections and for loadtest, as NIO's `ByteToMessageDecoder` is for its decoders.
///
/// Heads and body parts are slices of the bytes read, never copies. The caller may stop taking
/// events after any of them (one request at a time: after a request's `.end`, no `next()` until
/// its response is written): what is unread stays buffered, counted by `bufferedBytes`.
///
/// For responses the caller says, before each response's head, whether its request was HEAD
/// (`expectResponse(toHead:)`). Interim 1xx heads come as `.head` events with no body and no
/// `.end` (`MessageHead.isInterim`); the final head follows. A 101 is interim here too: a caller
/// that never asks to switch protocols (the gateway drops Upgrade) refuses it itself, and one
/// that did stops taking events, since what follows is no longer HTTP/1.1.
///
/// After `next()` throws, the connection cannot be framed any further: answer the error, close,
/// and `reset()` or drop the framer.
public struct MessageFramer: Sendable {
    public enum Event: Sendable {
        /// A head's bytes; the head itself is `head` until the next one. `framing` says how its
        /// body is delimited. The event stays small (a head is ~200 bytes): every event is moved
        /// through `next()`'s callers, and a head in it would be copied with each.
        case head(ByteBuffer)
        /// Body bytes as they came framed (chunk sizes and trailers included): the proxy forwards
        /// them unchanged.
        case body(ByteBuffer)
        /// The message whose final head came last is complete; the next bytes begin another.
        case end
        /// Nothing more can be framed from the bytes buffered.
        case needMore
    }

    @usableFromInline var framer: RawMessageFramer
    /// Bytes read and not yet taken; nil rather than empty (see `take`).
    @usableFromInline var input: ByteBuffer?
    /// Body bytes at the start of `input` the framer consumed but has not handed out: a chunk-size
    /// line or a trailer section not complete yet. They go out with the bytes that complete them,
    /// so a line that turns out malformed is never partly forwarded.
    private var held = 0

    /// `options`: the head parser's limits and policies.
    public init(_ kind: HeadParser.Kind, options: HeadParser.Options) {
        framer = RawMessageFramer(kind, options: options)
    }

    /// With the head parser's defaults for `kind`.
    public init(_ kind: HeadParser.Kind) {
        self.init(kind, options: .defaults(for: kind))
    }

    public var kind: HeadParser.Kind { framer.kind }

    /// Bytes read and not yet taken (a head still incomplete, or messages the caller has not
    /// asked for yet): what a per-connection buffer limit bounds.
    @inlinable public var bufferedBytes: Int { input?.readableBytes ?? 0 }

    /// The head of the last `.head` event (a new framer's is empty).
    /// This and the other getters are inlinable: called across modules, a getter would have its
    /// caller copy the whole framer (~350 bytes) to call it.
    @inlinable public var head: MessageHead { framer.head }

    /// The body framing of the head `next()` returned last (`.none` for an interim head, a
    /// response to HEAD, a 204 or 304).
    @inlinable public var framing: BodyFraming { framer.framing }

    /// A final head was returned and its message's `.end` not yet: a close now cuts the message
    /// off, unless `endsAtClose`.
    @inlinable public var isInsideMessage: Bool { framer.isInsideMessage }

    /// The body in progress runs until the connection closes (a response with neither
    /// Content-Length nor chunking): the close is its end.
    @inlinable public var endsAtClose: Bool { framer.endsAtClose }

    /// How the next final response is framed: a response to HEAD has no body, whatever its head
    /// announces. Holds for that one response; call it between messages.
    public mutating func expectResponse(toHead: Bool) {
        framer.expectResponse(toHead: toHead)
    }

    /// Adds bytes read from the connection behind those still buffered.
    public mutating func append(_ bytes: ByteBuffer) {
        guard bytes.readableBytes > 0 else { return }
        guard var buffered = input else {
            // Nothing waits: keep NIO's buffer as it is, no copy.
            input = bytes
            return
        }
        // Out of `input` first, so the storage is referenced once and grows in place.
        input = nil
        var more = bytes
        buffered.writeBuffer(&more)
        input = buffered
    }

    /// The next piece of the buffered bytes. Throws when they are not valid HTTP/1.1; the error's
    /// status is the answer (4xx for a request, 502 for a response).
    public mutating func next() throws(HTTPParseError) -> Event {
        let step: RawMessageFramer.Step
        if let buffered = input, buffered.readableBytes > held {
            let from = held
            step = try buffered.withUnsafeReadableBytes { raw throws(HTTPParseError) in
                try framer.step(UnsafeRawBufferPointer(rebasing: raw[from...]))
            }
        } else {
            // No bytes, yet a message may end: one without a body, or one whose last bytes were
            // just taken.
            step = try framer.step(UnsafeRawBufferPointer(start: nil, count: 0))
        }
        switch step {
        case .head: return .head(take(framer.head.length))
        case .body(let count):
            if framer.isInFramingLine {
                held += count
                return .needMore
            }
            let part = take(held + count)
            held = 0
            return .body(part)
        case .end: return .end
        case .needMore: return .needMore
        }
    }

    @inline(__always)
    private mutating func take(_ count: Int) -> ByteBuffer {
        let taken = input!.readSlice(length: count)!
        // Holding on to a drained buffer would keep NIO from reusing its receive buffer (it
        // reuses one only while nobody else references it) and cost a copy per read.
        if input!.readableBytes == 0 { input = nil }
        return taken
    }

    /// Drops the buffered bytes and the message in progress: the framer is as new. For a
    /// connection that is closing, or one whose next bytes answer a new request.
    public mutating func reset() {
        input = nil
        held = 0
        framer = RawMessageFramer(framer.kind, options: framer.options)
    }

    /// Takes every byte buffered after the last message, and leaves the framer as new: the
    /// connection switched protocols (a 101) and what follows is no longer HTTP/1.1.
    public mutating func takeRemainingBytes() -> ByteBuffer? {
        precondition(held == 0 && !framer.isInsideMessage, "a protocol switch happens between messages")
        let rest = input
        reset()
        return rest
    }

    /// Bytes of an incomplete head already scanned for its end (tests: each byte once).
    var headBytesScanned: Int { framer.headScanned }
}
