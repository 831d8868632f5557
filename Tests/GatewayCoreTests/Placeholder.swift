import XCTest
final class GatewayCoreTestsPlaceholder: XCTestCase { func testPlaceholder() { XCTAssertTrue(true) } }
