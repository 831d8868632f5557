import XCTest
final class LoadTestTestsPlaceholder: XCTestCase { func testPlaceholder() { XCTAssertTrue(true) } }
