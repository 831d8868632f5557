import NIOCore
import XCTest
@testable import HTTP1Wire

/// The framer without sockets: messages fed whole, in two pieces split at every position and a
/// byte at a time must come out the same, with the same errors.
final class MessageFramerTests: XCTestCase {
    /// What a caller sees, with consecutive body parts joined (how the bytes were cut decides
    /// how many parts there are, not what they hold).
    enum Seen: Equatable {
        case head(String, BodyFraming)
        case body(String)
        case end
        case refused(Int)
    }

    /// Feeds `pieces` in order, taking every event after each. Responses answer GETs unless
    /// `toHead`: each response is then told it answers a HEAD.
    func frame(_ kind: HeadParser.Kind, _ pieces: [[UInt8]], toHead: Bool = false,
               options: HeadParser.Options? = nil) -> [Seen] {
        var framer = MessageFramer(kind, options: options ?? .defaults(for: kind))
        if kind == .response { framer.expectResponse(toHead: toHead) }
        var seen: [Seen] = []
        for piece in pieces {
            framer.append(ByteBuffer(bytes: piece))
            taking: while true {
                let event: MessageFramer.Event
                do throws(HTTPParseError) {
                    event = try framer.next()
                } catch {
                    seen.append(.refused(error.status))
                    return seen
                }
                switch event {
                case .head(let bytes):
                    let head = framer.head
                    XCTAssertEqual(head.length, bytes.readableBytes, "the head's bytes are the whole head")
                    seen.append(.head(String(buffer: bytes), framer.framing))
                case .body(let part):
                    XCTAssertGreaterThan(part.readableBytes, 0, "no empty body parts")
                    if case .body(let before) = seen.last {
                        seen[seen.count - 1] = .body(before + String(buffer: part))
                    } else {
                        seen.append(.body(String(buffer: part)))
                    }
                case .end:
                    seen.append(.end)
                    if kind == .response { framer.expectResponse(toHead: toHead) }
                case .needMore:
                    break taking
                }
            }
        }
        return seen
    }

    func whole(_ text: String) -> [[UInt8]] { [Array(text.utf8)] }
    func bytewise(_ text: String) -> [[UInt8]] { text.utf8.map { [$0] } }
    func split(_ text: String, at i: Int) -> [[UInt8]] {
        let b = Array(text.utf8)
        return [Array(b[..<i]), Array(b[i...])]
    }

    /// Whole, split in two at every position, and a byte at a time: all must give `expected`.
    func assertFramed(_ kind: HeadParser.Kind, _ text: String, toHead: Bool = false, _ expected: [Seen],
                      file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(frame(kind, whole(text), toHead: toHead), expected, "whole", file: file, line: line)
        XCTAssertEqual(frame(kind, bytewise(text), toHead: toHead), expected, "byte by byte", file: file, line: line)
        for i in 1..<text.utf8.count {
            XCTAssertEqual(frame(kind, split(text, at: i), toHead: toHead), expected, "split at \(i)", file: file, line: line)
        }
    }

    let get = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    let postLength = "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
    let postChunked = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    let chunkedBody = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 11\r\nY:\r\n\r\n"

    func testPipelinedRequests() {
        assertFramed(.request, get + postLength + "hello" + postChunked + chunkedBody + get, [
            .head(get, .none), .end,
            .head(postLength, .contentLength(5)), .body("hello"), .end,
            .head(postChunked, .chunked), .body(chunkedBody), .end,
            .head(get, .none), .end,
        ])
    }

    func testChunkedWithTrailersSplitAnywhere() {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        let next = "HTTP/1.1 204 No Content\r\n\r\n"
        assertFramed(.response, head + chunkedBody + next, [
            .head(head, .chunked), .body(chunkedBody), .end, .head(next, .none), .end,
        ])
    }

    func testContentLengthBodyEndsAtItsLength() {
        let response = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
        assertFramed(.response, response + "abc" + response + "def", [
            .head(response, .contentLength(3)), .body("abc"), .end,
            .head(response, .contentLength(3)), .body("def"), .end,
        ])
        let empty = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        assertFramed(.response, empty, [.head(empty, .none), .end])
    }

