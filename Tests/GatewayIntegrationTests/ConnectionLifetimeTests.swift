import Foundation
import NIOPosix
import XCTest

/// A connection's objects go when the connection does: thousands of short connections on both
/// sides leave the real gateway process's memory where it was.
final class ConnectionLifetimeTests: XCTestCase {
    func testShortConnectionsLeaveNothingBehind() throws {
        #if !os(Linux)
        throw XCTSkip("reads /proc")
        #else
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        // One upstream connection per request too (the seed's maxRequestsPerConnection: 1).
        let config = """
            {"serviceEntries":[{"host":"svc","endpoints":[{"address":"127.0.0.1","port":\(up.port)}]}],
             "virtualServices":[{"http":[{"route":[{"destination":{"host":"svc"}}]}]}],
             "destinationRules":[{"host":"svc","trafficPolicy":{"connectionPool":{"http":{"maxRequestsPerConnection":1}}}}]}
            """
        let gw = try GatewayProcess(config: config, extraArguments: ["--access-log", "off"])
        let pid = gw.process.processIdentifier
        func run(_ n: Int) {
            for _ in 0..<n { XCTAssertEqual(httpRequest(port: gw.port, path: "/x", headers: ["Connection": "close"])?.status, 200) }
        }
        run(1000)  // allocator and pools warm
        let before = residentKiB(pid)
        run(6000)
        let grown = residentKiB(pid) - before
        // A few KiB kept per connection would be tens of MiB here.
        XCTAssertLessThan(grown, 8 * 1024, "resident memory grew \(grown) KiB over 6,000 connections")
        #endif
    }
}
