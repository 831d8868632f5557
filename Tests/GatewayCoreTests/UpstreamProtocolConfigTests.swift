import XCTest
@testable import GatewayCore

/// Which protocol a cluster's upstream connections speak, resolved as Istio's cluster builder
/// resolves it: the service port's `protocol`, `h2UpgradePolicy`, `useClientProtocol`, through
/// the rule / port / subset layering; and the HTTP/2 pool fields' values and errors.
final class UpstreamProtocolConfigTests: XCTestCase, ConfigLoading {
    func config(port: String = #"{"number":80,"name":"http"}"#, rule: String) -> String {
        #"""
        {"serviceEntries":[{"host":"svc","ports":[\#(port),{"number":81,"name":"other"}],"endpoints":[{"address":"10.0.0.1","labels":{"v":"1"}}]}],
         "destinationRules":[{"host":"svc",\#(rule)}],
         "virtualServices":[{"http":[{"route":[{"destination":{"host":"svc","subset":"one"},"weight":50},{"destination":{"host":"svc","port":{"number":81}},"weight":50}]}]}]}
        """#
    }

    func testPortProtocolUpgradePolicyAndClientProtocolResolveAsIstioDoes() throws {
        let plain = try load(config(rule: #""subsets":[{"name":"one","labels":{"v":"1"}}]"#))
        XCTAssertEqual(plain.hosts["svc"]?.trafficPolicy.upstreamProtocol, .http1)

        let grpc = try load(config(port: #"{"number":80,"name":"g","protocol":"GRPC"}"#,
                                   rule: #""trafficPolicy":{"connectionPool":{"http":{"h2UpgradePolicy":"DO_NOT_UPGRADE"}}},"subsets":[{"name":"one"}]"#))
        XCTAssertEqual(grpc.hosts["svc"]?.trafficPolicy.upstreamProtocol, .http2, "DO_NOT_UPGRADE leaves an HTTP/2 port HTTP/2")
        XCTAssertEqual(grpc.hosts["outbound|81||svc"]?.trafficPolicy.upstreamProtocol, .http1)

        // The rule upgrades; its port-level settings for 81 replace the connection pool (not
        // inherited); the subset asks for the client's protocol.
        let layered = try load(config(rule: #"""
            "trafficPolicy":{"connectionPool":{"http":{"h2UpgradePolicy":"UPGRADE","maxConcurrentStreams":7}},
                             "portLevelSettings":[{"port":{"number":81},"connectionPool":{"tcp":{"maxConnections":2}}}]},
            "subsets":[{"name":"one","trafficPolicy":{"connectionPool":{"http":{"useClientProtocol":true}}}}]
            """#))
        XCTAssertEqual(layered.hosts["svc"]?.trafficPolicy.upstreamProtocol, .http2)
        XCTAssertEqual(layered.hosts["svc"]?.trafficPolicy.connectionPool.maxConcurrentStreams, 7)
        XCTAssertEqual(layered.hosts["outbound|81||svc"]?.trafficPolicy.upstreamProtocol, .http1)
        XCTAssertEqual(layered.hosts["outbound|80|one|svc"]?.trafficPolicy.upstreamProtocol, .client)
    }

    func testWrongValuesAreRefusedAtTheirPath() {
        let bad = config(rule: #""trafficPolicy":{"connectionPool":{"http":{"h2UpgradePolicy":"ALWAYS"}}},"subsets":[{"name":"one"}]"#)
        XCTAssertThrowsError(try load(bad)) { error in
            XCTAssertTrue("\(error)".contains("destinationRules[0].trafficPolicy.connectionPool.http.h2UpgradePolicy"), "\(error)")
        }
        let zero = config(rule: #""trafficPolicy":{"connectionPool":{"http":{"maxConcurrentStreams":0}}},"subsets":[{"name":"one"}]"#)
        XCTAssertThrowsError(try load(zero)) { error in
            XCTAssertTrue("\(error)".contains("maxConcurrentStreams"), "\(error)")
        }
        let tcp = config(port: #"{"number":80,"name":"t","protocol":"TCP"}"#, rule: #""subsets":[{"name":"one"}]"#)
        XCTAssertThrowsError(try load(tcp)) { error in
            XCTAssertTrue("\(error)".contains("serviceEntries[0].ports[0].protocol"), "\(error)")
        }
    }
}
