import Foundation
import GatewayCore
import NIOCore
import NIOPosix
import XCTest

/// Per-client rate limiting over real sockets, clients told apart by their loopback source
/// address (127.0.0.2, 127.0.0.3, ...).
final class RateLimitTests: XCTestCase {
    var upstream: TestUpstream!

    override func setUpWithError() throws {
        upstream = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
    }

    override func tearDown() { upstream.close() }

    func gateway(tracked: Int) async throws -> InProcessGateway {
        let limit = LocalRateLimitConfig(maxTokens: 3, tokensPerFill: 3, fillInterval: .hours(1), perClient: true,
                                         maxTrackedClients: tracked)
        return try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("svc", ports: [upstream.port])],
            routes: [TestConfig.route("/", to: "svc", rateLimit: limit)]))
    }

    func statuses(from source: String, _ n: Int, port: Int) throws -> [Int] {
        let c = try RawConnection(port: port, source: source)
        return (0..<n).map { _ in
            c.send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            return c.readResponse()?.status ?? 0
        }
    }

    func testOneClientOnConnectionsOfBothEventLoopsSharesOneBucket() async throws {
        let gw = try await gateway(tracked: 10_000)
        // Connections are dealt to the gateway's two event loops in turn.
        let connections = try (0..<6).map { _ in try RawConnection(port: gw.port, source: "127.0.0.2") }
        var seen: [Int] = []
        for c in connections + connections {
            c.send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            seen.append(c.readResponse()?.status ?? 0)
        }
        XCTAssertEqual(seen.filter { $0 == 200 }.count, 3, "\(seen)")
        XCTAssertEqual(seen.filter { $0 == 429 }.count, 9, "\(seen)")
        XCTAssertEqual(try statuses(from: "127.0.0.3", 4, port: gw.port), [200, 200, 200, 429], "another client, its own bucket")
        await gw.stop()
    }

    func testTrackedClientsAreBoundedAndEvictionsCounted() async throws {
        let gw = try await gateway(tracked: 2)
        XCTAssertEqual(try statuses(from: "127.0.0.2", 4, port: gw.port), [200, 200, 200, 429])
        XCTAssertEqual(try statuses(from: "127.0.0.3", 1, port: gw.port), [200])
        XCTAssertEqual(gw.stat("route.svc.local_rate_limit.clients_evicted"), 0)
        // A third client needs a place; no bucket is full within the hour, so the least
        // recently used (127.0.0.2's) goes, and that is counted.
        XCTAssertEqual(try statuses(from: "127.0.0.4", 1, port: gw.port), [200])
        XCTAssertEqual(gw.stat("route.svc.local_rate_limit.clients_evicted"), 1)
        XCTAssertEqual(try statuses(from: "127.0.0.3", 3, port: gw.port), [200, 200, 429], "kept: its bucket had 2 left")
        await gw.stop()
    }
}
