import HTTP1Wire
import NIOCore
import NIOEmbedded
import XCTest
@testable import GatewayCore

/// WebSocket upgrades through the router filter, the upstream on an embedded channel.
final class UpgradeTunnelTests: XCTestCase {
    let upgradeRequest = "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    let switching = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"

    func route(timeout: TimeAmount? = nil) -> RouteConfig {
        RouteConfig(name: "r", destinations: [WeightedDestination(host: "svc")], timeout: timeout)
    }

    func testTheUpgradeGoesUpstreamAndA101MakesATunnel() throws {
        let h = try RouterHarness(route: route(timeout: .seconds(1)))
        let (stream, _) = try h.send(upgradeRequest)
        let sent = try h.connector.sent(0)
        XCTAssertTrue(sent.hasPrefix("GET /chat HTTP/1.1\r\n"), sent)
        XCTAssertTrue(sent.contains("connection: upgrade\r\nupgrade: websocket\r\n"), sent)
        XCTAssertTrue(sent.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), sent)
        XCTAssertFalse(sent.contains("Connection: Upgrade"), "the client's hop-by-hop lines are not copied")

        // The 101 and, in the same read, the server's first frame.
        try h.connector.respond(0, switching + "FRAME-1")
        XCTAssertEqual(stream.heads.last?.status, 101)
        let tunnel = try XCTUnwrap(stream.tunnel)
        XCTAssertEqual(stream.tunnelled, "FRAME-1", "bytes behind the 101 go to the client")

        // Past the route timeout: the handshake is over, the tunnel stays.
        h.loop.advanceTime(by: .seconds(2))
        XCTAssertFalse(tunnel.isOver)
        XCTAssertEqual(h.cluster.stats[.upstream_rq_timeout], 0)

        tunnel.received(ByteBuffer(string: "FRAME-2"), from: stream)
        tunnel.readComplete(from: stream)
        XCTAssertEqual(try h.connector.sent(0), "FRAME-2")
        try h.connector.respond(0, "FRAME-3")
        XCTAssertEqual(stream.tunnelled, "FRAME-1FRAME-3")

        // The upstream's connection stays an active request of its pool while the tunnel lives.
        XCTAssertEqual(h.cluster.resources.requests.current, 1)
        XCTAssertEqual(h.cluster.resources.connections.current, 1)

        // The upstream closes: the client's side is closed, the request ends (reset: the connection goes).
        try h.connector.channels[0].close().wait()
        XCTAssertTrue(tunnel.isOver)
        XCTAssertTrue(stream.tunnelClosed)
        XCTAssertEqual(stream.ended, [true])
        XCTAssertEqual(h.cluster.resources.requests.current, 0)
        XCTAssertEqual(h.cluster.resources.connections.current, 0)
    }

    func testTheClientClosingClosesTheUpstream() throws {
        let h = try RouterHarness(route: route())
        let (stream, _) = try h.send(upgradeRequest)
        try h.connector.respond(0, switching)
        let tunnel = try XCTUnwrap(stream.tunnel)
        tunnel.close(from: stream)
        XCTAssertFalse(h.connector.channels[0].isActive, "the upstream connection is closed")
        XCTAssertEqual(stream.ended, [true])
        XCTAssertEqual(h.cluster.resources.connections.current, 0)
    }

    func testARefusedUpgradeIsAnOrdinaryResponseOnAReusableConnection() throws {
        let h = try RouterHarness(route: route())
        let (stream, _) = try h.send(upgradeRequest)
        try h.connector.respond(0, "HTTP/1.1 426 Upgrade Required\r\ncontent-length: 4\r\n\r\nnope")
        XCTAssertEqual(stream.status, 426)
        XCTAssertEqual(stream.body, "nope")
        XCTAssertNil(stream.tunnel)
        XCTAssertEqual(stream.ended, [false])
        let (second, _) = try h.send()
        try h.connector.respond(0, ok)
        XCTAssertEqual(second.status, 200)
        XCTAssertEqual(h.connector.channels.count, 1, "the connection went back to the pool")
    }

    func testA101ToARequestThatDidNotAskIsAProtocolError() throws {
        let h = try RouterHarness(route: route())
        let (stream, _) = try h.send()
        try h.connector.respond(0, switching)
        XCTAssertEqual(stream.status, 502)
        XCTAssertNil(stream.tunnel)
    }

    func testA101ForAnotherProtocolIsAProtocolError() throws {
        let h = try RouterHarness(route: route())
        let (stream, _) = try h.send(upgradeRequest)
        try h.connector.respond(0, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
        XCTAssertEqual(stream.status, 502)
        XCTAssertNil(stream.tunnel)
    }

    func testOnlyAWebSocketUpgradeIsForwardedAsOne() throws {
        for (request, upgrade) in [
            (upgradeRequest, true),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", false),
            ("POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", false),
        ] {
            let h = try RouterHarness(route: route())
            try h.send(request)
            let sent = try h.connector.sent(0).lowercased()
            XCTAssertEqual(sent.contains("upgrade: "), upgrade, request)
            XCTAssertFalse(sent.contains("http2-settings"), "a hop-by-hop line the client named is dropped")
        }
    }

    func testTheTunnelStopsReadingASideWhosePeerCannotKeepUp() throws {
        let h = try RouterHarness(route: route())
        let (stream, _) = try h.send(upgradeRequest)
        try h.connector.respond(0, switching)
        let tunnel = try XCTUnwrap(stream.tunnel)
        let paused = h.cluster.stats[.upstream_flow_control_paused_reading_total]
        let resumed = h.cluster.stats[.upstream_flow_control_resumed_reading_total]
        // The client stops taking bytes: the upstream is not read until it does.
        stream.isWritable = false
        try h.connector.respond(0, "X")
        XCTAssertEqual(h.cluster.stats[.upstream_flow_control_paused_reading_total], paused + 1)
        stream.isWritable = true
        tunnel.writabilityChanged(of: stream)
        XCTAssertEqual(h.cluster.stats[.upstream_flow_control_resumed_reading_total], resumed + 1)
        XCTAssertEqual(stream.tunnelled, "X", "what was read is delivered")
        // The other way: the upstream's buffer over its watermark pauses the client.
        let clientPauses = stream.pauses
        h.connector.channels[0].isWritable = false
        tunnel.received(ByteBuffer(string: "Y"), from: stream)
        XCTAssertEqual(stream.pauses, clientPauses + 1)
    }
}
