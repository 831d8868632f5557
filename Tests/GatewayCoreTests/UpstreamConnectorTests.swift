@testable import GatewayCore
import XCTest

/// Which upstream connections the gateway connects itself (one send(2) per request) and which NIO
/// connects (see `SocketConnector.connectsDirectly`).
final class UpstreamConnectorTests: XCTestCase {
    func testOnlyPoolsThatKeepTheirConnectionsConnectDirectly() {
        XCTAssertTrue(SocketConnector.connectsDirectly(ConnectionPoolSettings(), tls: nil))
        XCTAssertTrue(SocketConnector.connectsDirectly(ConnectionPoolSettings(maxRequestsPerConnection: 2), tls: nil))
        // A connection per request: the connect stays in the request's pending window, a turn
        // of the event loop, as Envoy's does (SweepThroughGatewayTests measures the knee it sets).
        XCTAssertFalse(SocketConnector.connectsDirectly(ConnectionPoolSettings(maxRequestsPerConnection: 1), tls: nil))
    }
}
