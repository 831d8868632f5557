import Foundation
import GRDB
import Hummingbird
import Logging

/// Deliveries: created synchronously by order (idempotent per order), cancelled when order's
/// `OrderCancelled` arrives on its event feed.
enum DeliveryService {
    static func migrations(_ m: inout DatabaseMigrator) {
        m.registerMigration("deliveries") { db in
            try db.execute(sql: """
                CREATE TABLE deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, orderId INTEGER NOT NULL UNIQUE,
                    productId INTEGER NOT NULL, qty INTEGER NOT NULL, status TEXT NOT NULL);
                """)
        }
    }

    static func json(_ row: Row) -> [String: Any] {
        ["id": row["id"] as Int, "orderId": row["orderId"] as Int, "productId": row["productId"] as Int,
         "qty": row["qty"] as Int, "status": row["status"] as String]
    }

    static func register(_ routes: RouterGroup<BasicRequestContext>, store: Store) {
        routes.post("/deliveries") { request, context in
            let body = try await JSON.object(request)
            let orderId = try JSON.required(body, "orderId", min: 1)
            let productId = try JSON.required(body, "productId")
            let qty = try JSON.required(body, "qty", min: 1)
            let (row, created): (Record, Bool) = try await store.write { db in
                if let existing = try db.one(sql: "SELECT * FROM deliveries WHERE orderId = ?", arguments: [orderId]) {
                    return (Record(value: json(existing)), false)
                }
                try db.run(sql: "INSERT INTO deliveries (orderId, productId, qty, status) VALUES (?, ?, ?, 'ordered')",
                           arguments: [orderId, productId, qty])
                let row = try db.one(sql: "SELECT * FROM deliveries WHERE id = ?", arguments: [db.lastInsertedRowID])!
                var payload = json(row)
                payload.removeValue(forKey: "status")
                try Store.append(db, type: "DeliveryRegistered", payload: payload)
                return (Record(value: json(row)), true)
            }
            let id = row.value["id"] as? Int ?? 0
            context.logger.info("delivery \(id) \(created ? "created" : "already there") for order \(orderId)",
                                metadata: ["order": "\(orderId)"])
            return JSON.response(created ? .created : .ok, row.value)
        }
        routes.addReadRoutes(ReadableTable(name: "deliveries", key: "id", filter: "orderId", notFound: "no delivery", json: json),
                             store: store)
    }

    /// order's feed → cancel the order's delivery and announce it. A cancel for an order with no
    /// delivery yet leaves a cancelled tombstone so a late create cannot resurrect it.
    static func applyOrderEvent(_ db: Database, _ type: String, _ payload: [String: Any]) throws {
        guard type == "OrderCancelled", let orderId = payload.int("id") else { return }
        if let row = try db.one(sql: "SELECT * FROM deliveries WHERE orderId = ?", arguments: [orderId]) {
            guard (row["status"] as String) != "cancelled" else { return }
            try db.run(sql: "UPDATE deliveries SET status = 'cancelled' WHERE orderId = ?", arguments: [orderId])
            var p = json(row)
            p.removeValue(forKey: "status")
            try Store.append(db, type: "DeliveryCancelled", payload: p)
        } else {
            try db.run(sql: "INSERT INTO deliveries (orderId, productId, qty, status) VALUES (?, ?, ?, 'cancelled')",
                       arguments: [orderId, payload.int("productId") ?? 0, max(1, payload.int("qty") ?? 1)])
        }
    }
}
