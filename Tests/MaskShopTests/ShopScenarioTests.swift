import Foundation
import GRDB
import XCTest

/// The seed's requirements end to end with real processes and SIGKILLs. Each scenario runs with
/// order calling delivery directly; the `…ThroughTheGateway` variants put the gateway in front
/// (order → gateway → delivery, as in the seed) and are skipped only when the gateway is not built.
final class ShopScenarioTests: XCTestCase {
    func order(_ shop: ShopCluster, product: Int, qty: Int, customer: Int? = nil) -> HTTPResult? {
        var body: [String: Any] = ["orderId": 1111, "productId": product, "qty": qty]
        if let customer { body["customerId"] = customer }
        return shop.call("POST", "/orders", body)
    }

    // MARK: the seed's flow

    func seedFlow(_ shop: ShopCluster) throws {
        XCTAssertEqual(shop.call("PUT", "/inventories/1111", ["stock": 100])?.status, 200)
        let r = try XCTUnwrap(order(shop, product: 1111, qty: 10, customer: 7))
        XCTAssertEqual(r.status, 201)
        let o = try XCTUnwrap(r.json as? [String: Any])
        XCTAssertEqual(o["status"] as? String, "ordered")
        let id = try XCTUnwrap(o["id"] as? Int)
        let deliveries = shop.call("GET", "/deliveries?orderId=\(id)")?.json as? [[String: Any]]
        XCTAssertEqual(deliveries?.count, 1, "the delivery exists as soon as the order is answered")
        XCTAssertEqual(deliveries?.first?["status"] as? String, "ordered")
        XCTAssertTrue(shop.eventually(5) { shop.stock(1111) == 90 }, "stock \(String(describing: shop.stock(1111)))")
        XCTAssertTrue(shop.eventually(5) {
            let m = shop.call("GET", "/mypages/\(id)")?.json as? [String: Any]
            return m?["orderStatus"] as? String == "ordered" && m?["deliveryStatus"] as? String == "ordered"
        })
        let byCustomer = shop.call("GET", "/mypages?customerId=7")?.json as? [[String: Any]]
        XCTAssertEqual(byCustomer?.count, 1)
    }

    func testSeedFlow() throws { try seedFlow(try ShopCluster()) }
    func testSeedFlowThroughTheGateway() throws { try seedFlow(try ShopCluster(viaGateway: true)) }

    // MARK: inventory down

    func inventoryDown(_ shop: ShopCluster) throws {
        XCTAssertEqual(shop.call("PUT", "/inventories/5", ["stock": 100])?.status, 200)
        shop.kill9("inventory")
        for _ in 0..<5 { XCTAssertEqual(order(shop, product: 5, qty: 3)?.status, 201) }
        XCTAssertEqual((shop.call("GET", "/deliveries")?.json as? [Any])?.count, 5, "deliveries are created while inventory is down")
        try shop.start("inventory")
        XCTAssertTrue(shop.eventually { shop.stock(5) == 85 }, "stock \(String(describing: shop.stock(5)))")
    }

    func testInventoryDownOrdersStillSucceedAndStockCatchesUp() throws { try inventoryDown(try ShopCluster()) }
    func testInventoryDownThroughTheGateway() throws { try inventoryDown(try ShopCluster(viaGateway: true)) }

    // MARK: delivery down

    func deliveryDown(_ shop: ShopCluster) throws {
        shop.kill9("delivery")
        let r = try XCTUnwrap(order(shop, product: 1, qty: 1))
        XCTAssertGreaterThanOrEqual(r.status, 500)
        XCTAssertNotNil((r.json as? [String: Any])?["error"], "the 5xx says why")
        let orders = shop.call("GET", "/orders")?.json as? [[String: Any]] ?? []
        XCTAssertGreaterThanOrEqual(orders.count, 1, "(the gateway may retry a 503, each try is its own failed order)")
        XCTAssertFalse(orders.contains { $0["status"] as? String == "ordered" }, "\(orders)")
        try shop.start("delivery")
        XCTAssertTrue(shop.eventually(10) { self.order(shop, product: 1, qty: 1)?.status == 201 }, "orders work again once delivery is back")
    }

    func testDeliveryDownRefusesOrdersAndLeavesNoneOrdered() throws { try deliveryDown(try ShopCluster()) }
    func testDeliveryDownThroughTheGateway() throws { try deliveryDown(try ShopCluster(viaGateway: true)) }

