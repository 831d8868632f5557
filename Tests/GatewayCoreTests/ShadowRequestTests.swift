import NIOCore
import XCTest
@testable import GatewayCore

/// Envoy's shadow host suffix goes on the Host's name, before any port.
final class ShadowRequestTests: XCTestCase {
    func shadowed(_ head: String) -> String { String(buffer: ShadowRequest.shadowHead(ByteBuffer(string: head))) }

    func testShadowHostSuffix() {
        XCTAssertEqual(shadowed("GET / HTTP/1.1\r\nHost: foo:8080\r\nx: y\r\n\r\n"), "GET / HTTP/1.1\r\nHost: foo-shadow:8080\r\nx: y\r\n\r\n")
        XCTAssertEqual(shadowed("GET / HTTP/1.1\r\na: b\r\nhost: foo\r\n\r\n"), "GET / HTTP/1.1\r\na: b\r\nhost: foo-shadow\r\n\r\n")
        XCTAssertEqual(shadowed("GET / HTTP/1.1\r\nHOST: [::1]:80\r\n\r\n"), "GET / HTTP/1.1\r\nHOST: [::1]-shadow:80\r\n\r\n")
        XCTAssertEqual(shadowed("GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n"), "GET / HTTP/1.1\r\nHost: [::1]-shadow\r\n\r\n")
        XCTAssertEqual(shadowed("GET / HTTP/1.1\r\nx-host: a\r\nHost: b \r\n\r\n"), "GET / HTTP/1.1\r\nx-host: a\r\nHost: b-shadow \r\n\r\n")
        // Only the first Host line (the parser refuses requests with two).
        XCTAssertEqual(shadowed("GET /host:x HTTP/1.1\r\nHost: a\r\n\r\n"), "GET /host:x HTTP/1.1\r\nHost: a-shadow\r\n\r\n")
    }
}
