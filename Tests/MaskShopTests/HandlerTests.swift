import Foundation
import GRDB
import Hummingbird
import HummingbirdTesting
import XCTest

@testable import MaskShop

/// Route handlers through HummingbirdTesting (no sockets), each service on a fresh database.
final class HandlerTests: XCTestCase {
    func app(_ kind: ShopService) throws -> (Application<RouterResponder<BasicRequestContext>>, URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("handlers-\(UUID().uuidString)")
        var o = ServiceOptions(port: 0)
        o.dataDir = dir.path
        o.deliveryURL = "http://127.0.0.1:1"  // nothing listens: a refused connection
        return (try makeShopApplication(kind, o, consumers: false), dir)
    }



    func testInventorySetAndRead() async throws {
        let (app, dir) = try app(.inventory)
        defer { try? FileManager.default.removeItem(at: dir) }
        try await app.test(.router) { client in
            try await client.execute(uri: "/inventories/7", method: .put, body: ByteBuffer(string: #"{"stock":100}"#)) { r in
                XCTAssertEqual(r.status, .ok)
            }
            try await client.execute(uri: "/inventories/7", method: .get) { r in
                XCTAssertEqual(parseJSON(r.body) as? [String: Int], ["productId": 7, "stock": 100])
            }
            try await client.execute(uri: "/inventories/7", method: .put, body: ByteBuffer(string: #"{"stock":1.5}"#)) { r in
                XCTAssertEqual(r.status, .badRequest)
                XCTAssertNotNil((parseJSON(r.body) as? [String: Any])?["error"])
            }
            try await client.execute(uri: "/health", method: .get) { r in XCTAssertEqual(r.status, .ok) }
        }
    }

    /// A shop error is its status with `{"error": reason}`; any other failure (here a body over the
    /// size limit) is a 503 with a reason; a path no route serves keeps Hummingbird's empty 404.
    func testErrorAnswers() async throws {
        let (app, dir) = try app(.order)
        defer { try? FileManager.default.removeItem(at: dir) }
        try await app.test(.router) { client in
            try await client.execute(uri: "/orders/7", method: .get) { r in
                XCTAssertEqual(r.status, .notFound)
                XCTAssertEqual(r.headers[.contentType], "application/json")
                XCTAssertEqual(String(buffer: r.body), #"{"error":"no order 7"}"#)
            }
            try await client.execute(uri: "/orders", method: .post, body: ByteBuffer(repeating: 0x20, count: (1 << 20) + 1)) { r in
                XCTAssertEqual(r.status, .contentTooLarge, "a body past the limit is the client's error, with a reason")
                XCTAssertEqual(r.headers[.contentType], "application/json")
                XCTAssertEqual((parseJSON(r.body) as? [String: Any])?["error"] as? String,
                               "request body is larger than 1048576 bytes")
            }
            try await client.execute(uri: "/nothing", method: .get) { r in
                XCTAssertEqual(r.status, .notFound)
                XCTAssertEqual(r.body.readableBytes, 0)
            }
        }
    }

    /// httpie's `key=value` sends JSON strings; numeric ones are numbers (as Jackson took them),
    /// anything else in a number field is a 400 that names the field.
    func testNumericStringsAreNumbersAndOtherStringsAreRefused() async throws {
        let (delivery, dir1) = try app(.delivery)
        defer { try? FileManager.default.removeItem(at: dir1) }
        try await delivery.test(.router) { client in
            try await client.execute(uri: "/deliveries", method: .post,
                                     body: ByteBuffer(string: #"{"orderId":"12","productId":"1111","qty":" 10 "}"#)) { r in
                XCTAssertEqual(r.status, .created)
                let o = parseJSON(r.body) as? [String: Any]
                XCTAssertEqual(o?["orderId"] as? Int, 12)
                XCTAssertEqual(o?["productId"] as? Int, 1111)
                XCTAssertEqual(o?["qty"] as? Int, 10)
            }
        }
        let (inventory, dir2) = try app(.inventory)
        defer { try? FileManager.default.removeItem(at: dir2) }
        try await inventory.test(.router) { client in
            try await client.execute(uri: "/inventories/1111", method: .put, body: ByteBuffer(string: #"{"stock":"100"}"#)) { r in
                XCTAssertEqual(r.status, .ok)
                XCTAssertEqual(parseJSON(r.body) as? [String: Int], ["productId": 1111, "stock": 100])
            }
            for bad in [#""abc""#, #""1.5""#, #""-3""#, #""""#, "true", #""1e3""#, "[1]", #""99999999999999999999""#] {
                try await client.execute(uri: "/inventories/1111", method: .put, body: ByteBuffer(string: #"{"stock":\#(bad)}"#)) { r in
                    XCTAssertEqual(r.status, .badRequest, bad)
                    let reason = (parseJSON(r.body) as? [String: Any])?["error"] as? String ?? ""
                    XCTAssertTrue(reason.hasPrefix("field 'stock' must be"), "\(bad): \(reason)")
                }
            }
        }
        let (order, dir3) = try app(.order)
        defer { try? FileManager.default.removeItem(at: dir3) }
        try await order.test(.router) { client in
            for (body, field) in [(#"{"orderId":"abc","productId":"1111","qty":"10"}"#, "orderId"),
                                  (#"{"orderId":"1111","productId":"x1","qty":"10"}"#, "productId"),
                                  (#"{"orderId":"1111","productId":"1111","qty":"0"}"#, "qty"),
                                  (#"{"orderId":"1111","productId":"1111","qty":"2.5"}"#, "qty"),
                                  (#"{"orderId":"1111","productId":"1111","qty":"10","customerId":"me"}"#, "customerId")] {
                try await client.execute(uri: "/orders", method: .post, body: ByteBuffer(string: body)) { r in
                    XCTAssertEqual(r.status, .badRequest, body)
                    let reason = (parseJSON(r.body) as? [String: Any])?["error"] as? String ?? ""
                    XCTAssertTrue(reason.hasPrefix("field '\(field)' must be"), "\(body): \(reason)")
                }
            }
            // Numbers as strings pass validation: the order goes on to delivery (down here: 503).
            try await client.execute(uri: "/orders", method: .post,
                                     body: ByteBuffer(string: #"{"orderId":"1111","productId":"1111","qty":"10","customerId":"7"}"#)) { r in
                XCTAssertEqual(r.status, .serviceUnavailable)
            }
            try await client.execute(uri: "/orders", method: .get) { r in
                let rows = parseJSON(r.body) as? [[String: Any]]
                XCTAssertEqual(rows?.first?["orderId"] as? Int, 1111)
                XCTAssertEqual(rows?.first?["customerId"] as? Int, 7)
            }
            try await client.execute(uri: "/orders/1", method: .patch, body: ByteBuffer(string: #"{"type":1}"#)) { r in
                XCTAssertEqual(r.status, .badRequest)
                let reason = (parseJSON(r.body) as? [String: Any])?["error"] as? String ?? ""
                XCTAssertTrue(reason.hasPrefix("field 'type' must be"), reason)
            }
        }
    }

    func testDeliveryIsIdempotentPerOrder() async throws {
        let (app, dir) = try app(.delivery)
        defer { try? FileManager.default.removeItem(at: dir) }
        try await app.test(.router) { client in
            let body = ByteBuffer(string: #"{"orderId":3,"productId":9,"qty":2}"#)
            var first: Int?
            try await client.execute(uri: "/deliveries", method: .post, body: body) { r in
                XCTAssertEqual(r.status, .created)
                first = (parseJSON(r.body) as? [String: Any])?["id"] as? Int
            }
            try await client.execute(uri: "/deliveries", method: .post, body: body) { r in
                XCTAssertEqual(r.status, .ok)
                XCTAssertEqual((parseJSON(r.body) as? [String: Any])?["id"] as? Int, first)
            }
            try await client.execute(uri: "/events?after=0", method: .get) { r in
                let events = parseJSON(r.body) as? [[String: Any]]
                XCTAssertEqual(events?.map { $0["type"] as? String }, ["DeliveryRegistered"], "one event for one delivery")
            }
            try await client.execute(uri: "/deliveries?orderId=x", method: .get) { r in XCTAssertEqual(r.status, .badRequest) }
        }
    }

    /// Delivery refuses the connection: 503 with a reason, and the order row is `failed`.
    func testOrderWithDeliveryDownIsNotPlaced() async throws {
        let (app, dir) = try app(.order)
        defer { try? FileManager.default.removeItem(at: dir) }
        try await app.test(.router) { client in
            try await client.execute(uri: "/orders", method: .post, body: ByteBuffer(string: #"{"orderId":1,"productId":1,"qty":1}"#)) { r in
                XCTAssertEqual(r.status, .serviceUnavailable)
                XCTAssertTrue(((parseJSON(r.body) as? [String: Any])?["error"] as? String)?.contains("delivery") == true)
            }
            try await client.execute(uri: "/orders", method: .get) { r in
                XCTAssertEqual((parseJSON(r.body) as? [[String: Any]])?.map { $0["status"] as? String }, ["failed"])
            }
            try await client.execute(uri: "/events?after=0&wait=0", method: .get) { r in
                XCTAssertEqual((parseJSON(r.body) as? [Any])?.count, 0, "a refused connection needs no compensation")
            }
        }
    }

    /// mypage rows converge whichever feed arrives first.
    func testMypageConvergesInEitherOrder() throws {
        for orderFirst in [true, false] {
            let db = try DatabaseQueue()
            var m = DatabaseMigrator()
            MypageService.migrations(&m)
            try m.migrate(db)
            let placed: [String: Any] = ["id": 1, "orderId": 1111, "productId": 5, "qty": 2, "customerId": 9]
            let registered: [String: Any] = ["id": 77, "orderId": 1, "productId": 5, "qty": 2]
            try db.write { db in
                let steps: [() throws -> Void] = [
                    { try MypageService.applyOrderEvent(db, "OrderPlaced", placed) },
                    { try MypageService.applyOrderEvent(db, "OrderCancelled", placed) },
                    { try MypageService.applyDeliveryEvent(db, "DeliveryRegistered", registered) },
                    { try MypageService.applyDeliveryEvent(db, "DeliveryCancelled", registered) },
                ]
                for i in (orderFirst ? [0, 1, 2, 3] : [2, 3, 0, 1]) { try steps[i]() }
            }
            let row = try db.read { db in try Row.fetchOne(db, sql: "SELECT * FROM mypages WHERE orderId = 1") }
            XCTAssertEqual(row?["orderStatus"], "cancelled")
            XCTAssertEqual(row?["deliveryStatus"], "cancelled")
            XCTAssertEqual(row?["customerId"], 9)
        }
    }

    func testTimestampsRoundTrip() throws {
        let date = Date(timeIntervalSince1970: 1_764_057_017.123)
        let text = rfc3339(date)
        XCTAssertEqual(text, "2025-11-25T07:50:17.123Z")
        XCTAssertEqual(try XCTUnwrap(parseRFC3339(text)), 1_764_057_017.123, accuracy: 0.0005)
        XCTAssertNil(parseRFC3339("yesterday"))
    }

    /// Group commit: one failing write in a batch rolls back only itself.
    func testGroupCommitIsolatesAFailingWrite() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(path: dir.appendingPathComponent("t.sqlite").path) { m in
            m.registerMigration("t") { db in try db.execute(sql: "CREATE TABLE t (n INTEGER PRIMARY KEY)") }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in 0..<200 {
                group.addTask {
                    do {
                        try await store.write { db in
                            try db.execute(sql: "INSERT INTO t (n) VALUES (?)", arguments: [n])
                            try Store.append(db, type: "T", payload: ["n": n])
                            if n % 10 == 0 { throw APIError(.conflict, "no") }
                        }
                        XCTAssertNotEqual(n % 10, 0)
                    } catch is APIError {
                        XCTAssertEqual(n % 10, 0)
                    }
                }
            }
            try await group.waitForAll()
        }
        let (rows, events) = try await store.pool.read { db in
            (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t")!, try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM events")!)
        }
        XCTAssertEqual(rows, 180)
        XCTAssertEqual(events, 180)
    }
}

func parseJSON(_ buffer: ByteBuffer) -> Any? { try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) }
