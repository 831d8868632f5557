import HTTP1Wire
import NIOCore
import XCTest
@testable import GatewayCore

final class HeadParserTests: XCTestCase {
    func parse(_ s: String, _ kind: HeadParser.Kind = .request) -> Result<MessageHead?, HTTPParseError> {
        ByteBuffer(string: s).parseHead(kind)
    }

    func head(_ s: String, _ kind: HeadParser.Kind = .request) throws -> MessageHead {
        guard case .success(let h?) = parse(s, kind) else { XCTFail("no head for \(s)"); throw HTTPParseError(0, "") }
        return h
    }

    func status(_ s: String) -> Int? {
        if case .failure(let e) = parse(s) { return e.status }
        return nil
    }

    func testRequestFacts() throws {
        let text = "POST /orders?x=1 HTTP/1.1\r\nHost: shop:8080\r\nContent-Length: 12\r\nX-Request-Id: r1\r\n\r\n"
        let h = try head(text)
        XCTAssertEqual(h.length, text.utf8.count)
        XCTAssertEqual(h.contentLength, 12)
        XCTAssertEqual(h.minorVersion, 1)
        XCTAssertTrue(h.keepAlive)
        XCTAssertFalse(h.needsLineRewrite)
        let bytes = Array(text.utf8)
        XCTAssertEqual(String(decoding: bytes[h.target], as: UTF8.self), "/orders?x=1")
        XCTAssertEqual(String(decoding: bytes[h.requestID!], as: UTF8.self), "r1")
        XCTAssertEqual(HeadParser.requestFraming(h), .contentLength(12))
    }

    func testIncompleteHeadWaits() {
        guard case .success(nil) = parse("GET / HTTP/1.1\r\nHost: x\r\n") else { return XCTFail() }
    }

