import Foundation
import NIOCore
import XCTest
@testable import GatewayCore

/// VirtualService `mirror`, `mirrorPercentage` and `mirrors` as the loader reads and refuses them.
final class ConfigLoaderMirrorTests: XCTestCase {
    func load(_ route: String) throws -> GatewayConfig {
        try ConfigLoader.decode(Array("""
            {"serviceEntries":[{"host":"a","endpoints":[{"address":"127.0.0.1","port":1}]},
                               {"host":"b","ports":[{"name":"http","number":80}],"endpoints":[{"address":"127.0.0.1","port":2}]}],
             "virtualServices":[{"http":[{"route":[{"destination":{"host":"a"}}]\(route)}]}]}
            """.utf8))
    }

    func error(_ route: String) -> String { configErrorText { try load(route) } }

    func testMirrorWithAndWithoutPercentage() throws {
        XCTAssertEqual(try load("").routes[0].mirrors, [])
        XCTAssertEqual(try load(#","mirror":{"host":"b"}"#).routes[0].mirrors, [MirrorPolicy(host: "b", percentage: 100)])
        XCTAssertEqual(try load(#","mirror":{"host":"b","port":{"number":80}},"mirrorPercentage":{"value":12.5}"#).routes[0].mirrors,
                       [MirrorPolicy(host: "b", percentage: 12.5)])
        XCTAssertEqual(try load(#","mirrors":[{"destination":{"host":"b"}},{"destination":{"host":"a"},"percentage":{"value":0}}]"#).routes[0].mirrors,
                       [MirrorPolicy(host: "b", percentage: 100), MirrorPolicy(host: "a", percentage: 0)])
    }

    func testMirrorRefusals() {
        XCTAssertEqual(error(#","mirror":{"host":"nope"}"#),
                       "virtualServices[0].http[0].mirror.host: unknown host 'nope': no serviceEntry declares it (known: a, b)")
        XCTAssertEqual(error(#","mirror":{"host":"b"},"mirrorPercentage":{"value":101}"#),
                       "virtualServices[0].http[0].mirrorPercentage.value: must be 0...100, found 101.0")
        XCTAssertEqual(error(#","mirrorPercentage":{"value":10}"#),
                       "virtualServices[0].http[0].mirrorPercentage: only applies with mirror (each mirrors[] entry has its own percentage)")
        XCTAssertEqual(error(#","mirror":{"host":"b"},"mirrors":[]"#),
                       "virtualServices[0].http[0].mirrors: mirror and mirrors cannot be used together (Istio refuses both)")
        XCTAssertEqual(error(#","mirror":{"host":"b","subset":"v1"}"#),
                       "virtualServices[0].http[0].mirror.subset: host 'b' has no subsets: no destinationRule for it declares 'v1'")
        XCTAssertEqual(error(#","mirrors":[{"destination":{"host":"b"},"weight":1}]"#),
                       "virtualServices[0].http[0].mirrors[0].weight: unknown field 'weight' (allowed: destination, percentage)")
    }
}
