import Foundation
import XCTest

@testable import MaskShop

/// The services' JSON writer must produce text any JSON parser reads back as the same values.
final class JSONTextTests: XCTestCase {
    func testRoundTripsThroughAParser() throws {
        let value: [String: Any] = [
            "s": "quote \" backslash \\ newline \n tab \t bell \u{07} 한글 마스크",
            "i": -42, "d": 2.5, "whole": 3.0, "t": true, "f": false, "n": NSNull(),
            "a": [1, "two", ["x": 0]],
        ]
        let text = JSONText.encode(value)
        let back = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        XCTAssertEqual(back["s"] as? String, value["s"] as? String)
        XCTAssertEqual(back["i"] as? Int, -42)
        XCTAssertEqual(back["d"] as? Double, 2.5)
        XCTAssertEqual(back["whole"] as? Int, 3)
        XCTAssertEqual(back["t"] as? Bool, true)
        XCTAssertEqual(back["f"] as? Bool, false)
        XCTAssertTrue(back["n"] is NSNull)
        let a = try XCTUnwrap(back["a"] as? [Any])
        XCTAssertEqual(a.count, 3)
        XCTAssertEqual((a[2] as? [String: Any])?["x"] as? Int, 0)
        XCTAssertTrue(text.contains("\\u0007"), text)
    }

    func testRawIsSplicedUnchanged() {
        XCTAssertEqual(JSONText.encode(["p": JSONText.Raw(text: "{\"qty\":10}")]), "{\"p\":{\"qty\":10}}")
    }

    func testValuesFromFoundationsParserKeepTheirKinds() throws {
        let parsed = try JSONSerialization.jsonObject(with: Data(#"{"t":true,"f":false,"i":5,"d":2.5,"n":null,"a":[{"x":1}]}"#.utf8))
        let back = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(JSONText.encode(parsed).utf8)) as? [String: Any])
        XCTAssertEqual(back["t"] as? Bool, true)
        XCTAssertEqual(back["f"] as? Bool, false)
        XCTAssertEqual(back["i"] as? Int, 5)
        XCTAssertEqual(back["d"] as? Double, 2.5)
        XCTAssertTrue(back["n"] is NSNull)
        XCTAssertEqual(((back["a"] as? [Any])?.first as? [String: Any])?["x"] as? Int, 1)
        XCTAssertEqual(JSONText.encode([["a": 1], ["b": JSONText.Raw(text: "[]")]] as [[String: Any]]), #"[{"a":1},{"b":[]}]"#)
    }
}
