import XCTest
final class MaskShopTestsPlaceholder: XCTestCase { func testPlaceholder() { XCTAssertTrue(true) } }
