import Foundation
import NIOCore
import XCTest
@testable import GatewayCore

/// ServiceEntry `resolution` and the top-level `dnsRefreshRate` as the loader reads and refuses them.
final class ConfigLoaderResolutionTests: XCTestCase, ConfigLoading {
    func entry(_ fields: String) -> String { #"{"serviceEntries":[{"host":"s",\#(fields)}]}"# }

    func testResolutionKinds() throws {
        func resolution(_ fields: String) throws -> Resolution { try load(entry(fields)).hosts["s"]!.resolution }
        XCTAssertEqual(try resolution(#""endpoints":[{"address":"10.0.0.1","port":80},{"address":"::1","port":80}]"#), .static,
                       "absent, with IP addresses: STATIC")
        XCTAssertEqual(try resolution(#""endpoints":[{"address":"10.0.0.1","port":80},{"address":"db.example","port":80}]"#), .dns,
                       "absent, with a name: DNS")
        XCTAssertEqual(try resolution(#""ports":[{"number":80}]"#), .dns, "no endpoints: the host name, resolved")
        XCTAssertEqual(try resolution(#""resolution":"STATIC","endpoints":[{"address":"10.0.0.1","port":80}]"#), .static)
        XCTAssertEqual(try resolution(#""resolution":"DNS","endpoints":[{"address":"10.0.0.1","port":80}]"#), .dns)
        XCTAssertEqual(try resolution(#""resolution":"DNS_ROUND_ROBIN","ports":[{"number":80}]"#), .dnsRoundRobin)
    }

    func testStaticNeedsIPAddressesAndNoneIsRefused() {
        XCTAssertEqual(error(entry(#""resolution":"STATIC","endpoints":[{"address":"10.0.0.1","port":80},{"address":"db.example","port":80}]"#)),
                       "serviceEntries[0].endpoints[1].address: resolution STATIC needs an IP address, found 'db.example' (use resolution DNS for names)")
        XCTAssertEqual(error(entry(#""resolution":"STATIC","ports":[{"number":80}]"#)),
                       "serviceEntries[0].endpoints: resolution STATIC needs endpoints with IP addresses")
        XCTAssertTrue(error(entry(#""resolution":"NONE","endpoints":[{"address":"10.0.0.1","port":80}]"#))
            .hasPrefix("serviceEntries[0].resolution: not supported by this gateway: resolution NONE"))
        XCTAssertEqual(error(entry(#""resolution":"MAGIC","ports":[{"number":80}]"#)),
                       "serviceEntries[0].resolution: unknown resolution 'MAGIC' (allowed: STATIC, DNS, DNS_ROUND_ROBIN, NONE)")
    }

    func testDNSRefreshRate() throws {
        XCTAssertEqual(try load("{}").dnsRefreshRate, .seconds(5), "Envoy's default dns_refresh_rate")
        XCTAssertEqual(try load(#"{"dnsRefreshRate":"30s"}"#).dnsRefreshRate, .seconds(30))
        XCTAssertEqual(error(#"{"dnsRefreshRate":"0s"}"#), "dnsRefreshRate: must be > 0, found '0s'")
    }
}
