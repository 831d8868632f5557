import Foundation
import GatewayCore
import NIOCore
import NIOPosix
import XCTest

final class ProxyingTests: XCTestCase {
    var upstream: TestUpstream!
    var gw: InProcessGateway!

    override func setUp() async throws {
        upstream = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("order", ports: [upstream.port])],
            routes: [TestConfig.route("/orders", to: "order")]))
    }

    override func tearDown() async throws {
        await gw.stop()
        upstream.close()
    }

    func testHeadersAreRewrittenAsEnvoyDoes() throws {
        let c = try RawConnection(port: gw.port)
        c.send("POST /orders?x=1 HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 10.0.0.9\r\nContent-Length: 5\r\n\r\nhello")
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.status, 200)
        XCTAssertNotNil(r.header("x-envoy-upstream-service-time"))
        XCTAssertNil(r.header("connection"), "the upstream's hop-by-hop header is not forwarded")
        let seen = try XCTUnwrap(upstream.seenRequests.first)
        XCTAssertEqual(seen.uri, "/orders?x=1")
        XCTAssertEqual(seen.body, "hello")
        let names = Set(seen.headers.map { $0.0.lowercased() })
        XCTAssertFalse(names.contains("keep-alive"))
        XCTAssertFalse(names.contains("connection"))
        XCTAssertEqual(seen.headers.first { $0.0.lowercased() == "x-forwarded-for" }?.1, "10.0.0.9, 127.0.0.1")
        let id = try XCTUnwrap(seen.headers.first { $0.0.lowercased() == "x-request-id" }?.1)
        XCTAssertEqual(id.count, 36)

        // keep-alive: a second request on the same connection
        c.send("GET /orders HTTP/1.1\r\nHost: shop\r\nx-request-id: abc\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.status, 200)
        XCTAssertEqual(upstream.seenRequests.last?.headers.first { $0.0.lowercased() == "x-request-id" }?.1, "abc")
    }

    /// Headers the client names in Connection are hop-by-hop (RFC 9110 §7.6.1); the client's
    /// X-Forwarded-Proto is replaced by the gateway's.
    func testConnectionOptionsAndForwardedProtoAreNotForwarded() throws {
        let c = try RawConnection(port: gw.port)
        c.send("GET /orders HTTP/1.1\r\nHost: shop\r\nX-Secret: s\r\nConnection: keep-alive, X-Secret\r\n"
            + "X-Forwarded-Proto: https\r\nX-Kept: k\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.status, 200)
        let seen = try XCTUnwrap(upstream.seenRequests.first)
        XCTAssertNil(seen.headers.first { $0.0.lowercased() == "x-secret" })
        XCTAssertEqual(seen.headers.filter { $0.0.lowercased() == "x-forwarded-proto" }.map(\.1), ["http"])
        XCTAssertEqual(seen.headers.first { $0.0.lowercased() == "x-kept" }?.1, "k")
    }

    func testChunkedRequestBodyIsStreamed() throws {
        let c = try RawConnection(port: gw.port)
        c.send("POST /orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        c.send("6;ext=1\r\n world\r\n0\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.status, 200)
        XCTAssertEqual(upstream.seenRequests.first?.body, "hello world")
    }

    /// Upstream is HTTP/1.1 whatever the client speaks: an HTTP/1.0 keep-alive client's requests
    /// share the pooled upstream connections like any other, and get HTTP/1.0 answers.
    func testHTTP10KeepAliveClientReusesTheUpstreamPool() throws {
        let c = try RawConnection(port: gw.port)
        for i in 0..<1000 {
            c.send("GET /orders/\(i) HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            let r = try XCTUnwrap(c.readResponse(), "request \(i)")
            XCTAssertEqual(r.status, 200)
            XCTAssertTrue(r.statusLine.hasPrefix("HTTP/1.0 "), r.statusLine)
            XCTAssertEqual(r.header("connection")?.lowercased(), "keep-alive")
            XCTAssertFalse(r.closed)
        }
        XCTAssertEqual(gw.stat("cluster.order.upstream_rq_total"), 1000)
        XCTAssertLessThanOrEqual(gw.stat("cluster.order.upstream_cx_total") ?? .max, 2,
                                 "a handful of upstream connections for 1,000 requests")
        let host = upstream.seenRequests.last?.headers.first { $0.0.lowercased() == "host" }?.1
        XCTAssertEqual(host, "order", "an HTTP/1.1 request needs a Host: the destination's when the client sent none")
    }

    func testHTTP10ClientWithoutKeepAliveGetsAnHTTP10AnswerAndAClose() throws {
        for _ in 0..<3 {
            let c = try RawConnection(port: gw.port)
            c.send("GET /orders/1 HTTP/1.0\r\nHost: shop.example\r\n\r\n")
            let r = try XCTUnwrap(c.readResponse())
            XCTAssertEqual(r.status, 200)
            XCTAssertTrue(r.statusLine.hasPrefix("HTTP/1.0 200"), r.statusLine)
            XCTAssertEqual(r.header("connection")?.lowercased(), "close")
            XCTAssertTrue(c.isClosedByPeer())
        }
        // One pooled connection per event loop at most (the gateway runs two), not one per client.
        XCTAssertLessThanOrEqual(gw.stat("cluster.order.upstream_cx_total") ?? .max, 2,
                                 "the upstream connections outlive each client's")
        XCTAssertEqual(upstream.seenRequests.last?.headers.first { $0.0.lowercased() == "host" }?.1, "shop.example")
    }

    /// Pipelined requests go upstream one after another, each on the connection the one before
    /// it used (as HAProxy does): the next starts once the read that ended the previous response
    /// is over and its connection is back in the pool. Started inside that read, it found the
    /// connection still busy and a pipelining client kept two upstream connections.
    func testPipelinedRequestsShareOneUpstreamConnection() throws {
        let c = try RawConnection(port: gw.port)
        c.send((0..<16).map { "GET /orders/\($0) HTTP/1.1\r\nHost: shop\r\n\r\n" }.joined())
        for i in 0..<16 {
            let r = try XCTUnwrap(c.readResponse(), "response \(i)")
            XCTAssertEqual(r.status, 200)
            XCTAssertFalse(r.closed)
        }
        XCTAssertEqual(upstream.seenRequests.map(\.uri), (0..<16).map { "/orders/\($0)" })
        XCTAssertEqual(gw.stat("cluster.order.upstream_rq_total"), 16)
        XCTAssertEqual(gw.stat("cluster.order.upstream_cx_total"), 1, "one upstream connection for a pipelining client")
    }

    func testNoRouteIs404() {
        let r = httpRequest(port: gw.port, path: "/nothing")
        XCTAssertEqual(r?.status, 404)
        XCTAssertEqual(upstream.requests.load(ordering: .relaxed), 0)
    }

    func testMalformedRequestsAreRefusedAndNeverReachTheUpstream() throws {
        let cases: [(String, [UInt8])] = [
            ("garbage request line", Array("HELLO THERE\r\n\r\n".utf8)),
            ("CL with TE", Array("POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".utf8)),
            ("two Content-Lengths", Array("POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".utf8)),
            ("200 KB header", Array("GET /orders HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 200_000))\r\n\r\n".utf8)),
            ("bad chunk size", Array("POST /orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".utf8)),
            ("space before colon", Array("GET /orders HTTP/1.1\r\nHost : x\r\n\r\n".utf8)),
        ]
        for (name, bytes) in cases {
            let c = try RawConnection(port: gw.port, timeout: 5)
            c.send(bytes)
            if let r = c.readResponse() {
                XCTAssert((400..<500).contains(r.status), "\(name): got \(r.status)")
            }
            XCTAssertTrue(c.isClosedByPeer(), "\(name): the connection is closed")
        }
        XCTAssertEqual(upstream.requests.load(ordering: .relaxed), 0, "nothing reached the upstream")
        XCTAssertEqual(httpRequest(port: gw.port, path: "/orders")?.status, 200, "the gateway keeps serving")
    }

    func testHalfSentRequestDoesNotBlockOthers() throws {
        let stuck = try RawConnection(port: gw.port)
        stuck.send("POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        let stuckHead = try RawConnection(port: gw.port)
        stuckHead.send("GET /orders HTTP/1.1\r\nHost: x\r\n")
        for _ in 0..<5 { XCTAssertEqual(httpRequest(port: gw.port, path: "/orders", timeout: 2)?.status, 200) }
    }

    /// An upstream that answers before the request body is all sent must not get its
    /// connection back into the pool: the rest of the body would be read as the next request.
    func testEarlyAnswerDoesNotPoisonThePooledConnection() throws {
        upstream.set { $0.answerBeforeBody = true }
        let c = try RawConnection(port: gw.port, timeout: 3)
        c.send("POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nonly ten b")
        let early = c.readResponse()
        XCTAssertEqual(early?.status, 200)
        XCTAssertEqual(early?.body, "early")
        upstream.set { $0.answerBeforeBody = false }
        for _ in 0..<3 {
            XCTAssertEqual(httpRequest(port: gw.port, path: "/orders", timeout: 3)?.status, 200)
        }
    }
}
