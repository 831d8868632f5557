import HTTP1Wire
import NIOCore

/// Frames the responses of one upstream connection: accumulates bytes, parses heads (resumably),
/// frames bodies, and says what the connection must not trust afterwards.
struct UpstreamResponseFramer {
    enum Event {
        case needMore
        /// A 1xx interim head; the final head follows.
        case interimHead(ByteBuffer)
        case head(MessageHead, ByteBuffer)
        case body(ByteBuffer)
        /// The response is complete; `trailing`: bytes came after it (they were dropped).
        case end(trailing: Bool)
    }

    private var input: ByteBuffer?
    /// Bytes of the head in `input` the parser already scanned (a head arriving in pieces is
    /// scanned once, not once per read).
    private var headScanned = 0
    private var body: BodyDecoder?
    private var requestWasHead = false
    private(set) var framing = BodyFraming.none

    /// A new request went out: its response comes next.
    mutating func expectResponse(toHead: Bool) {
        assert(input == nil && headScanned == 0 && body == nil, "bytes of an earlier response are left")
        requestWasHead = toHead
        framing = .none
    }

    var responseStarted: Bool { body != nil }
    /// The body has no length: the upstream's close ends it.
    var endsAtClose: Bool { body?.endsAtClose ?? false }

    mutating func append(_ bytes: ByteBuffer) {
        if input == nil {
            input = bytes
        } else {
            var more = bytes
            input!.writeBuffer(&more)
        }
    }

    mutating func next() -> Result<Event, HTTPParseError> {
        if let body, body.isComplete {
            // Bytes after a complete response (a body on a 204 or a HEAD answer, more than
            // Content-Length said) were sent for no request.
            let trailing = (input?.readableBytes ?? 0) > 0
            input = nil
            self.body = nil
            return .success(.end(trailing: trailing))
        }
        guard var buffer = input, buffer.readableBytes > 0 else { return .success(.needMore) }
        if body == nil {
            switch buffer.parseHead(.response, options: .responseDefaults, scanned: headScanned) {
            case .failure(let error):
                input = nil
                return .failure(error)
            case .success(nil):
                headScanned = buffer.readableBytes
                return .success(.needMore)
            case .success(let head?):
                headScanned = 0
                let bytes = buffer.readSlice(length: head.length)!
                keep(buffer)
                if head.status == 101 {
                    // The gateway never asks to switch protocols (it drops Upgrade): an
                    // upstream that does is not speaking HTTP/1.1 with us.
                    input = nil
                    return .failure(HTTPParseError(502, "upstream switched protocols unasked"))
                }
                if head.status < 200 { return .success(.interimHead(bytes)) }
                framing = HeadParser.responseFraming(head, requestWasHead: requestWasHead)
                body = BodyDecoder(framing, errorStatus: 502)
                return .success(.head(head, bytes))
            }
        }
        if !body!.isComplete {
            switch buffer.consumeBody(&body!) {
            case .failure(let error):
                input = nil
                return .failure(error)
            case .success(let n):
                if n > 0 {
                    let part = buffer.readSlice(length: n)!
                    keep(buffer)
                    return .success(.body(part))
                }
            }
        }
        if body!.isComplete {
            keep(buffer)
            return next()
        }
        assert(buffer.readableBytes == 0, "an incomplete body left bytes unconsumed")
        input = nil
        return .success(.needMore)
    }

    /// Holding on to a drained buffer would keep NIO from reusing its receive buffer (it reuses
    /// one only while nobody else references it) and cost a copy per read.
    @inline(__always) private mutating func keep(_ rest: ByteBuffer) {
        input = rest.readableBytes > 0 ? rest : nil
    }

    /// A 204 or 304, or an answer to HEAD, must not have a body (RFC 9110 §6.4.1); one that
    /// announces a chunked body, or a 204/304 with a non-zero Content-Length, may send it in a
    /// later packet, where nothing could tell it from the next response. Such a connection is
    /// closed after the response instead of reused. (A HEAD answer's Content-Length is the size
    /// the GET would have, so only chunking is suspicious there.)
    func announcesForbiddenBody(_ head: MessageHead) -> Bool {
        let noBodyStatus = head.status == 204 || head.status == 304
        guard noBodyStatus || requestWasHead else { return false }
        if head.chunked { return true }
        return noBodyStatus && (head.contentLength ?? 0) > 0
    }
}