    // MARK: cancel while delivery and inventory are down

    func testCancelWhileDeliveryAndInventoryAreDown() throws {
        let shop = try ShopCluster()
        XCTAssertEqual(shop.call("PUT", "/inventories/9", ["stock": 50])?.status, 200)
        let placed = try XCTUnwrap(order(shop, product: 9, qty: 4)?.json as? [String: Any])
        let id = try XCTUnwrap(placed["id"] as? Int)
        XCTAssertTrue(shop.eventually { shop.stock(9) == 46 })
        shop.kill9("delivery")
        shop.kill9("inventory")
        let cancel = shop.call("PATCH", "/orders/\(id)", ["type": "cancel"])
        XCTAssertEqual(cancel?.status, 200)
        XCTAssertEqual((cancel?.json as? [String: Any])?["status"] as? String, "cancelled")
        XCTAssertTrue(shop.eventually {
            (shop.call("GET", "/mypages/\(id)")?.json as? [String: Any])?["orderStatus"] as? String == "cancelled"
        }, "mypage shows the cancellation while delivery is still down")
        try shop.start("delivery")
        try shop.start("inventory")
        XCTAssertTrue(shop.eventually {
            (shop.call("GET", "/deliveries?orderId=\(id)")?.json as? [[String: Any]])?.first?["status"] as? String == "cancelled"
        })
        XCTAssertTrue(shop.eventually { shop.stock(9) == 50 })
        XCTAssertTrue(shop.eventually {
            let m = shop.call("GET", "/mypages/\(id)")?.json as? [String: Any]
            return m?["orderStatus"] as? String == "cancelled" && m?["deliveryStatus"] as? String == "cancelled"
        })
    }

    // MARK: exactly once under kills

    /// 1,000 orders and 300 cancellations. Inventory is SIGKILLed while it has a backlog (it is
    /// killed, 100 orders pile up, it restarts and is killed again a few milliseconds into
    /// applying them, i.e. in the middle of a page), and mypage is killed likewise. The stock
    /// and the mypage rows must come out exact: each event applied exactly once.
    func testConsumersKilledMidBatchApplyEveryEventExactlyOnce() throws {
        let shop = try ShopCluster()
        XCTAssertEqual(shop.call("PUT", "/inventories/42", ["stock": 100_000])?.status, 200)
        var placed: [(id: Int, qty: Int)] = []
        var expected = 100_000
        func bounce(_ name: String) throws {
            try shop.start(name)
            usleep(UInt32.random(in: 0...30_000))
            shop.kill9(name)
            try shop.start(name)
        }
        for round in 0..<10 {
            shop.kill9(round % 2 == 0 ? "inventory" : "mypage")
            for _ in 0..<100 {
                let qty = Int.random(in: 1...5)
                let r = order(shop, product: 42, qty: qty)
                XCTAssertEqual(r?.status, 201)
                if let id = (r?.json as? [String: Any])?["id"] as? Int { placed.append((id, qty)); expected -= qty }
            }
            try bounce(round % 2 == 0 ? "inventory" : "mypage")
        }
        XCTAssertEqual(placed.count, 1000)
        var cancelledIds: Set<Int> = []
        for (i, o) in placed.shuffled().prefix(300).enumerated() {
            if i % 100 == 0 { shop.kill9("inventory") }
            let r = shop.call("PATCH", "/orders/\(o.id)", ["type": "cancel"])
            XCTAssertEqual(r?.status, 200)
            if r?.status == 200 { expected += o.qty; cancelledIds.insert(o.id) }
            if i % 100 == 99 { try bounce("inventory") }
        }
        XCTAssertEqual(cancelledIds.count, 300)
        XCTAssertTrue(shop.eventually(60) { shop.stock(42) == expected }, "stock \(String(describing: shop.stock(42))) expected \(expected)")
        XCTAssertTrue(shop.eventually(30) {
            let rows = shop.call("GET", "/mypages")?.json as? [[String: Any]] ?? []
            let cancelledRows = rows.filter { $0["orderStatus"] as? String == "cancelled" && $0["deliveryStatus"] as? String == "cancelled" }
            return rows.count == 1000 && cancelledRows.count == 300
        }, "mypage rows converge to 1000 orders, 300 cancelled")
        let deliveries = shop.call("GET", "/deliveries")?.json as? [[String: Any]] ?? []
        XCTAssertEqual(deliveries.filter { $0["status"] as? String == "cancelled" }.count, 300)
    }

