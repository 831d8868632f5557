import Foundation
import GRDB
import Hummingbird
import HummingbirdTesting
import XCTest

@testable import MaskShop

/// A delivery service on a real socket whose answers the test holds back: `POST /deliveries`
/// waits until released (a slow delivery, or a slow way to it), `GET /deliveries?orderId=`
/// answers what delivery knows (the posted delivery once the POST has arrived, or nothing yet).
final class SlowDelivery: @unchecked Sendable {
    private let lock = NSLock()
    private var postsHeld = true
    private var getsHeld = false
    private var posted: [Int: [String: Any]] = [:]
    private var getCount = 0
    /// Whether a `GET` shows the deliveries whose `POST` arrived (true) or none (false: the POST
    /// has not reached delivery yet, e.g. it waits in the gateway's queue).
    let listsPosted: Bool

    init(listsPosted: Bool) { self.listsPosted = listsPosted }

    func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    var postCount: Int { locked { posted.count } }
    var gets: Int { locked { getCount } }
    func releasePosts() { locked { postsHeld = false } }
    func holdGets(_ on: Bool) { locked { getsHeld = on } }
    /// A delivery that exists at delivery although no POST came through this stub.
    func add(orderId: Int) { locked { posted[orderId] = ["id": 500 + orderId, "orderId": orderId, "productId": 8, "qty": 2, "status": "ordered"] } }

    func application() -> Application<RouterResponder<BasicRequestContext>> {
        let router = Router()
        router.post("/deliveries") { request, _ in
            var request = request
            let body = try await request.collectBody(upTo: 1 << 16)
            let o = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
            let orderId = (o["orderId"] as? NSNumber)?.intValue ?? 0
            let delivery: [String: Any] = ["id": 900 + orderId, "orderId": orderId, "productId": o["productId"] ?? 0,
                                           "qty": o["qty"] ?? 0, "status": "ordered"]
            self.locked { self.posted[orderId] = delivery }
            while self.locked({ self.postsHeld }) { try await Task.sleep(nanoseconds: 10_000_000) }
            return JSON.response(.created, delivery)
        }
        router.get("/deliveries") { request, _ in
            self.locked { self.getCount += 1 }
            while self.locked({ self.getsHeld }) { try await Task.sleep(nanoseconds: 10_000_000) }
            let id = try request.intQuery("orderId") ?? -1
            let list: [[String: Any]] = self.locked { self.listsPosted ? (self.posted[id].map { [$0] } ?? []) : [] }
            return JSON.response(.ok, list)
        }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }
}

