import Atomics
import Foundation
import GatewayCore
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Envoy's flow control: a side that cannot keep up stops the gateway reading the other side,
/// so a slow client (or upstream) is not answered by buffering the whole body in the gateway.
/// Bodies are far larger than the kernel's socket buffers along the path (a few MiB each), so
/// the bytes the fast side got rid of show whether the gateway held back.
final class FlowControlTests: XCTestCase {
    static let bodyBytes = 256 << 20
    /// Socket buffers on the path (upstream, gateway both ways, client) hold far less than this.
    static let bound = 96 << 20

    /// A plain-socket peer on 127.0.0.1 (port from 0) that serves one connection with `serve`.
    final class PlainUpstream: @unchecked Sendable {
        let listenFD: Int32
        let port: Int
        let bytes = ManagedAtomic(0)
        let go = DispatchSemaphore(value: 0)

        init(serve: @escaping @Sendable (Int32, PlainUpstream) -> Void) throws {
            let (fd, port) = try listenOnLoopback()
            listenFD = fd
            self.port = port
            Thread { [self] in
                let c = accept(fd, nil, nil)
                guard c >= 0 else { return }
                serve(c, self)
                close(c)
            }.start()
        }

        deinit { close(listenFD) }
    }

    static func sendAll(_ fd: Int32, _ bytes: [UInt8], counting: ManagedAtomic<Int>? = nil) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            off += n
            counting?.wrappingIncrement(by: n, ordering: .relaxed)
        }
        return true
    }

    /// Reads until `count` bytes came or the peer stopped; returns how many came.
    static func drain(_ fd: Int32, _ count: Int, counting: ManagedAtomic<Int>? = nil) -> Int {
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var got = 0
        while got < count {
            let n = recv(fd, &chunk, min(chunk.count, count - got), 0)
            if n <= 0 { break }
            got += n
            counting?.wrappingIncrement(by: n, ordering: .relaxed)
        }
        return got
    }

    /// A /stats line whose name ends with `suffix` (the listener's counters carry a prefix).
    static func counter(_ gw: InProcessGateway, endingWith suffix: String) -> Int {
        for line in gw.admin("/stats").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].hasSuffix(suffix) { return Int(parts[1].trimmingCharacters(in: .whitespaces)) ?? 0 }
        }
        return 0
    }

    func testASlowClientHoldsTheUpstreamBack() async throws {
        let upstream = try PlainUpstream { c, me in
            var request = [UInt8](repeating: 0, count: 4096)
            _ = recv(c, &request, request.count, 0)
            let head = "HTTP/1.1 200 OK\r\ncontent-length: \(Self.bodyBytes)\r\n\r\n"
            guard Self.sendAll(c, Array(head.utf8)) else { return }
            let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
            for _ in 0..<(Self.bodyBytes >> 20) where Self.sendAll(c, chunk, counting: me.bytes) {}
        }
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("big", ports: [upstream.port])], routes: [TestConfig.route("/", to: "big")]))
        let client = try RawConnection(port: gw.port, timeout: 20)
        client.send("GET /download HTTP/1.1\r\nHost: x\r\n\r\n")

        // The client reads nothing for a while: the upstream must stall well short of the body.
        try await Task.sleep(for: .milliseconds(1500))
        let sentWhileStalled = upstream.bytes.load(ordering: .relaxed)
        XCTAssertGreaterThan(sentWhileStalled, 0)
        XCTAssertLessThan(sentWhileStalled, Self.bound, "the gateway kept reading although the client did not")
        XCTAssertGreaterThan(gw.stat("cluster.big.upstream_flow_control_paused_reading_total") ?? 0, 0)

        // Then it reads: everything arrives, and the upstream could send it all.
        var head = [UInt8]()
        var byte: UInt8 = 0
        while !head.suffix(4).elementsEqual([13, 10, 13, 10]), recv(client.fd, &byte, 1, 0) == 1 { head.append(byte) }
        XCTAssertTrue(String(decoding: head, as: UTF8.self).hasPrefix("HTTP/1.1 200"))
        XCTAssertEqual(Self.drain(client.fd, Self.bodyBytes), Self.bodyBytes)
        XCTAssertEqual(upstream.bytes.load(ordering: .relaxed), Self.bodyBytes)
        XCTAssertGreaterThan(gw.stat("cluster.big.upstream_flow_control_resumed_reading_total") ?? 0, 0)
        await gw.stop()
    }

    func testASlowUpstreamHoldsTheClientBack() async throws {
        let upstream = try PlainUpstream { c, me in
            var head = [UInt8]()
            var byte: UInt8 = 0
            while !head.suffix(4).elementsEqual([13, 10, 13, 10]), recv(c, &byte, 1, 0) == 1 { head.append(byte) }
            me.go.wait()  // the upstream is slow to take the body
            guard Self.drain(c, Self.bodyBytes, counting: me.bytes) == Self.bodyBytes else { return }
            _ = Self.sendAll(c, Array("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".utf8))
        }
        let gw = try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("slow", ports: [upstream.port])], routes: [TestConfig.route("/", to: "slow")]))
        let client = try RawConnection(port: gw.port, timeout: 20)
        let sent = ManagedAtomic(0)
        let uploaded = DispatchSemaphore(value: 0)
        let fd = client.fd
        Thread {
            _ = Self.sendAll(fd, Array("POST /upload HTTP/1.1\r\nHost: x\r\ncontent-length: \(Self.bodyBytes)\r\n\r\n".utf8))
            let chunk = [UInt8](repeating: UInt8(ascii: "y"), count: 1 << 20)
            for _ in 0..<(Self.bodyBytes >> 20) where Self.sendAll(fd, chunk, counting: sent) {}
            uploaded.signal()
        }.start()

        try await Task.sleep(for: .milliseconds(1500))
        let sentWhileStalled = sent.load(ordering: .relaxed)
        XCTAssertGreaterThan(sentWhileStalled, 0)
        XCTAssertLessThan(sentWhileStalled, Self.bound, "the gateway kept reading although the upstream did not")
        XCTAssertGreaterThan(Self.counter(gw, endingWith: "downstream_flow_control_paused_reading_total"), 0)

        upstream.go.signal()
        XCTAssertEqual(uploaded.wait(timeout: .now() + 30), .success)
        _ = waitUntil(30) { upstream.bytes.load(ordering: .relaxed) == Self.bodyBytes }
        XCTAssertEqual(upstream.bytes.load(ordering: .relaxed), Self.bodyBytes, "the whole body reached the upstream")
        let r = try XCTUnwrap(client.readResponse())
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, "ok")
        await gw.stop()
    }
}
