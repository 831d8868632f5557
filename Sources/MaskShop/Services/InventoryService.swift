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
        routes.addReadRoutes(ReadableTable(name: "inventories", key: "productId", notFound: "no inventory for product", json: json),
                             store: store)
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
