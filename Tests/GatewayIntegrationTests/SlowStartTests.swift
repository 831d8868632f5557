import Foundation
import NIOPosix
import XCTest

/// `loadBalancer.warmup` through the real gateway binary: a host added by a reload starts with a
/// fraction of the traffic and reaches its full share when its window is over.
final class SlowStartTests: XCTestCase {
    func config(_ ports: [Int]) -> String {
        let endpoints = ports.map { #"{"address":"127.0.0.1","port":\#($0)}"# }.joined(separator: ",")
        return #"""
        {"serviceEntries":[{"host":"shop","endpoints":[\#(endpoints)]}],
         "destinationRules":[{"host":"shop","trafficPolicy":{"loadBalancer":{"simple":"ROUND_ROBIN","warmup":{"duration":"3s"}}}}],
         "virtualServices":[{"http":[{"route":[{"destination":{"host":"shop"}}]}]}]}
        """#
    }

    /// Share of `n` keep-alive requests answered by "new".
    func shareOfNew(_ port: Int, _ n: Int) throws -> Double {
        let c = try RawConnection(port: port)
        var toNew = 0
        for _ in 0..<n {
            c.send("GET / HTTP/1.1\r\nHost: shop\r\n\r\n")
            if c.readResponse()?.body == "new" { toNew += 1 }
        }
        return Double(toNew) / Double(n)
    }

    func testNewHostRampsUp() throws {
        let old = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "old"))
        let new = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "new"))
        defer { old.close(); new.close() }
        let gw = try GatewayProcess(config: config([old.port]), extraArguments: ["--access-log", "off"])
        // Past the window, the first host is no longer new.
        usleep(3_200_000)
        try gw.writeConfig(config([old.port, new.port]))
        XCTAssertEqual(gw.admin("/reload", method: "POST")?.status, 200)
        // In its first second the new host's weight is max(1s / 3s, 10%) = 1/3 of the old one's:
        // a quarter of the requests (an even split would be half).
        let start = Date()
        let early = try shareOfNew(gw.port, 300)
        let took = Date().timeIntervalSince(start)
        print("slow start: new host got \(Int(early * 100))% of 300 requests in its first \(Int(took * 1000)) ms")
        XCTAssertGreaterThan(early, 0.1)
        XCTAssertLessThan(early, took < 1 ? 0.37 : 0.42)
        usleep(3_000_000)
        let late = try shareOfNew(gw.port, 400)
        print("slow start: after the window, \(Int(late * 100))% of 400")
        XCTAssertEqual(late, 0.5, accuracy: 0.12)
        gw.signal(SIGTERM)
        _ = gw.waitForExit(timeout: 5)
    }
}
