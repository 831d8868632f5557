import Foundation
import GRDB
import XCTest

/// The seed's requirements end to end through the gateway, with real processes and SIGKILLs.
final class ShopScenarioTests: XCTestCase {
    func order(_ shop: ShopCluster, product: Int, qty: Int, customer: Int? = nil) -> HTTPResult? {
        var body: [String: Any] = ["orderId": 1111, "productId": product, "qty": qty]
        if let customer { body["customerId"] = customer }
        return call("POST", shop.gateway, "/orders", body)
    }

    func testSeedFlowThroughTheGateway() throws {
        let shop = try ShopCluster()
        XCTAssertEqual(call("PUT", shop.gateway, "/inventories/1111", ["stock": 100])?.status, 200)
        let r = try XCTUnwrap(order(shop, product: 1111, qty: 10, customer: 7))
        XCTAssertEqual(r.status, 201)
        let o = try XCTUnwrap(r.json as? [String: Any])
        XCTAssertEqual(o["status"] as? String, "ordered")
        let id = try XCTUnwrap(o["id"] as? Int)
        let deliveries = call("GET", shop.gateway, "/deliveries?orderId=\(id)")?.json as? [[String: Any]]
        XCTAssertEqual(deliveries?.count, 1, "the delivery exists as soon as the order is answered")
        XCTAssertTrue(shop.eventually { shop.stock(1111) == 90 })
        XCTAssertTrue(shop.eventually {
            let m = call("GET", shop.gateway, "/mypages/\(id)")?.json as? [String: Any]
            return m?["orderStatus"] as? String == "ordered" && m?["deliveryStatus"] as? String == "ordered"
        })
        let byCustomer = call("GET", shop.gateway, "/mypages?customerId=7")?.json as? [[String: Any]]
        XCTAssertEqual(byCustomer?.count, 1)
    }

    func testInventoryDownOrdersStillSucceedAndStockCatchesUp() throws {
        let shop = try ShopCluster()
        XCTAssertEqual(call("PUT", shop.gateway, "/inventories/5", ["stock": 100])?.status, 200)
        shop.kill9("inventory")
        for _ in 0..<5 { XCTAssertEqual(order(shop, product: 5, qty: 3)?.status, 201) }
        try shop.start("inventory")
        XCTAssertTrue(shop.eventually { shop.stock(5) == 85 }, "stock \(String(describing: shop.stock(5)))")
    }

    func testDeliveryDownRefusesOrdersAndLeavesNoneOrdered() throws {
        let shop = try ShopCluster()
        shop.kill9("delivery")
        let r = try XCTUnwrap(order(shop, product: 1, qty: 1))
        XCTAssertGreaterThanOrEqual(r.status, 500)
        XCTAssertNotNil((r.json as? [String: Any])?["error"])
        let orders = call("GET", shop.gateway, "/orders")?.json as? [[String: Any]] ?? []
        XCTAssertFalse(orders.contains { $0["status"] as? String == "ordered" })
        try shop.start("delivery")
        XCTAssertEqual(order(shop, product: 1, qty: 1)?.status, 201, "orders work again once delivery is back")
    }

    func testCancelWhileDeliveryAndInventoryAreDown() throws {
        let shop = try ShopCluster()
        XCTAssertEqual(call("PUT", shop.gateway, "/inventories/9", ["stock": 50])?.status, 200)
        let placed = try XCTUnwrap(order(shop, product: 9, qty: 4)?.json as? [String: Any])
        let id = try XCTUnwrap(placed["id"] as? Int)
        XCTAssertTrue(shop.eventually { shop.stock(9) == 46 })
        shop.kill9("delivery")
        shop.kill9("inventory")
        let cancel = call("PATCH", shop.gateway, "/orders/\(id)", ["type": "cancel"])
        XCTAssertEqual(cancel?.status, 200)
        XCTAssertEqual((cancel?.json as? [String: Any])?["status"] as? String, "cancelled")
        try shop.start("delivery")
        try shop.start("inventory")
        XCTAssertTrue(shop.eventually {
            (call("GET", shop.gateway, "/deliveries?orderId=\(id)")?.json as? [[String: Any]])?.first?["status"] as? String == "cancelled"
        })
        XCTAssertTrue(shop.eventually { shop.stock(9) == 50 })
        XCTAssertTrue(shop.eventually {
            let m = call("GET", shop.gateway, "/mypages/\(id)")?.json as? [String: Any]
            return m?["orderStatus"] as? String == "cancelled" && m?["deliveryStatus"] as? String == "cancelled"
        })
    }

    /// 1,000 orders and 300 cancellations while the inventory consumer is SIGKILLed again and
    /// again: the stock must come out exact (each event applied once).
    func testConsumerKilledMidStreamAppliesEveryEventExactlyOnce() throws {
        let shop = try ShopCluster()
        XCTAssertEqual(call("PUT", shop.gateway, "/inventories/42", ["stock": 100_000])?.status, 200)
        var ids: [Int] = []
        var expected = 100_000
        var rng = SystemRandomNumberGenerator()
        for i in 0..<1000 {
            let qty = Int.random(in: 1...5, using: &rng)
            let r = order(shop, product: 42, qty: qty)
            XCTAssertEqual(r?.status, 201)
            if let id = (r?.json as? [String: Any])?["id"] as? Int { ids.append(id); expected -= qty }
            if i % 100 == 37 {
                shop.kill9("inventory")
                try shop.start("inventory")
            }
        }
        var cancelled = 0
        for id in ids.shuffled().prefix(300) {
            let r = call("PATCH", shop.gateway, "/orders/\(id)", ["type": "cancel"])
            XCTAssertEqual(r?.status, 200)
            if let o = r?.json as? [String: Any], let q = o["qty"] as? Int { expected += q; cancelled += 1 }
            if cancelled % 60 == 13 {
                shop.kill9("inventory")
                try shop.start("inventory")
            }
        }
        XCTAssertEqual(cancelled, 300)
        XCTAssertTrue(shop.eventually(60) { shop.stock(42) == expected }, "stock \(String(describing: shop.stock(42))) expected \(expected)")
    }

