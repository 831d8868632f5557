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
        XCTAssertFalse(try head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keepAlive)
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
        XCTAssertNil(status("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n"), "a repeated equal length is allowed")
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
        let text = "GET / HTTP/1.1\r\nX-User:  alice \r\n\r\n"
        let h = try head(text)
        let v = ByteBuffer(string: text).withUnsafeReadableBytes { h.value(of: "x-user", in: $0) }
        XCTAssertEqual(v, "alice")
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

    func testBadChunksAreRefused() {
        XCTAssertEqual(feed(.chunked, ["zz\r\n"]).error?.status, 400)
        XCTAssertEqual(feed(.chunked, ["5\r\nhelloXX"]).error?.status, 400)
        XCTAssertEqual(feed(.chunked, ["ffffffffffffffffff\r\n"]).error?.status, 400)
        XCTAssertEqual(feed(.chunked, ["\r\n"]).error?.status, 400)
    }
}
