import Foundation
import GatewayCore
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A plain-socket upstream that answers every request head it reads with the same canned bytes,
/// then closes the connection.
final class CannedUpstream: Sendable {
    private let listener: LoopbackListener
    var port: Int { listener.port }

    init(_ response: String) throws {
        let bytes = Array(response.utf8)
        listener = try LoopbackListener { c in
            var request: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while !request.suffix(4).elementsEqual([13, 10, 13, 10]) {
                let n = recv(c, &chunk, chunk.count, 0)
                if n <= 0 { break }
                request += chunk[0..<n]
            }
            _ = FlowControlTests.sendAll(c, bytes)
            shutdown(c, Int32(SHUT_WR))
            Thread.sleep(forTimeInterval: 0.2)
            Glibc.close(c)
        }
    }

    func close() { listener.stop() }
}

/// The response side is framed as strictly as requests: what the gateway cannot frame exactly
/// never reaches the client as if it were a response.
final class ResponseFramingTests: XCTestCase {
    func exchange(_ response: String) async throws -> (RawResponse?, String) {
        let upstream = try CannedUpstream(response)
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("up", ports: [upstream.port])], routes: [TestConfig.route("/", to: "up")]))
        let c = try RawConnection(port: gw.port, timeout: 5)
        c.send("GET /x HTTP/1.1\r\nHost: shop\r\n\r\n")
        let r = c.readResponse()
        await gw.stop()
        upstream.close()
        return (r, response)
    }

    /// RFC 9112 §6.3: with both, chunked frames the message and the Content-Length line is
    /// not forwarded (a client that read it would cut the body short or wait for more).
    func testContentLengthBesideChunkedIsDropped() async throws {
        let (r, _) = try await exchange(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        let response = try XCTUnwrap(r)
        XCTAssertEqual(response.status, 200)
        XCTAssertNil(response.header("content-length"))
        XCTAssertEqual(response.body, "hello world")
    }

    func testHeadersNamedByTheUpstreamsConnectionAreDropped() async throws {
        let (r, _) = try await exchange(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nX-Internal: secret\r\nX-Public: p\r\nContent-Length: 2\r\n\r\nok")
        let response = try XCTUnwrap(r)
        XCTAssertEqual(response.status, 200)
        XCTAssertNil(response.header("x-internal"))
        XCTAssertEqual(response.header("x-public"), "p")
        XCTAssertEqual(response.body, "ok")
    }

    /// Malformed upstream heads are not passed on: the client gets the gateway's own 502 (Envoy's
    /// upstream protocol error, flag UPE).
    func testMalformedResponsesAreNotForwarded() async throws {
        for bad in [
            "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
            "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nX: a\u{0}b\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ] {
            let (r, _) = try await exchange(bad)
            let response = try XCTUnwrap(r, bad.debugDescription)
            XCTAssertEqual(response.status, 502, bad.debugDescription)
            XCTAssertTrue(response.body.hasPrefix("upstream protocol error: "), response.body)
            XCTAssertNil(response.header("x-envoy-upstream-service-time"), bad.debugDescription)
            XCTAssertNotEqual(response.body, "ok", bad.debugDescription)
        }
    }

    /// A protocol error is not retried, even under `retryOn: 5xx,reset`: another try would meet
    /// the same broken upstream.
    func testAProtocolErrorIsNotRetried() async throws {
        let up = try ScriptedUpstream { _, _ in [Array("HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok".utf8)] }
        let retries = RetryPolicyConfig(attempts: 3, perTryTimeout: nil, retryOn: [.fiveXX, .reset])
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("up", ports: [up.port])], routes: [TestConfig.route("/", to: "up", retries: retries)]))
        let r = try XCTUnwrap(httpRequest(port: gw.port, path: "/x"))
        XCTAssertEqual(r.status, 502)
        XCTAssertEqual(up.requests.load(ordering: .relaxed), 1)
        XCTAssertEqual(gw.stat("cluster.up.upstream_cx_protocol_error"), 1)
        XCTAssertEqual(gw.stat("cluster.up.upstream_rq_retry"), 0)
        await gw.stop()
    }

    /// A 204 must not carry Content-Length or Transfer-Encoding (RFC 9110 §8.6): a client that
    /// believed them would wait for a body that never comes.
    func testA204GoesOutWithoutFramingHeaders() async throws {
        let (r, _) = try await exchange("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\nX-Kept: k\r\n\r\n")
        let response = try XCTUnwrap(r)
        XCTAssertEqual(response.status, 204)
        XCTAssertNil(response.header("content-length"))
        XCTAssertEqual(response.header("x-kept"), "k")
    }

    /// An HTTP/1.0 client cannot read chunked coding: it gets the payload alone, ended by a close.
    func testAChunkedAnswerIsDechunkedForAnHTTP10Client() async throws {
        let up = try CannedUpstream(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kept: k\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("up", ports: [up.port])], routes: [TestConfig.route("/", to: "up")]))
        let c = try RawConnection(port: gw.port, timeout: 5)
        c.send("GET /x HTTP/1.0\r\nHost: shop\r\nConnection: keep-alive\r\n\r\n")
        let response = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(response.status, 200)
        XCTAssertNil(response.header("transfer-encoding"))
        XCTAssertEqual(response.header("x-kept"), "k")
        XCTAssertEqual(response.header("connection"), "close")
        XCTAssertEqual(response.body, "hello world")
        XCTAssertTrue(response.closed)
        await gw.stop()
        up.close()
    }
}
