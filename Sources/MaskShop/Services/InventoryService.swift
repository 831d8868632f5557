import Foundation
import GRDB
import Hummingbird

/// Stock per product: set by PUT, moved by delivery's events.
enum InventoryService {
    static func migrations(_ m: inout DatabaseMigrator) {
        m.registerMigration("inventories") { db in
            try db.execute(sql: "CREATE TABLE inventories (productId INTEGER PRIMARY KEY, stock INTEGER NOT NULL)")
        }
    }

    static func json(_ row: Row) -> [String: Any] { ["productId": row["productId"] as Int, "stock": row["stock"] as Int] }

    static func register(_ routes: RouterGroup<BasicRequestContext>, store: Store) {
        routes.put("/inventories/:productId") { request, context in
            let productId = try context.intParameter("productId")
            let body = try await JSON.object(request)
            let stock = try JSON.required(body, "stock")
            try await store.write { db in
                try db.run(sql: "INSERT INTO inventories (productId, stock) VALUES (?, ?) ON CONFLICT(productId) DO UPDATE SET stock = excluded.stock",
                           arguments: [productId, stock])
            }
            return JSON.response(.ok, ["productId": productId, "stock": stock])
        }
        routes.get("/inventories") { _, _ in
            let rows = try await store.pool.read { db in Rows(value: try Row.fetchAll(db, sql: "SELECT * FROM inventories ORDER BY productId").map(json)) }
            return JSON.response(.ok, rows.value)
        }
        routes.get("/inventories/:productId") { _, context in
            let id = try context.intParameter("productId")
            guard let row = try await store.pool.read({ db in
                try db.one(sql: "SELECT * FROM inventories WHERE productId = ?", arguments: [id]).map { Record(value: json($0)) }
            }) else { throw APIError(.notFound, "no inventory for product \(id)") }
            return JSON.response(.ok, row.value)
        }
    }

    /// delivery's feed: a registered delivery takes `qty` off, a cancelled one puts it back.
    static func applyDeliveryEvent(_ db: Database, _ type: String, _ payload: [String: Any]) throws {
        guard let productId = payload.int("productId"), let qty = payload.int("qty") else { return }
        let delta: Int
        switch type {
        case "DeliveryRegistered": delta = -qty
        case "DeliveryCancelled": delta = qty
        default: return
        }
        try db.run(sql: "INSERT INTO inventories (productId, stock) VALUES (?, ?) ON CONFLICT(productId) DO UPDATE SET stock = stock + ?",
                   arguments: [productId, delta, delta])
    }
}
