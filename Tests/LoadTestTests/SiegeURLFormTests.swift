import Foundation
import XCTest
@testable import LoadTestCore

/// URL arguments in siege's forms, on the command line as in URL files.
final class SiegeURLFormTests: XCTestCase {
    func line(_ s: String) throws -> Target { try XCTUnwrap(try Target.parseLine(s)) }

    func testMethodsAndBodies() throws {
        let post = try line(#"http://127.0.0.1:8080/orders POST {"orderId":1, "qty": 2}"#)
        XCTAssertEqual(post.method, "POST")
        XCTAssertEqual(post.path, "/orders")
        XCTAssertEqual(post.body.map { String(decoding: $0, as: UTF8.self) }, #"{"orderId":1, "qty": 2}"#)
        XCTAssertEqual(try line(#"http://h/inventories/1 PUT {"stock":5}"#).method, "PUT")
        let patch = try line("http://h/orders/1 PATCH type=cancel")
        XCTAssertEqual(patch.method, "PATCH")
        XCTAssertEqual(patch.body.map { String(decoding: $0, as: UTF8.self) }, "type=cancel")
        let delete = try line("http://h/orders/1 DELETE")
        XCTAssertEqual(delete.method, "DELETE")
        XCTAssertNil(delete.body)
        XCTAssertEqual(try line("http://h/x POST").body, [], "a POST with no data sends an empty body")
        XCTAssertEqual(try line("h:81/x").port, 81)
    }

    func testPostFromAFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "{\"qty\":1}".write(to: dir.appendingPathComponent("b.json"), atomically: true, encoding: .utf8)
        let t = try XCTUnwrap(try Target.parseLine("http://h/orders POST < b.json", relativeTo: dir.path))
        XCTAssertEqual(t.body.map { String(decoding: $0, as: UTF8.self) }, "{\"qty\":1}")
        XCTAssertThrowsError(try Target.parseLine("http://h/orders POST < missing.json", relativeTo: dir.path))
    }

    /// A URL with a space never leaves as a malformed request line: what a request-target cannot
    /// carry is percent-encoded.
    func testSpacesAndOddCharactersAreEscaped() throws {
        XCTAssertEqual(try line("http://h/search?q=mask shop").path, "/search?q=mask%20shop")
        XCTAssertEqual(try line("http://h/a b POST {}").path, "/a%20b")
        XCTAssertEqual(try line("http://h/a b POST {}").method, "POST")
        XCTAssertEqual(try Target.parseURL("http://h/마스크\"{x}").path, "/%EB%A7%88%EC%8A%A4%ED%81%AC%22%7Bx%7D")
        XCTAssertEqual(try Target.parseURL("http://h/p#frag").path, "/p")
        XCTAssertEqual(try Target.parseURL("http://h?x=1").path, "/?x=1")
        var o = LoadOptions()
        o.targets = [try line(#"http://h/a b/c POST {"x": 1}"#)]
        let requestLine = String(buffer: o.encodedRequests()[0]).components(separatedBy: "\r\n")[0]
        XCTAssertEqual(requestLine, "POST /a%20b/c HTTP/1.1")
        XCTAssertThrowsError(try Target.parseLine("http://x/ FETCH"))
    }
}
