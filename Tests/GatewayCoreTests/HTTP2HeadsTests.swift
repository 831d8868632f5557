import HTTP1Wire
import NIOCore
import NIOHPACK
import XCTest

@testable import GatewayCore

/// The HTTP/1.1 form of HTTP/2 heads. NIOHTTP2 checks request blocks before they get here; these
/// tests give the conversion blocks NIOHTTP2 would stop, because the HTTP/1.1 bytes must be
/// safe on their own (a CR or LF in a value would be a header line of its own upstream).
final class HTTP2HeadsTests: XCTestCase {
    func request(_ fields: [(String, String)], hasBody: Bool = false) throws(HTTPParseError) -> (String, Bool) {
        var out = ByteBuffer()
        let chunked = try HTTP2Heads.requestHead(HPACKHeaders(fields), hasBody: hasBody, into: &out)
        return (String(buffer: out), chunked)
    }

    let pseudo = [(":method", "GET"), (":scheme", "http"), (":authority", "shop.example"), (":path", "/a?b=1")]

    func testPseudoHeadersBecomeTheRequestLineAndHostAndCookiesAreJoined() throws {
        let (head, chunked) = try request(pseudo + [("cookie", "a=1"), ("accept", "*/*"), ("cookie", "b=2"), ("te", "trailers")])
        XCTAssertEqual(head, "GET /a?b=1 HTTP/1.1\r\nhost: shop.example\r\naccept: */*\r\ncookie: a=1; b=2\r\n\r\n")
        XCTAssertFalse(chunked)
        let parsed = try XCTUnwrap(ByteBuffer(string: head).parseHead(.request).get())
        XCTAssertEqual(parsed.length, head.utf8.count)
    }

    func testABodyWithoutContentLengthGoesChunkedAndOneWithItDoesNot() throws {
        let (head, chunked) = try request([(":method", "POST"), (":scheme", "http"), (":authority", "x"), (":path", "/")], hasBody: true)
        XCTAssertTrue(chunked)
        XCTAssertTrue(head.hasSuffix("transfer-encoding: chunked\r\n\r\n"), head)
        let (sized, sizedChunked) = try request([(":method", "POST"), (":scheme", "http"), (":authority", "x"), (":path", "/"),
                                                 ("content-length", "3")], hasBody: true)
        XCTAssertFalse(sizedChunked)
        XCTAssertFalse(sized.contains("transfer-encoding"), sized)
    }

    func testWhatRFC9113ForbidsIsRefused() {
        let refused: [[(String, String)]] = [
            pseudo + [("x-a", "1\r\nx-injected: 2")],
            pseudo + [("x-a", "1\nx")],
            pseudo + [("x-a", "nul\u{0}")],
            pseudo + [("connection", "close")],
            pseudo + [("transfer-encoding", "chunked")],
            pseudo + [("upgrade", "h2c")],
            pseudo + [("keep-alive", "1")],
            pseudo + [("te", "gzip")],
            pseudo + [("X-Upper", "1")],
            [(":method", "GET"), (":scheme", "http"), (":authority", "x")],
            [(":method", "GET"), (":authority", "x"), (":path", "/")],
            pseudo + [(":path", "/again")],
            pseudo + [(":status", "200")],
            [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/a b")],
            [(":method", "G T"), (":scheme", "http"), (":authority", "x"), (":path", "/")],
        ]
        for fields in refused {
            XCTAssertThrowsError(try request(fields), "\(fields)") { XCTAssertEqual(($0 as? HTTPParseError)?.status, 400) }
        }
    }

    func testResponseHeadsLoseHopByHopLinesAndNamesAreLowercased() throws {
        let text = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\n"
            + "Transfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\nX-End:  padded \r\n\r\n"
        let bytes = ByteBuffer(string: text)
        let head = try XCTUnwrap(bytes.parseHead(.response).get())
        let headers = HTTP2Heads.responseHeaders(head, bytes)
        XCTAssertEqual(headers.map { "\($0.name)=\($0.value)" }, [":status=200", "content-type=text/plain", "x-end=padded"])
    }
}
