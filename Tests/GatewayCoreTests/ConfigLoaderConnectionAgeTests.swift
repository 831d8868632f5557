import Foundation
import NIOCore
import XCTest
@testable import GatewayCore

/// DestinationRule `tcp.maxConnectionDuration` and `tcp.idleTimeout` as the loader reads them.
final class ConfigLoaderConnectionAgeTests: XCTestCase, ConfigLoading {
    func pool(tcp: String, http: String? = nil) throws -> ConnectionPoolSettings {
        let h = http.map { #","http":\#($0)"# } ?? ""
        let c = try load(#"{"serviceEntries":[{"host":"d","endpoints":[{"address":"127.0.0.1","port":1}]}],"destinationRules":[{"host":"d","trafficPolicy":{"connectionPool":{"tcp":\#(tcp)\#(h)}}}]}"#)
        return c.hosts["d"]!.trafficPolicy.connectionPool
    }

    func testMaxConnectionDuration() throws {
        XCTAssertNil(try pool(tcp: "{}").maxConnectionDuration, "no limit by default")
        XCTAssertEqual(try pool(tcp: #"{"maxConnectionDuration":"30s"}"#).maxConnectionDuration, .seconds(30))
        XCTAssertNil(try pool(tcp: #"{"maxConnectionDuration":"0s"}"#).maxConnectionDuration, "0s is no limit")
        XCTAssertEqual(
            error(#"{"serviceEntries":[{"host":"d","endpoints":[{"address":"127.0.0.1","port":1}]}],"destinationRules":[{"host":"d","trafficPolicy":{"connectionPool":{"tcp":{"maxConnectionDuration":"1us"}}}}]}"#),
            "destinationRules[0].trafficPolicy.connectionPool.tcp.maxConnectionDuration: must be >= 1ms, found '1us'")
    }

    /// Istio programs http.idleTimeout, else tcp.idleTimeout, as the upstream HTTP idle timeout.
    func testTCPIdleTimeoutAppliesUnlessHTTPIdleTimeoutIsSet() throws {
        XCTAssertEqual(try pool(tcp: "{}").idleTimeout, .hours(1))
        XCTAssertEqual(try pool(tcp: #"{"idleTimeout":"5m"}"#).idleTimeout, .minutes(5))
        XCTAssertEqual(try pool(tcp: #"{"idleTimeout":"5m"}"#, http: "{}").idleTimeout, .minutes(5))
        XCTAssertEqual(try pool(tcp: #"{"idleTimeout":"5m"}"#, http: #"{"idleTimeout":"30s"}"#).idleTimeout, .seconds(30))
    }
}
