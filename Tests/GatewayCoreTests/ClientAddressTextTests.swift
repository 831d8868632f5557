import NIOCore
import XCTest

@testable import GatewayCore

final class ClientAddressTextTests: XCTestCase {
    /// The gateway's own IPv4 text equals `inet_ntop`'s (through NIO) for every octet value in
    /// every position, and IPv6 keeps NIO's form.
    func testMatchesInetNtop() throws {
        var checked = 0
        for octet in 0...255 {
            for position in 0..<4 {
                let parts = (0..<4).map { $0 == position ? octet : (position * 37 + $0 * 91) % 256 }
                let text = parts.map(String.init).joined(separator: ".")
                let address = try SocketAddress(ipAddress: text, port: 80)
                XCTAssertEqual(ClientAddressText.of(address), address.ipAddress, text)
                XCTAssertEqual(ClientAddressText.of(address), text)
                checked += 1
            }
        }
        XCTAssertEqual(checked, 1024)
        let v6 = try SocketAddress(ipAddress: "2001:db8::1", port: 80)
        XCTAssertEqual(ClientAddressText.of(v6), "2001:db8::1")
        XCTAssertEqual(ClientAddressText.of(nil), "unknown")
        XCTAssertEqual(ClientAddressText.dottedQuad(0xFFFF_FFFF), "255.255.255.255")
        XCTAssertEqual(ClientAddressText.dottedQuad(0), "0.0.0.0")
    }
}