    // MARK: bad input

    func testBadInputGetsReasons() throws {
        let shop = try ShopCluster()
        let cases: [(String, String, Any?, Int)] = [
            ("POST", "/orders", "{not json", 400),
            ("POST", "/orders", "", 400),
            ("POST", "/orders", "[1,2]", 400),
            ("POST", "/orders", ["orderId": 1, "productId": 1], 400),
            ("POST", "/orders", ["orderId": 1, "productId": 1, "qty": -2], 400),
            ("POST", "/orders", ["orderId": 1, "productId": -1, "qty": 2], 400),
            ("POST", "/orders", ["orderId": 1, "productId": 1, "qty": "ten"], 400),
            ("PATCH", "/orders/12345", ["type": "cancel"], 404),
            ("PATCH", "/orders/abc", ["type": "cancel"], 400),
            ("GET", "/orders/12345", nil, 404),
            ("POST", "/deliveries", ["orderId": 1], 400),
            ("GET", "/deliveries/777", nil, 404),
            ("GET", "/inventories/777", nil, 404),
            ("PUT", "/inventories/1", ["stock": -1], 400),
            ("PUT", "/inventories/1", "{\"stock\":", 400),
            ("GET", "/mypages/777", nil, 404),
        ]
        for (method, path, body, status) in cases {
            let r = shop.call(method, path, body)
            XCTAssertEqual(r?.status, status, "\(method) \(path) \(String(describing: body))")
            XCTAssertNotNil((r?.json as? [String: Any])?["error"], "\(method) \(path) says why")
        }
        XCTAssertEqual((shop.call("GET", "/orders")?.json as? [Any])?.count, 0, "no half-written order")
        let placed = try XCTUnwrap(order(shop, product: 3, qty: 1)?.json as? [String: Any])
        let id = try XCTUnwrap(placed["id"] as? Int)
        XCTAssertEqual(shop.call("PATCH", "/orders/\(id)", ["type": "refund"])?.status, 400)
        XCTAssertEqual(shop.call("PATCH", "/orders/\(id)", ["type": "cancel"])?.status, 200)
        XCTAssertEqual(shop.call("PATCH", "/orders/\(id)", ["type": "cancel"])?.status, 200, "cancelling twice is harmless")
    }

    func testIdempotencyKeyReturnsTheFirstAnswer() throws {
        let shop = try ShopCluster()
        let body: [String: Any] = ["orderId": 5, "productId": 5, "qty": 1]
        let first = shop.call("POST", "/orders", body, headers: ["Idempotency-Key": "k-1"])
        let second = shop.call("POST", "/orders", body, headers: ["Idempotency-Key": "k-1"])
        XCTAssertEqual(first?.status, 201)
        XCTAssertEqual(second?.status, 201)
        XCTAssertEqual((first?.json as? [String: Any])?["id"] as? Int, (second?.json as? [String: Any])?["id"] as? Int)
        XCTAssertEqual((shop.call("GET", "/orders")?.json as? [[String: Any]])?.count, 1)
        XCTAssertEqual((shop.call("GET", "/deliveries")?.json as? [[String: Any]])?.count, 1)
    }