/// Order's reconciliation (which completes or fails orders a crash left `pending`) against
/// requests that are still placing their orders, on real sockets.
final class ReconcilerRaceTests: XCTestCase {
    /// Order with its reconciler passing every 50 ms and treating every pending row as orphaned,
    /// as its pass at start-up does.
    func withOrder(_ delivery: SlowDelivery, dir: URL, setUp: (String) throws -> Void = { _ in },
                   _ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try setUp(dir.appendingPathComponent("order.sqlite").path)
        try await delivery.application().test(.live) { stub in
            var o = ServiceOptions(port: 0)
            o.dataDir = dir.path
            o.deliveryURL = "http://127.0.0.1:\(stub.port!)"
            o.reconcileInterval = 0.05
            o.orphanAge = 0
            try await makeShopApplication(.order, o).test(.live, body)
        }
    }

    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("reconcile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    // Each on a connection of its own (the test client's one connection is busy with the POST).
    static func events(_ client: any TestClientProtocol) async throws -> [String] {
        (call("GET", client.port!, "/events?after=0&wait=0")?.json as? [[String: Any]] ?? []).compactMap { $0["type"] as? String }
    }

    static func status(_ client: any TestClientProtocol, _ id: Int) async throws -> String? {
        (call("GET", client.port!, "/orders/\(id)")?.json as? [String: Any])?["status"] as? String
    }

    static func waitFor(_ seconds: Double = 10, _ check: () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !check() && Date() < deadline { try await Task.sleep(nanoseconds: 10_000_000) }
    }

    /// Delivery has not seen the order yet while its request waits: reconciliation must leave the
    /// row to the request, which then places it — not fail it (with a compensating cancel) and
    /// have the request mark it `ordered` over that.
    func testReconciliationLeavesAnOrderBeingPlacedToItsRequest() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let delivery = SlowDelivery(listsPosted: false)
        try await withOrder(delivery, dir: dir) { client in
            async let placed = client.execute(uri: "/orders", method: .post,
                                              body: ByteBuffer(string: #"{"orderId":1111,"productId":1111,"qty":10}"#)) { r in
                (r.status, parseJSON(r.body) as? [String: Any])
            }
            try await Self.waitFor { delivery.postCount == 1 }
            XCTAssertEqual(delivery.postCount, 1)
            // Reconciliation passes about ten times over the pending row meanwhile (well within
            // order's 5 s timeout for delivery).
            try await Task.sleep(nanoseconds: 500_000_000)
            let whileHeld = try await Self.status(client, 1)
            XCTAssertEqual(whileHeld, "pending", "the row is its request's while the request runs")
            delivery.releasePosts()
            let (status, order) = try await placed
            XCTAssertEqual(status, .created)
            XCTAssertEqual(order?["status"] as? String, "ordered")
            let final = try await Self.status(client, 1)
            XCTAssertEqual(final, "ordered")
            let events = try await Self.events(client)
            XCTAssertEqual(events, ["OrderPlaced"], "no compensating cancel for an order that was placed")
        }
    }

    /// Delivery has the order's delivery while its answer is still on the way: reconciliation must
    /// not complete the order too, or it is placed (and announced) twice.
    func testReconciliationDoesNotPlaceAnOrderTwice() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let delivery = SlowDelivery(listsPosted: true)
        try await withOrder(delivery, dir: dir) { client in
            async let placed = client.execute(uri: "/orders", method: .post,
                                              body: ByteBuffer(string: #"{"orderId":1111,"productId":1111,"qty":10}"#)) { r in
                (r.status, parseJSON(r.body) as? [String: Any])
            }
            try await Self.waitFor { delivery.postCount == 1 }
            try await Task.sleep(nanoseconds: 500_000_000)
            delivery.releasePosts()
            let (status, order) = try await placed
            XCTAssertEqual(status, .created)
            XCTAssertEqual(order?["status"] as? String, "ordered")
            let events = try await Self.events(client)
            XCTAssertEqual(events, ["OrderPlaced"], "one order, one OrderPlaced")
        }
    }

    /// A row left pending by a crash that moves on (here: cancelled by hand) while reconciliation
    /// is asking delivery about it: reconciliation must not bring it back as `ordered`.
    func testReconciliationDoesNotResurrectARowThatMovedOn() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let delivery = SlowDelivery(listsPosted: true)
        delivery.add(orderId: 100)
        delivery.holdGets(true)
        let path = dir.appendingPathComponent("order.sqlite").path
        try await withOrder(delivery, dir: dir, setUp: { _ in
            // The schema as order makes it, then one orphan of an earlier process.
            _ = try Store(path: path) { m in OrderService.migrations(&m) }
            let db = try DatabaseQueue(path: path)
            try db.write { db in
                try db.execute(sql: "INSERT INTO orders (id, orderId, productId, qty, status, createdAt) VALUES (100, 1, 8, 2, 'pending', 0)")
            }
            try db.close()
        }) { client in
            try await Self.waitFor { delivery.gets >= 1 }
            XCTAssertGreaterThanOrEqual(delivery.gets, 1, "reconciliation asked delivery about the orphan")
            let db = try DatabaseQueue(path: path)
            try await db.write { db in try db.execute(sql: "UPDATE orders SET status = 'cancelled' WHERE id = 100") }
            try db.close()
            delivery.holdGets(false)
            try await Task.sleep(nanoseconds: 500_000_000)
            let status = try await Self.status(client, 100)
            XCTAssertEqual(status, "cancelled")
            let events = try await Self.events(client)
            XCTAssertEqual(events, [], "no OrderPlaced for a row that is no longer pending")
        }
    }
}