    /// A HEAD answer announces the length a GET would get and sends no body: what follows it is
    /// the next response.
    func testResponseToHeadHasNoBody() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
        assertFramed(.response, head + head, toHead: true, [.head(head, .none), .end, .head(head, .none), .end])
        // Told once, for one response only: the next answers a GET again.
        var framer = MessageFramer(.response)
        framer.expectResponse(toHead: true)
        framer.append(ByteBuffer(string: head + head + "0123456789"))
        XCTAssertEqual(try kinds(&framer), ["head", "end", "head", "body", "end", "needMore"])
    }

    func testNoBodyStatuses() {
        let noContent = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
        let notModified = "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"
        assertFramed(.response, noContent + notModified + noContent, [
            .head(noContent, .none), .end, .head(notModified, .none), .end, .head(noContent, .none), .end,
        ])
    }

    func testInterimHeadsComeBeforeTheFinalHead() throws {
        let continued = "HTTP/1.1 100 Continue\r\n\r\n"
        let hints = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        let final = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
        assertFramed(.response, continued + hints + final + "ok", [
            .head(continued, .none), .head(hints, .none), .head(final, .contentLength(2)), .body("ok"), .end,
        ])
        var framer = MessageFramer(.response)
        framer.append(ByteBuffer(string: continued + final))
        guard case .head = try framer.next() else { return XCTFail("no interim head") }
        XCTAssertTrue(framer.head.isInterim)
        XCTAssertFalse(framer.isInsideMessage, "an interim head opens no message: a close now is before the response")
        guard case .head = try framer.next() else { return XCTFail("no final head") }
        XCTAssertFalse(framer.head.isInterim)
        XCTAssertTrue(framer.isInsideMessage)
    }

    func testBodyUntilCloseEndsOnlyAtClose() throws {
        let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
        assertFramed(.response, head + "abc\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", [
            .head(head, .untilClose), .body("abc\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"),
        ])
        var framer = MessageFramer(.response)
        framer.append(ByteBuffer(string: head + "abc"))
        _ = try framer.next()
        XCTAssertTrue(framer.endsAtClose)
        _ = try framer.next()
        XCTAssertTrue(framer.isInsideMessage && framer.endsAtClose, "a close is the body's end")
        guard case .needMore = try framer.next() else { return XCTFail() }

        var counted = MessageFramer(.response)
        counted.append(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"))
        XCTAssertEqual(try kinds(&counted), ["head", "body", "needMore"])
        XCTAssertTrue(counted.isInsideMessage && !counted.endsAtClose, "a close cuts this body off")
    }

    func testErrorsCarryTheStatusToAnswer() {
        // Messages before the error are framed first.
        XCTAssertEqual(frame(.request, whole(get + postChunked + "5\r\nhello\r\nzz\r\n")),
                       [.head(get, .none), .end, .head(postChunked, .chunked), .refused(400)])
        for pieces in [whole(postChunked + "5x\r\n"), bytewise(postChunked + "5x\r\n")] {
            XCTAssertEqual(frame(.request, pieces).last, .refused(400), "bad chunk size")
        }
        let chunkedResponse = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        XCTAssertEqual(frame(.response, whole(chunkedResponse + "zz\r\n")),
                       [.head(chunkedResponse, .chunked), .refused(502)], "an upstream's bad chunk is a 502")
        XCTAssertEqual(frame(.request, whole("GET / HTTP/1.1\nHost: x\n")), [.refused(400)], "bare LF")
        XCTAssertEqual(frame(.request, whole("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")), [.refused(501)])
        XCTAssertEqual(frame(.response, whole("HTTP/1.1 2000 OK\r\n\r\n")), [.refused(502)])
        let small = HeadParser.Options(maxHeadBytes: 32)
        XCTAssertEqual(frame(.request, bytewise("GET /a HTTP/1.1\r\nX-Long: " + String(repeating: "a", count: 40)), options: small),
                       [.refused(431)], "refused once past the limit, before the head ends")
        XCTAssertEqual(frame(.response, whole("HTTP/1.1 200 OK\r\nX-Long: " + String(repeating: "a", count: 40)), options: small),
                       [.refused(502)])
    }

    /// Each byte of a head arriving in pieces is scanned for the head's end once: the framer
    /// resumes where the last piece ended.
    func testAHeadInPiecesIsScannedOnce() throws {
        var framer = MessageFramer(.request)
        for (i, byte) in postLength.utf8.dropLast().enumerated() {
            framer.append(ByteBuffer(bytes: [byte]))
            guard case .needMore = try framer.next() else { return XCTFail("a head before its end at \(i)") }
            XCTAssertEqual(framer.headBytesScanned, framer.bufferedBytes, "after byte \(i)")
        }
        framer.append(ByteBuffer(string: "\nhello"))
        guard case .head = try framer.next() else { return XCTFail("no head") }
        XCTAssertEqual(framer.headBytesScanned, 0, "the next head starts its own scan")
        XCTAssertEqual(try kinds(&framer), ["body", "end", "needMore"])
    }

    /// A caller takes one message at a time: what it does not ask for stays buffered, counted,
    /// until it asks or drops it.
    func testUnreadMessagesStayBufferedUntilAskedFor() throws {
        var framer = MessageFramer(.request)
        framer.append(ByteBuffer(string: postLength + "hel"))
        guard case .head = try framer.next() else { return XCTFail() }
        XCTAssertEqual(framer.bufferedBytes, 3, "the body waits while the caller does something else")
        framer.append(ByteBuffer(string: "lo" + get))
        XCTAssertEqual(try kinds(&framer, upTo: "end"), ["body", "end"])
        XCTAssertEqual(framer.bufferedBytes, get.utf8.count, "the next request waits for the caller")
        XCTAssertFalse(framer.isInsideMessage)
        framer.reset()
        XCTAssertEqual(framer.bufferedBytes, 0)
        guard case .needMore = try framer.next() else { return XCTFail("reset dropped the buffered request") }
    }

    /// Heads and body parts are slices of the buffer read; a buffer taken to its end is let go,
    /// so the next read is kept as it comes instead of being copied behind it.
    func testSlicesOfTheBufferReadAreNotCopies() throws {
        func address(_ b: ByteBuffer) -> UnsafeRawPointer? { b.withUnsafeReadableBytes { $0.baseAddress } }
        var framer = MessageFramer(.request)
        for _ in 0..<2 {
            let read = ByteBuffer(string: postLength + "hello")
            framer.append(read)
            guard case .head(let headBytes) = try framer.next(), case .body(let body) = try framer.next() else {
                return XCTFail()
            }
            XCTAssertEqual(address(headBytes), address(read))
            XCTAssertEqual(address(body), address(read)! + postLength.utf8.count)
            guard case .end = try framer.next() else { return XCTFail() }
            XCTAssertEqual(framer.bufferedBytes, 0)
        }
    }

    func testARequestWithoutBodyEndsWithoutMoreBytes() throws {
        var framer = MessageFramer(.request)
        framer.append(ByteBuffer(string: get))
        XCTAssertEqual(try kinds(&framer), ["head", "end", "needMore"])
        XCTAssertEqual(framer.bufferedBytes, 0)
    }

    /// The events' names up to and including `last` (default: until `.needMore`).
    func kinds(_ framer: inout MessageFramer, upTo last: String = "needMore") throws -> [String] {
        var out: [String] = []
        while out.last != last && out.count < 100 {
            switch try framer.next() {
            case .head: out.append("head")
            case .body: out.append("body")
            case .end: out.append("end")
            case .needMore: out.append("needMore")
            }
            if out.last == "needMore" { break }
        }
        return out
    }
    /// A chunk-size line or a trailer section goes out only once it is complete: one that turns
    /// out malformed (here a trailer past the 16 KiB limit, an extension past 4 KiB) has none of
    /// its bytes handed on, however the bytes arrive.
    func testFramingLinesAreHeldUntilComplete() {
        let head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        let good = head + "5\r\nhello\r\n0\r\nX-T: y\r\n\r\n"
        for pieces in [whole(good), bytewise(good)] + (head.utf8.count..<good.utf8.count).map({ split(good, at: $0) }) {
            XCTAssertEqual(frame(.request, pieces), [.head(head, .chunked), .body("5\r\nhello\r\n0\r\nX-T: y\r\n\r\n"), .end])
        }
        let longTrailer = head + "5\r\nhello\r\n0\r\nX: " + String(repeating: "a", count: 20_000) + "\r\n\r\n"
        let longExtension = head + "5;" + String(repeating: "e", count: 5000) + "\r\nhello\r\n0\r\n\r\n"
        for text in [longTrailer, longExtension] {
            for pieces in [whole(text), split(text, at: head.utf8.count + 20), split(text, at: head.utf8.count + 4000)] {
                let seen = frame(.request, pieces)
                XCTAssertEqual(seen.last, .refused(400))
                for case .body(let part) in seen {
                    XCTAssertFalse(part.contains("aaaa") || part.contains("eeee"), "malformed framing handed on: \(part.prefix(40))")
                }
            }
        }
    }
}