    func testConnectionHeaders() throws {
        XCTAssertFalse(try head("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keepAlive)
        XCTAssertFalse(try head("GET / HTTP/1.0\r\n\r\n").keepAlive)
        let ka = try head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        XCTAssertTrue(ka.keepAlive)
        XCTAssertTrue(ka.needsLineRewrite, "hop-by-hop lines are removed before forwarding")
    }

    func testSmugglingAndGarbageAreRefused() {
        XCTAssertEqual(status("HELLO\r\n\r\n"), 400)
        XCTAssertEqual(status("GET / HTTP/2.0\r\n\r\n"), 505)
        XCTAssertEqual(status("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), 400)
        XCTAssertEqual(status("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"), 400)
        XCTAssertEqual(status("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400)
        XCTAssertEqual(status("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), 501)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\n folded\r\n\r\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 70_000) + "\r\n\r\n"), 431)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 70_000)), 431, "refused before the end arrives")
        XCTAssertEqual(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n"), 400,
                       "a list of lengths is refused, as Envoy does, even when the values agree")
    }

    // MARK: strict request framing (RFC 9112 §6, RFC 9110 §8.6)

    func post(_ lines: String...) -> String {
        "POST / HTTP/1.1\r\nHost: x\r\n" + lines.map { $0 + "\r\n" }.joined() + "\r\n"
    }

    func testOnlyTheSingleTokenChunkedFramesARequest() throws {
        XCTAssertEqual(HeadParser.requestFraming(try head(post("Transfer-Encoding: chunked"))), .chunked)
        XCTAssertEqual(HeadParser.requestFraming(try head(post("Transfer-Encoding: CHUNKED \t"))), .chunked,
                       "case-insensitive, surrounding whitespace trimmed")
        // Lists and repeats: refused even where the last coding is chunked.
        for te in ["identity, chunked", "gzip, chunked", "chunked, chunked", ", chunked", "chunked,", "chunked , "] {
            XCTAssertEqual(status(post("Transfer-Encoding: \(te)")), 400, te)
        }
        XCTAssertEqual(status(post("Transfer-Encoding: chunked", "Transfer-Encoding: chunked")), 400)
        XCTAssertEqual(status(post("Transfer-Encoding: identity", "Transfer-Encoding: chunked")), 400)
        // One unknown coding: not implemented.
        for te in ["gzip", "xchunked", "chunkedx", "identity"] {
            XCTAssertEqual(status(post("Transfer-Encoding: \(te)")), 501, te)
        }
        // Not a token at all.
        for te in ["chunked;x", "\"chunked\"", "chunked\u{0B}", "\u{0B}chunked", "chun\u{0}ked", "chunked\u{0C}", ""] {
            XCTAssertEqual(status(post("Transfer-Encoding: \(te)")), 400, te.debugDescription)
        }
    }

    func testContentLengthIsOneLineOfDigits() throws {
        XCTAssertEqual(try head(post("Content-Length: 005")).contentLength, 5)
        XCTAssertEqual(try head(post("Content-Length:\t7 ")).contentLength, 7)
        for cl in ["5, 5", "5,", ",5", "5 5", "+5", "-5", "0x5", "", "5;", "1234567890123456", "99999999999999999999"] {
            XCTAssertEqual(status(post("Content-Length: \(cl)")), 400, cl)
        }
        XCTAssertEqual(status(post("Content-Length: 5", "Content-Length: 5")), 400, "a repeat is refused even when equal")
        XCTAssertEqual(status(post("Content-Length: 5", "Content-Length: 6")), 400)
    }

    func testConnectionMustNotNameTheFramingHeaders() {
        XCTAssertEqual(status(post("Connection: content-length", "Content-Length: 5")), 400)
        XCTAssertEqual(status(post("Connection: close, Transfer-Encoding", "Transfer-Encoding: chunked")), 400)
        XCTAssertEqual(status(post("Connection: host")), 400)
    }

    func testBareLineFeedsAreRefusedWithoutWaitingForMore() {
        // Incomplete heads: today's bytes already prove the message malformed.
        XCTAssertEqual(status("GET / HTTP/1.1\nHost: x\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: x\nX: y"), 400)
        XCTAssertEqual(status("\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: x\r\n\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\nHost: x\r\n\r\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n"), 400, "bare CR")
    }

    func testHTTP11RequestNeedsOneValidHost() throws {
        XCTAssertEqual(status("GET / HTTP/1.1\r\n\r\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n"), 400)
        XCTAssertNotNil(try head("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").host)
        XCTAssertNotNil(try head("GET / HTTP/1.1\r\nHost: \r\n\r\n").host, "an empty Host is allowed (RFC 9112 §3.2)")
        XCTAssertNil(try head("GET / HTTP/1.0\r\n\r\n").host, "HTTP/1.0 needs no Host")
    }

    func testRequestTargetForms() throws {
        XCTAssertNotNil(try head("GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n"))
        XCTAssertNotNil(try head("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"))
        XCTAssertEqual(status("GET * HTTP/1.1\r\nHost: x\r\n\r\n"), 400)
        XCTAssertEqual(status("GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n"), 400)
        XCTAssertEqual(status("GET x:80 HTTP/1.1\r\nHost: x\r\n\r\n"), 400)
        XCTAssertEqual(status("OPTIONS *x HTTP/1.1\r\nHost: x\r\n\r\n"), 400)
        XCTAssertEqual(status("CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"), 501)
        XCTAssertEqual(status("GET /a HTTP/1.1 \r\nHost: x\r\n\r\n"), 400)
        XCTAssertEqual(status("GET /a HTTP/1.10\r\nHost: x\r\n\r\n"), 400)
        XCTAssertEqual(status("GET /caf\u{E9} HTTP/1.1\r\nHost: x\r\n\r\n"), 400, "raw non-ASCII in the target")
        XCTAssertEqual(status("GET /a\u{7F} HTTP/1.1\r\nHost: x\r\n\r\n"), 400)
    }

    func testHeaderNamesWithUnderscoresAreRefusedInRequestsOnly() throws {
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: x\r\nX_Y: 1\r\n\r\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: x\r\nContent_Length: 1\r\n\r\n"), 400)
        XCTAssertNotNil(try head("HTTP/1.1 200 OK\r\nX_Y: 1\r\nContent-Length: 0\r\n\r\n", .response))
    }

    func testTooManyHeadersIs431() throws {
        let lines = (0..<99).map { "X-\($0): v\r\n" }.joined()
        XCTAssertNotNil(try head("GET / HTTP/1.1\r\nHost: x\r\n" + lines + "\r\n"), "100 header lines are allowed")
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: x\r\nX-a: v\r\n" + lines + "\r\n"), 431)
    }

    func testParserOptions() throws {
        let underscore = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\nX_Y: 1\r\n\r\n")
        guard case .success(let h?) = underscore.parseHead(.request, options: .init(headersWithUnderscores: .allow)) else {
            return XCTFail("allowed underscores are refused")
        }
        XCTAssertEqual(h.headerCount, 2)
        guard case .failure(let e) = underscore.parseHead(.request, options: .requestDefaults) else { return XCTFail() }
        XCTAssertEqual(e.status, 400)

        let small = HeadParser.Options(maxHeadBytes: 40, maxHeadersCount: 2)
        func status(_ s: String, _ kind: HeadParser.Kind = .request) -> Int? {
            if case .failure(let e) = ByteBuffer(string: s).parseHead(kind, options: small) { return e.status }
            return nil
        }
        XCTAssertNil(status("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\n\r\n"), "two header lines, 33 bytes")
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n"), 431, "three header lines")
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: x\r\nAbcdefghij: 1\r\n\r\n"), 431, "42 bytes")
        XCTAssertEqual(status("GET / HTTP/1.1\r\nHost: x\r\nAbcdefghijklmnopqrst"), 431, "45 bytes and no end yet")
        XCTAssertNil(status("GET / HTTP/1.1\r\nHost: x\r\nAbcdefghijklmno"), "40 bytes and no end yet: wait")
        XCTAssertEqual(status("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", .response), 502)
        XCTAssertEqual(status("HTTP/1.1 200 OK\r\nAbcdefghijklmnopqrst: 1\r\n\r\n", .response), 502)
    }

    func testResponsesGetTheSameStrictnessWith502() throws {
        func responseStatus(_ s: String) -> Int? {
            if case .failure(let e) = parse(s, .response) { return e.status }
            return nil
        }
        XCTAssertEqual(responseStatus("HTTP/1.1 200 OK\nContent-Length: 0\n\n"), 502)
        XCTAssertEqual(responseStatus("HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n"), 502)
        XCTAssertEqual(responseStatus("HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n"), 502)
        XCTAssertEqual(responseStatus("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n"), 502)
        XCTAssertEqual(responseStatus("HTTP/1.1 200 OK\r\nX: a\u{0}b\r\n\r\n"), 502)
        XCTAssertEqual(responseStatus("HTTP/1.1 200 OK\r\nX : a\r\n\r\n"), 502)
        XCTAssertEqual(responseStatus("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), 502)
        XCTAssertEqual(responseStatus("HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 1\r\n\r\n"), 502)
        XCTAssertEqual(responseStatus("HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: 70_000)), 502)
        // Both lengths: chunked wins (RFC 9112 §6.3) and the Content-Length line is not forwarded.
        let both = try head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", .response)
        XCTAssertEqual(HeadParser.responseFraming(both, requestWasHead: false), .chunked)
        XCTAssertTrue(both.needsLineRewrite)
        // A final coding other than chunked: read until close.
        let gz = try head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nContent-Length: 5\r\n\r\n", .response)
        XCTAssertEqual(HeadParser.responseFraming(gz, requestWasHead: false), .untilClose)
    }

    func testResponseFraming() throws {
        let r = try head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", .response)
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(HeadParser.responseFraming(r, requestWasHead: false), .chunked)
        XCTAssertEqual(HeadParser.responseFraming(r, requestWasHead: true), .none)
        let close = try head("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", .response)
        XCTAssertEqual(HeadParser.responseFraming(close, requestWasHead: false), .untilClose)
        let noContent = try head("HTTP/1.1 204 No Content\r\n\r\n", .response)
        XCTAssertEqual(HeadParser.responseFraming(noContent, requestWasHead: false), .none)
    }

    func testHeaderLookupForRouteMatching() throws {
        let text = "GET / HTTP/1.1\r\nHost: x\r\nX-User:  alice \r\n\r\n"
        let h = try head(text)
        let v = ByteBuffer(string: text).withUnsafeReadableBytes { h.value(of: "x-user", in: $0) }
        XCTAssertEqual(v, "alice")
    }

    /// A head arriving a byte at a time is scanned once: each call resumes where the last one
    /// stopped, and the verdict is the one a single call on the whole head gives.
    func testAHeadParsedInPiecesResumesItsScan() throws {
        for text in ["GET /a HTTP/1.1\r\nHost: x\r\nA: 1\r\n\r\n", "GET /a HTTP/1.1\r\nHost: x\nA: 1\r\n\r\n"] {
            let bytes = Array(text.utf8)
            let whole = bytes.withUnsafeBytes { raw in Result { () throws(HTTPParseError) in try HeadParser.parse(raw, kind: .request) } }
            var scanned = 0
            var piecewise: Result<MessageHead?, HTTPParseError> = .success(nil)
            for n in 1...bytes.count {
                piecewise = bytes[0..<n].withUnsafeBytes { raw in
                    Result { () throws(HTTPParseError) in
                        try HeadParser.parse(raw, kind: .request, options: .requestDefaults, scanned: scanned)
                    }
                }
                if case .success(nil) = piecewise { scanned = n } else { break }
            }
            switch (whole, piecewise) {
            case (.success(let a?), .success(let b?)): XCTAssertEqual(a.length, b.length)
            case (.failure(let a), .failure(let b)): XCTAssertEqual(a, b)
            default: XCTFail("\(text.debugDescription): whole \(whole), in pieces \(piecewise)")
            }
        }
    }
}

final class BodyDecoderTests: XCTestCase {
    func feed(_ framing: BodyFraming, _ parts: [String]) -> (consumed: [Int], complete: Bool, error: HTTPParseError?) {
        var d = BodyDecoder(framing)
        var out: [Int] = []
        for p in parts {
            switch ByteBuffer(string: p).consumeBody(&d) {
            case .success(let n): out.append(n)
            case .failure(let e): return (out, d.isComplete, e)
            }
        }
        return (out, d.isComplete, nil)
    }

    func testContentLengthStopsAtTheBoundary() {
        let r = feed(.contentLength(5), ["hel", "loGET /next"])
        XCTAssertEqual(r.consumed, [3, 2])
        XCTAssertTrue(r.complete)
    }

    func testChunkedAcrossArbitrarySplits() {
        let body = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
        for split in 1..<body.utf8.count {
            let bytes = Array(body.utf8)
            let r = feed(.chunked, [String(decoding: bytes[..<split], as: UTF8.self), String(decoding: bytes[split...], as: UTF8.self)])
            XCTAssertNil(r.error, "split \(split)")
            XCTAssertTrue(r.complete, "split \(split)")
            XCTAssertEqual(r.consumed.reduce(0, +), bytes.count)
        }
    }

    func testChunkSizeLineIsDigitsThenExtensionOrCRLF() {
        for ok in ["5\r\nhello\r\n0\r\n\r\n", "5;a=b\r\nhello\r\n0\r\n\r\n", "5 ;a\r\nhello\r\n0\r\n\r\n",
                   "5\t; a = \"q\\\"x\"\r\nhello\r\n0;last\r\n\r\n", "5;a;b=\"\";c=d\r\nhello\r\n0\r\n\r\n",
                   "5;a=\"\u{80}\"\r\nhello\r\n0\r\n\r\n"] {
            let r = feed(.chunked, [ok])
            XCTAssertNil(r.error, ok.debugDescription)
            XCTAssertTrue(r.complete, ok.debugDescription)
        }
        for bad in ["5 6\r\nhello", "5\t6\r\nhello", "5 x\r\n", "5;a=\u{0}\r\n", "5;a\nhello", "5;a\u{7F}\r\n",
                    "5;a=\"b\rc\"\r\n", "5\r\r\n", "5;\u{0B}\r\n", "0;x\nGET / HTTP/1.1\r\n",
                    // the grammar: BWS only before ";" or "=", names are tokens, values tokens or quoted strings
                    "5 \r\n", "5;x \r\n", "5;x= \r\n", "5;x=y z\r\n", "5;a b\r\n", "5;=\r\n", "5;x=\r\n",
                    "5;x=\"a\r\n", "5;x=\"a\"b\r\n", "5;x=a\"\r\n", "5;(x)\r\n", "5;;\r\n"] {
            XCTAssertEqual(feed(.chunked, [bad]).error?.status, 400, bad.debugDescription)
        }
    }

    func testChunkExtensionsAreBounded() {
        let ext = String(repeating: "a", count: BodyDecoder.maxChunkExtensionBytes - 1)
        XCTAssertNil(feed(.chunked, ["5;" + ext + "\r\nhello\r\n0\r\n\r\n"]).error)
        XCTAssertEqual(feed(.chunked, ["5;" + ext + "aa"]).error?.status, 400, "refused as soon as the bound is passed")
    }

    func testTrailersAreFieldLinesEndedByCRLF() {
        XCTAssertTrue(feed(.chunked, ["0\r\nX-Sum: 1\r\nY:\r\n\r\n"]).complete)
        XCTAssertTrue(feed(.chunked, ["0\r\nContent-Lengthy: 1\r\nConnectio: 2\r\nTransfer-Encodin: 3\r\n\r\n"]).complete,
                      "names that only begin like a framing field are fine")
        XCTAssertTrue(feed(.chunked, ["0\r\nConn", "ection-Id: 1\r\n\r\n"]).complete)
        XCTAssertEqual(feed(.chunked, ["0\r\nConn", "ection: close\r\n\r\n"]).error?.status, 400, "across reads too")
        for bad in ["0\r\n\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", "0\r\nGET /smuggled HTTP/1.1\r\n\r\n",
                    "0\r\nX: a\n\r\n", "0\r\nX: a\u{0}\r\n\r\n", "0\r\nX: a\rb\r\n\r\n", "0\r\nX : a\r\n\r\n",
                    "0\r\nX: a\r\n b\r\n\r\n", "0\r\n: a\r\n\r\n", "0\r\nX\r\n\r\n", "0\r\n\r\r",
                    "0\r\nContent-Length: 5\r\n\r\n", "0\r\nX: 1\r\nTRANSFER-ENCODING: chunked\r\n\r\n",
                    "0\r\nConnection: close\r\n\r\n"] {
            XCTAssertEqual(feed(.chunked, [bad]).error?.status, 400, bad.debugDescription)
        }
        let big = "0\r\nX: " + String(repeating: "a", count: BodyDecoder.maxTrailerBytes) + "\r\n\r\n"
        XCTAssertEqual(feed(.chunked, [big]).error?.status, 400, "trailers are bounded")
        var d = BodyDecoder(.chunked, errorStatus: 502)
        XCTAssertThrowsError(try Array("0\r\n\nX".utf8).withUnsafeBytes { try d.consume($0) }) {
            XCTAssertEqual(($0 as? HTTPParseError)?.status, 502, "an upstream's malformed body is a 502")
        }
    }

    func testBadChunksAreRefused() {
        XCTAssertEqual(feed(.chunked, ["zz\r\n"]).error?.status, 400)
        XCTAssertEqual(feed(.chunked, ["5\r\nhelloXX"]).error?.status, 400)
        XCTAssertEqual(feed(.chunked, ["ffffffffffffffffff\r\n"]).error?.status, 400)
        XCTAssertEqual(feed(.chunked, ["\r\n"]).error?.status, 400)
    }
}

/// What goes onward: hop-by-hop lines and the headers the Connection header names are removed
/// (RFC 9110 §7.6.1), in both directions.
final class HeadWriterTests: XCTestCase {
    func forwarded(_ text: String, _ kind: HeadParser.Kind) throws -> String {
        let bytes = ByteBuffer(string: text)
        guard case .success(let head?) = bytes.parseHead(kind) else {
            XCTFail("not parsed: \(text.debugDescription)")
            return ""
        }
        var out = ByteBuffer()
        HeadWriter.copyWithoutHopByHop(head, from: bytes, into: &out)
        return String(buffer: out)
    }

    func testUnchangedHeadIsCopiedWhole() throws {
        let text = "GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"
        XCTAssertEqual(try forwarded(text, .request), "GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n")
    }

    func testHeadersNamedByConnectionAreRemovedFromRequests() throws {
        let out = try forwarded(
            "GET /a HTTP/1.1\r\nHost: x\r\nX-Secret: s\r\nConnection: close, X-Secret ,x-other\r\nX-Other: o\r\nX-Keep: k\r\nKeep-Alive: 5\r\n\r\n",
            .request)
        XCTAssertEqual(out, "GET /a HTTP/1.1\r\nHost: x\r\nX-Keep: k\r\n")
    }

    func testHeadersNamedByConnectionAreRemovedFromResponses() throws {
        let out = try forwarded(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nx-internal: 1\r\nContent-Length: 0\r\n\r\n", .response)
        XCTAssertEqual(out, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n")
    }

    func testClientForwardedProtoIsDropped() throws {
        let out = try forwarded("GET /a HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n", .request)
        XCTAssertEqual(out, "GET /a HTTP/1.1\r\nHost: x\r\n", "the gateway appends its own X-Forwarded-Proto and X-Forwarded-For")
    }

    func testResponseContentLengthBesideChunkedIsDropped() throws {
        let out = try forwarded("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nServer: s\r\n\r\n", .response)
        XCTAssertEqual(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nServer: s\r\n")
        let plain = try forwarded("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", .response)
        XCTAssertEqual(plain, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", "a lone Content-Length stays")
    }
}
