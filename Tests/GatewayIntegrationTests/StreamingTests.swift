import Foundation
import GatewayCore
import NIOPosix
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A plain-socket upstream that answers one chunked response in two steps: a first chunk, then,
/// once `release()` is called, a large chunk and the terminator.
final class SteppedUpstream: @unchecked Sendable {
    let listenFD: Int32
    let port: Int
    private let released = DispatchSemaphore(value: 0)
    let largeChunk: String

    init(largeChunkBytes: Int) throws {
        largeChunk = String(repeating: "0123456789abcdef", count: largeChunkBytes / 16)
        let (listenFD, port) = try listenOnLoopback()
        self.listenFD = listenFD
        self.port = port
        let fd = listenFD
        let large = largeChunk
        let released = released
        Thread {
            let c = accept(fd, nil, nil)
            guard c >= 0 else { return }
            defer { close(c) }
            var request = [UInt8](repeating: 0, count: 4096)
            _ = recv(c, &request, request.count, 0)
            Self.send(c, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            released.wait()
            Self.send(c, String(large.utf8.count, radix: 16) + "\r\n" + large + "\r\n0\r\n\r\n")
            Thread.sleep(forTimeInterval: 1)
        }.start()
    }

    func release() { released.signal() }

    deinit { close(listenFD) }

    private static func send(_ fd: Int32, _ s: String) {
        let bytes = Array(s.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }
}

final class StreamingTests: XCTestCase {
    /// Response bytes are coalesced per upstream read, never held until the response ends: the
    /// first chunk reaches the client while the upstream is still silent, and a body larger than
    /// any coalescing buffer arrives intact.
    func testResponseIsStreamedAndArrivesIntact() async throws {
        let upstream = try SteppedUpstream(largeChunkBytes: 300 * 1024)
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("stream", ports: [upstream.port])],
            routes: [TestConfig.route("/stream", to: "stream")]))
        let c = try RawConnection(port: gw.port, timeout: 5)
        c.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertTrue(c.waitFor("first"), "the first chunk must arrive before the upstream sends the rest")
        upstream.release()
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, "first" + upstream.largeChunk)
        await gw.stop()
    }

    /// A client that asked to close gets the whole answer before the close, even when the answer
    /// is far larger than the socket buffers and the client is slow to take it: the close waits
    /// for every queued byte (closing at once would drop what NIO still holds).
    func testCloseAfterALargeAnswerToASlowClientLosesNothing() async throws {
        // Past what loopback socket buffers hold (they grow to a few MiB), so NIO holds the rest.
        let body = String(repeating: "0123456789abcdef", count: 16 * 1024 * 1024 / 16)
        let upstream = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: body))
        defer { upstream.close() }
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("big", ports: [upstream.port])],
            routes: [TestConfig.route("/big", to: "big")]))
        for version in ["HTTP/1.1", "HTTP/1.0"] {
            let c = try RawConnection(port: gw.port, timeout: 10)
            c.send("GET /big \(version)\r\nHost: x\r\nConnection: close\r\n\r\n")
            // The gateway has the whole answer long before the client reads a byte of it.
            try await Task.sleep(nanoseconds: 1_000_000_000)
            let r = try XCTUnwrap(c.readResponse(), version)
            XCTAssertEqual(r.status, 200, version)
            XCTAssertEqual(r.body.utf8.count, body.utf8.count, version)
            XCTAssertTrue(r.body == body, version)
            XCTAssertTrue(c.isClosedByPeer(), "\(version): the connection closes after the answer")
        }
        await gw.stop()
    }
}
