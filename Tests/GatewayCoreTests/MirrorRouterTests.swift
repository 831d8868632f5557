import HTTP1Wire
import NIOCore
import NIOEmbedded
import XCTest
@testable import GatewayCore

/// The router's side of mirroring, on an embedded loop.
final class MirrorRouterTests: XCTestCase {
    /// A shadow must never take what the main request needs. With one connection allowed, the
    /// request that asks the pool first gets it and the other waits for its response. Envoy
    /// starts the main upstream request before its shadows, so it is the shadow that waits.
    func testMainRequestAsksThePoolBeforeItsShadow() throws {
        let policy = TrafficPolicy(connectionPool: ConnectionPoolSettings(maxConnections: 1))
        let route = RouteConfig(name: "r", destinations: [WeightedDestination(host: "svc")], retries: .disabled,
                                mirrors: [MirrorPolicy(host: "svc")])
        let h = try RouterHarness(route: route, policy: policy)
        let (stream, _) = try h.send()
        XCTAssertEqual(h.connector.channels.count, 1)
        let first = try h.connector.sent(0)
        XCTAssertFalse(first.contains("a-shadow"), "the shadow took the one connection:\n\(first)")
        try h.connector.respond(0, ok)
        XCTAssertEqual(stream.status, 200, "the main request was answered by the first response")
        XCTAssertEqual(stream.body, "ok")
        // The connection then serves the shadow that waited for it.
        XCTAssertTrue(try h.connector.sent(0).contains("Host: a-shadow"))
    }
}