    func testBadInputGetsReasons() throws {
        let shop = try ShopCluster()
        let cases: [(String, String, Any?, Int)] = [
            ("POST", "/orders", "{not json", 400),
            ("POST", "/orders", ["orderId": 1, "productId": 1], 400),
            ("POST", "/orders", ["orderId": 1, "productId": 1, "qty": -2], 400),
            ("POST", "/orders", ["orderId": 1, "productId": 1, "qty": "ten"], 400),
            ("PATCH", "/orders/12345", ["type": "cancel"], 404),
            ("PATCH", "/orders/abc", ["type": "cancel"], 400),
            ("GET", "/orders/12345", nil, 404),
            ("GET", "/deliveries/777", nil, 404),
            ("GET", "/inventories/777", nil, 404),
            ("PUT", "/inventories/1", ["stock": -1], 400),
            ("GET", "/mypages/777", nil, 404),
        ]
        for (method, path, body, status) in cases {
            let r = call(method, shop.gateway, path, body)
            XCTAssertEqual(r?.status, status, "\(method) \(path)")
            XCTAssertNotNil((r?.json as? [String: Any])?["error"], "\(method) \(path) says why")
        }
        let placed = try XCTUnwrap(order(shop, product: 3, qty: 1)?.json as? [String: Any])
        let id = try XCTUnwrap(placed["id"] as? Int)
        XCTAssertEqual(call("PATCH", shop.gateway, "/orders/\(id)", ["type": "refund"])?.status, 400)
    }

    func testIdempotencyKeyReturnsTheFirstAnswer() throws {
        let shop = try ShopCluster()
        let body: [String: Any] = ["orderId": 5, "productId": 5, "qty": 1]
        let first = call("POST", shop.gateway, "/orders", body, headers: ["Idempotency-Key": "k-1"])
        let second = call("POST", shop.gateway, "/orders", body, headers: ["Idempotency-Key": "k-1"])
        XCTAssertEqual(first?.status, 201)
        XCTAssertEqual(second?.status, 201)
        XCTAssertEqual((first?.json as? [String: Any])?["id"] as? Int, (second?.json as? [String: Any])?["id"] as? Int)
        XCTAssertEqual((call("GET", shop.gateway, "/orders")?.json as? [[String: Any]])?.count, 1)
        XCTAssertEqual((call("GET", shop.gateway, "/deliveries")?.json as? [[String: Any]])?.count, 1)
    }

    /// The crash window: an order committed as pending whose process died before the outcome.
    /// On start, reconciliation completes the one whose delivery exists and fails the other.
    func testPendingOrdersAreReconciledOnStart() throws {
        let shop = try ShopCluster()
        shop.kill9("order")
        let db = try DatabaseQueue(path: shop.dir.appendingPathComponent("order.sqlite").path)
        try db.write { db in
            for id in [100, 101] {
                try db.execute(sql: "INSERT INTO orders (id, orderId, productId, qty, status, createdAt) VALUES (?, 1, 8, 2, 'pending', 0)",
                               arguments: [id])
            }
        }
        XCTAssertEqual(call("POST", shop.ports["delivery"]!, "/deliveries", ["orderId": 100, "productId": 8, "qty": 2])?.status, 201)
        try shop.start("order")
        XCTAssertTrue(shop.eventually {
            (call("GET", shop.gateway, "/orders/100")?.json as? [String: Any])?["status"] as? String == "ordered"
        })
        XCTAssertTrue(shop.eventually {
            (call("GET", shop.gateway, "/orders/101")?.json as? [String: Any])?["status"] as? String == "failed"
        })
        XCTAssertTrue(shop.eventually {
            (call("GET", shop.gateway, "/mypages/100")?.json as? [String: Any])?["orderStatus"] as? String == "ordered"
        })
    }
}

/// `maskshop up` on the SPEC's fixed ports (skipped when something else holds them).
final class UpCommandTests: XCTestCase {
    func testUpServesAnOrderAndLeavesNothingBehind() throws {
        for port in [8080, 8081, 8082, 8083, 8084, 9901] where call("GET", port, "/") != nil {
            throw XCTSkip("port \(port) is in use")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("up-\(UUID().uuidString)")
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized
        let p = Process()
        p.executableURL = try shopExecutable("maskshop")
        p.arguments = ["up", "--data-dir", dir.path, "--config", root.appendingPathComponent("config/gateway.json").path]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer {
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            try? FileManager.default.removeItem(at: dir)
        }
        var placed: HTTPResult? = nil
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            placed = call("POST", 8080, "/orders", ["orderId": 1, "productId": 1, "qty": 1])
            if placed?.status == 201 { break }
            usleep(200_000)
        }
        XCTAssertEqual(placed?.status, 201)
        kill(p.processIdentifier, SIGTERM)
        let stop = Date().addingTimeInterval(15)
        while p.isRunning && Date() < stop { usleep(50_000) }
        XCTAssertFalse(p.isRunning)
        for port in [8080, 8081, 8082, 8083, 8084, 9901] {
            XCTAssertNil(call("GET", port, "/health"), "port \(port) is free again")
        }
    }
}