    /// A key reused for another order is a client's mistake: 422 saying so, not the first order
    /// passed off as the answer to the second. The first request repeated still gets its answer.
    func testIdempotencyKeyReusedWithAnotherBodyIsRefused() throws {
        let shop = try ShopCluster()
        let first = shop.call("POST", "/orders", ["orderId": 5, "productId": 5, "qty": 1], headers: ["Idempotency-Key": "k-2"])
        XCTAssertEqual(first?.status, 201)
        let id = (first?.json as? [String: Any])?["id"] as? Int
        XCTAssertNotNil(id)
        for other in [["orderId": 5, "productId": 5, "qty": 2], ["orderId": 6, "productId": 5, "qty": 1],
                      ["orderId": 5, "productId": 5, "qty": 1, "customerId": 3]] {
            let r = shop.call("POST", "/orders", other, headers: ["Idempotency-Key": "k-2"])
            XCTAssertEqual(r?.status, 422, "\(other)")
            let reason = (r?.json as? [String: Any])?["error"] as? String ?? ""
            XCTAssertTrue(reason.contains("Idempotency-Key") && reason.contains("different request"), reason)
        }
        let again = shop.call("POST", "/orders", ["qty": 1, "productId": 5, "orderId": 5], headers: ["Idempotency-Key": "k-2"])
        XCTAssertEqual(again?.status, 201, "the same body (in any key order) still gets the first answer")
        XCTAssertEqual((again?.json as? [String: Any])?["id"] as? Int, id)
        XCTAssertEqual((shop.call("GET", "/orders")?.json as? [[String: Any]])?.count, 1, "no second order")
        XCTAssertEqual((shop.call("GET", "/deliveries")?.json as? [[String: Any]])?.count, 1)
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
        try db.close()
        XCTAssertEqual(shop.call("POST", "/deliveries", ["orderId": 100, "productId": 8, "qty": 2])?.status, 201)
        try shop.start("order")
        XCTAssertTrue(shop.eventually {
            (shop.call("GET", "/orders/100")?.json as? [String: Any])?["status"] as? String == "ordered"
        })
        XCTAssertTrue(shop.eventually {
            (shop.call("GET", "/orders/101")?.json as? [String: Any])?["status"] as? String == "failed"
        })
        XCTAssertTrue(shop.eventually {
            (shop.call("GET", "/mypages/100")?.json as? [String: Any])?["orderStatus"] as? String == "ordered"
        })
        // The failed one leaves a cancelled tombstone at delivery: a late create cannot revive it.
        XCTAssertTrue(shop.eventually {
            (shop.call("GET", "/deliveries?orderId=101")?.json as? [[String: Any]])?.first?["status"] as? String == "cancelled"
        })
    }
}

/// `maskshop up`: the services come up on the ports the gateway config routes to (here a copy of
/// config/gateway.json moved to free ports, so the test does not need 8080-8084 and 9901).
final class UpCommandTests: XCTestCase {
    func testUpServesAnOrderAndLeavesNothingBehind() throws {
        let gateway = try requireGateway()
        let maskshop = try maskshopExecutable()
        guard gateway.deletingLastPathComponent() == maskshop.deletingLastPathComponent() else {
            throw XCTSkip("maskshop up runs the gateway next to maskshop; none is built at \(maskshop.deletingLastPathComponent().path)")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("up-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var config = try String(contentsOf: packageRoot.appendingPathComponent("config/gateway.json"), encoding: .utf8)
        var ports: [Int] = []
        for fixed in [8080, 9901, 8081, 8082, 8083, 8084] {
            let port = freePort()
            ports.append(port)
            config = config.replacingOccurrences(of: "\"port\": \(fixed)}", with: "\"port\": \(port)}")
        }
        XCTAssertFalse(config.contains("\"port\": 808") || config.contains("\"port\": 9901"), "every fixed port was moved: \(config)")
        let configPath = dir.appendingPathComponent("gateway.json").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)

        let p = Process()
        p.executableURL = maskshop
        p.arguments = ["up", "--data-dir", dir.appendingPathComponent("data").path, "--config", configPath]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        var placed: HTTPResult? = nil
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && p.isRunning {
            placed = call("POST", ports[0], "/orders", ["orderId": 1, "productId": 1, "qty": 1])
            if placed?.status == 201 { break }
            usleep(200_000)
        }
        XCTAssertEqual(placed?.status, 201)
        kill(p.processIdentifier, SIGTERM)
        let stop = Date().addingTimeInterval(15)
        while p.isRunning && Date() < stop { usleep(50_000) }
        XCTAssertFalse(p.isRunning)
        XCTAssertEqual(p.terminationStatus, 0)
        let log = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        for name in ["gateway", "order", "delivery", "inventory", "mypage"] {
            XCTAssertTrue(log.contains("\(name.padding(toLength: 9, withPad: " ", startingAt: 0))| "), "\(name)'s lines are prefixed:\n\(log)")
        }
        for port in ports {
            XCTAssertFalse(portInUse(port), "port \(port) is free again")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("data/order.sqlite").path))
    }
}

func portInUse(_ port: Int) -> Bool { call("GET", port, "/") != nil }
