import Foundation
import GRDB
import Hummingbird

/// The CQRS read side: rows built only from order's and delivery's events. Each column is owned
/// by one feed (orderStatus by order's, deliveryStatus by delivery's), so the rows converge
/// whatever order the two feeds are read in.
enum MypageService {
    static func migrations(_ m: inout DatabaseMigrator) {
        m.registerMigration("mypages") { db in
            try db.execute(sql: """
                CREATE TABLE mypages (orderId INTEGER PRIMARY KEY, productId INTEGER, qty INTEGER, customerId INTEGER,
                    orderStatus TEXT, deliveryStatus TEXT);
                """)
        }
    }

    static func json(_ row: Row) -> [String: Any] {
        var o: [String: Any] = ["orderId": row["orderId"] as Int]
        o["productId"] = (row["productId"] as Int?) ?? NSNull()
        o["qty"] = (row["qty"] as Int?) ?? NSNull()
        o["orderStatus"] = (row["orderStatus"] as String?) ?? NSNull()
        o["deliveryStatus"] = (row["deliveryStatus"] as String?) ?? NSNull()
        if let c = row["customerId"] as Int? { o["customerId"] = c }
        return o
    }

    static func register(_ routes: RouterGroup<BasicRequestContext>, store: Store) {
        routes.addReadRoutes(ReadableTable(name: "mypages", key: "orderId", filter: "customerId", notFound: "no mypage row for order",
                                           json: json), store: store)
    }

    /// The upsert of one feed's column (two fixed texts, so each is prepared once per connection).
    static func upsertSQL(_ column: String) -> String {
        """
        INSERT INTO mypages (orderId, productId, qty, customerId, \(column)) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT(orderId) DO UPDATE SET \(column) = excluded.\(column),
            productId = COALESCE(mypages.productId, excluded.productId), qty = COALESCE(mypages.qty, excluded.qty),
            customerId = COALESCE(mypages.customerId, excluded.customerId)
        """
    }
    static let upsertOrderStatus = upsertSQL("orderStatus")
    static let upsertDeliveryStatus = upsertSQL("deliveryStatus")

    static func upsert(_ db: Database, orderId: Int, _ payload: [String: Any], column: String, value: String) throws {
        let sql = column == "orderStatus" ? upsertOrderStatus : column == "deliveryStatus" ? upsertDeliveryStatus : upsertSQL(column)
        try db.run(sql: sql, arguments: [orderId, payload.int("productId"), payload.int("qty"), payload.int("customerId"), value])
    }

    static func applyOrderEvent(_ db: Database, _ type: String, _ payload: [String: Any]) throws {
        guard let id = payload.int("id") else { return }
        switch type {
        case "OrderPlaced": try upsert(db, orderId: id, payload, column: "orderStatus", value: "ordered")
        case "OrderCancelled":
            // A compensating cancel (delivery failed while the order was placed) ends a failed order.
            let value = payload["reason"] as? String == "delivery-failed" ? "failed" : "cancelled"
            try upsert(db, orderId: id, payload, column: "orderStatus", value: value)
        default: return
        }
    }

    static func applyDeliveryEvent(_ db: Database, _ type: String, _ payload: [String: Any]) throws {
        guard let orderId = payload.int("orderId") else { return }
        switch type {
        case "DeliveryRegistered": try upsert(db, orderId: orderId, payload, column: "deliveryStatus", value: "ordered")
        case "DeliveryCancelled": try upsert(db, orderId: orderId, payload, column: "deliveryStatus", value: "cancelled")
        default: return
        }
    }
}
