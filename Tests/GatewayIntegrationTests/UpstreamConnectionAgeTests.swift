import Atomics
import Foundation
import GatewayCore
import NIOCore
import NIOPosix
import XCTest

/// DestinationRule `tcp.maxConnectionDuration` and `tcp.idleTimeout` close pooled upstream
/// connections as Envoy's common_http_protocol_options do, seen from a real upstream that counts
/// the connections it accepts and the ones that close.
final class UpstreamConnectionAgeTests: XCTestCase {
    /// A gateway from the JSON a user writes, so the loader's mapping is part of what is tested.
    func gateway(upstream: TestUpstream, tcp: String = "{}", http: String = "{}") async throws -> InProcessGateway {
        let config = try ConfigLoader.decode(Array("""
            {"listener":{"address":"127.0.0.1","port":0},"admin":{"address":"127.0.0.1","port":0},
             "serviceEntries":[{"host":"svc","endpoints":[{"address":"127.0.0.1","port":\(upstream.port)}]}],
             "virtualServices":[{"http":[{"route":[{"destination":{"host":"svc"}}],"retries":{"attempts":0}}]}],
             "destinationRules":[{"host":"svc","trafficPolicy":{"connectionPool":{"tcp":\(tcp),"http":\(http)}}}]}
            """.utf8))
        return try await InProcessGateway(config)
    }

    func testIdleConnectionPastMaxConnectionDurationIsClosed() async throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let gw = try await gateway(upstream: up, tcp: #"{"maxConnectionDuration":"400ms"}"#)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/a")?.status, 200)
        XCTAssertEqual(up.connections.load(ordering: .relaxed), 1)
        // Idle and past its age: closed by the pool's sweep (every 250 ms), not reused.
        XCTAssertTrue(waitUntil(3) { up.closedConnections.load(ordering: .relaxed) == 1 }, "the idle connection was not closed")
        XCTAssertEqual(gw.stat("cluster.svc.upstream_cx_max_duration_reached"), 1)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/b")?.status, 200)
        XCTAssertEqual(up.connections.load(ordering: .relaxed), 2, "the next request needs a new connection")
        await gw.stop()
    }

    func testKeepAliveConnectionIsReusedWithoutMaxConnectionDuration() async throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let gw = try await gateway(upstream: up)
        let client = try RawConnection(port: gw.port)
        for _ in 0..<5 {
            client.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            XCTAssertEqual(client.readResponse()?.status, 200)
            usleep(200_000)
        }
        XCTAssertEqual(up.connections.load(ordering: .relaxed), 1)
        XCTAssertEqual(up.closedConnections.load(ordering: .relaxed), 0)
        XCTAssertEqual(gw.stat("cluster.svc.upstream_cx_max_duration_reached"), 0)
        await gw.stop()
    }

    /// A busy connection reaching its age finishes the request it carries, then closes.
    func testBusyConnectionFinishesItsResponseThenCloses() async throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(delay: .milliseconds(900)))
        defer { up.close() }
        let gw = try await gateway(upstream: up, tcp: #"{"maxConnectionDuration":"300ms"}"#)
        let r = httpRequest(port: gw.port, path: "/slow")
        XCTAssertEqual(r?.status, 200, "the request in flight is not cut off")
        XCTAssertEqual(r?.body, #"{"ok":true}"#)
        XCTAssertTrue(waitUntil(2) { up.closedConnections.load(ordering: .relaxed) == 1 }, "closed after its response")
        XCTAssertEqual(gw.stat("cluster.svc.upstream_cx_max_duration_reached"), 1)
        up.set { $0.delay = .zero }
        XCTAssertEqual(httpRequest(port: gw.port, path: "/b")?.status, 200)
        XCTAssertEqual(up.connections.load(ordering: .relaxed), 2)
        await gw.stop()
    }

    /// Requests one after the other for longer than the age: the connection is replaced along the
    /// way (a fixed-age rotation, as Envoy's), every request answered.
    func testConnectionsRotateUnderSteadyTraffic() async throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let gw = try await gateway(upstream: up, tcp: #"{"maxConnectionDuration":"500ms"}"#)
        // One client connection: one event loop, so one upstream pool.
        let client = try RawConnection(port: gw.port)
        let start = Date()
        var answered = 0
        while Date().timeIntervalSince(start) < 2.2 {
            client.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            if client.readResponse()?.status == 200 { answered += 1 }
            usleep(50_000)
        }
        let opened = up.connections.load(ordering: .relaxed)
        XCTAssertGreaterThan(answered, 10)
        // 2.2 s at 500 ms a connection: 4 to 6 connections (the sweep runs every 250 ms).
        XCTAssertTrue((4...6).contains(opened), "\(opened) connections for \(answered) requests")
        await gw.stop()
    }

    /// `tcp.idleTimeout` is the HTTP connection's idle timeout when `http.idleTimeout` is absent
    /// (Istio's mapping); `http.idleTimeout` wins when both are set.
    func testTCPIdleTimeoutClosesIdleUpstreamConnections() async throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let gw = try await gateway(upstream: up, tcp: #"{"idleTimeout":"300ms"}"#)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/a")?.status, 200)
        XCTAssertTrue(waitUntil(3) { up.closedConnections.load(ordering: .relaxed) == 1 }, "idle connection not closed")
        XCTAssertEqual(gw.stat("cluster.svc.upstream_cx_idle_timeout"), 1)
        await gw.stop()

        let up2 = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up2.close() }
        let gw2 = try await gateway(upstream: up2, tcp: #"{"idleTimeout":"300ms"}"#, http: #"{"idleTimeout":"1h"}"#)
        XCTAssertEqual(httpRequest(port: gw2.port, path: "/a")?.status, 200)
        usleep(1_000_000)
        XCTAssertEqual(up2.closedConnections.load(ordering: .relaxed), 0, "http.idleTimeout overrides tcp.idleTimeout")
        XCTAssertEqual(gw2.stat("cluster.svc.upstream_cx_idle_timeout"), 0)
        await gw2.stop()
    }
}
