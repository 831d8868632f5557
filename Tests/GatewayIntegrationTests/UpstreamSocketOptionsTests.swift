import Foundation
import GatewayCore
import NIOCore
import NIOPosix
import XCTest

/// DestinationRule `tcp.tcpKeepalive` reaches the upstream sockets: the kernel's own view of the
/// gateway's connection (`ss -o`, iproute2) shows a keep-alive timer within the configured time.
final class UpstreamSocketOptionsTests: XCTestCase {
    func keepaliveTimers(toPort port: Int) throws -> [String] {
        let ss = Process()
        ss.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        ss.arguments = ["ss", "-tno", "state", "established", "dst", "127.0.0.1:\(port)"]
        let out = Pipe()
        ss.standardOutput = out
        try ss.run()
        ss.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return text.split(separator: "\n").compactMap { line in
            line.range(of: "timer:(keepalive,").map { String(line[$0.upperBound...].prefix { $0 != "," }) }
        }
    }

    func gateway(keepalive: TCPKeepalive?, upstream: TestUpstream) async throws -> InProcessGateway {
        let policy = TrafficPolicy(connectionPool: ConnectionPoolSettings(tcpKeepalive: keepalive))
        return try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("order", ports: [upstream.port], policy: policy)],
            routes: [TestConfig.route("/orders", to: "order")]))
    }

    func testTCPKeepaliveIsSetOnUpstreamConnections() async throws {
        guard (try? keepaliveTimers(toPort: 1)) != nil else { throw XCTSkip("ss (iproute2) is not installed") }
        let upstream = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { upstream.close() }
        // 20 minutes: ss prints it in whole minutes ("19min"), a unit every iproute2 prints alike.
        let gw = try await gateway(keepalive: TCPKeepalive(probes: 4, time: .minutes(20), interval: .seconds(3)),
                                   upstream: upstream)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/orders/1")?.status, 200)
        let timers = try keepaliveTimers(toPort: upstream.port)
        await gw.stop()
        XCTAssertEqual(timers.count, 1, "the one upstream connection has a keep-alive timer")
        // The idle time before the first probe counts down from `time` (the kernel's default is 120min).
        XCTAssertTrue(timers.first == "19min" || timers.first == "20min", timers.description)
    }

    func testWithoutTCPKeepaliveNoTimerIsSet() async throws {
        guard (try? keepaliveTimers(toPort: 1)) != nil else { throw XCTSkip("ss (iproute2) is not installed") }
        let upstream = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { upstream.close() }
        let gw = try await gateway(keepalive: nil, upstream: upstream)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/orders/1")?.status, 200)
        let timers = try keepaliveTimers(toPort: upstream.port)
        await gw.stop()
        XCTAssertEqual(timers, [])
    }
}
