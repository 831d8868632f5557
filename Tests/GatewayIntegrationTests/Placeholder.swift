import XCTest
final class GatewayIntegrationTestsPlaceholder: XCTestCase { func testPlaceholder() { XCTAssertTrue(true) } }
