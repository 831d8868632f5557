import Foundation
import GRDB
import Hummingbird
import HTTPTypes
import Logging
import NIOCore
import ServiceLifecycle

/// Orders. `POST /orders` calls delivery synchronously before it answers: an order not assigned
/// to a delivery must not exist (the seed's transaction requirement).
///
/// Crash windows and how they close — both a compensating cancel and reconciliation on start:
/// 1. The order row is first committed as `pending` (no event, never visible as `ordered`),
///    then delivery is called (`POST /deliveries`, idempotent per order `id`).
/// 2. Delivery answers 200/201 → one transaction: status `ordered` + `OrderPlaced`.
/// 3. Delivery clearly never saw the request (connection refused, or the gateway shed it with
///    429 / 503 `x-envoy-overloaded`) or refused it (4xx) → status `failed`, 5xx to the client.
/// 4. The outcome is ambiguous (timeout, reset, any other 5xx — a delivery may have been
///    created) → status `failed` and, in the same transaction, a **compensating
///    `OrderCancelled`** (`reason: delivery-failed`). Delivery consumes it: it cancels that
///    order's delivery (→ `DeliveryCancelled`, stock comes back) or, if none exists yet, writes a
///    cancelled tombstone so a late-arriving create cannot resurrect it.
/// 5. The process dies between 1 and 2/3/4 → **reconciliation on start** (and every 5 s for
///    rows pending longer than 60 s): order asks delivery `GET /deliveries?orderId=` and
///    completes the order (`ordered` + `OrderPlaced`) if a live delivery exists, else marks it
///    `failed`. While delivery is down the row stays `pending` (never `ordered`) and
///    reconciliation retries.
///
/// Reconciliation and a request never both decide one order: a row whose request is still
/// running in this process (`Placing`) is left to that request, and every outcome is written
/// only where the row is still `pending` (`UPDATE ... WHERE status = 'pending'`), its event only
/// when that update changed the row. Whoever moves the row first decides; the other sees it moved.
enum OrderService {
    /// The orders this process's requests are placing: their rows are theirs while `pending`.
    final class Placing: @unchecked Sendable {
        private let lock = NSLock()
        private var ids: Set<Int> = []
        func insert(_ id: Int) { lock.lock(); ids.insert(id); lock.unlock() }
        func remove(_ id: Int) { lock.lock(); ids.remove(id); lock.unlock() }
        func contains(_ id: Int) -> Bool { lock.lock(); defer { lock.unlock() }; return ids.contains(id) }
    }

    /// What a request says about its body, to tell a retry from another order under the same key.
    static func fingerprint(orderId: Int, productId: Int, qty: Int, customerId: Int?) -> String {
        "orderId=\(orderId);productId=\(productId);qty=\(qty);customerId=\(customerId.map(String.init) ?? "-")"
    }

    static func migrations(_ m: inout DatabaseMigrator) {
        m.registerMigration("orders") { db in
            try db.execute(sql: """
                CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT, orderId INTEGER NOT NULL,
                    productId INTEGER NOT NULL, qty INTEGER NOT NULL, customerId INTEGER, status TEXT NOT NULL,
                    createdAt REAL NOT NULL);
                CREATE TABLE idempotency (key TEXT PRIMARY KEY, orderRowId INTEGER NOT NULL);
                """)
        }
        m.registerMigration("idempotency-request") { db in
            // The request a key was first used for (NULL for keys stored before this column).
            try db.execute(sql: "ALTER TABLE idempotency ADD COLUMN request TEXT")
        }
    }

    static func json(_ row: Row) -> [String: Any] {
        var o: [String: Any] = ["id": row["id"] as Int, "orderId": row["orderId"] as Int, "productId": row["productId"] as Int,
                                "qty": row["qty"] as Int, "status": row["status"] as String]
        if let c = row["customerId"] as Int? { o["customerId"] = c }
        return o
    }

    static func event(_ row: Row) -> [String: Any] {
        var p = json(row)
        p.removeValue(forKey: "status")
        return p
    }

    /// How long order waits for delivery before it gives up (and compensates).
    static let deliveryTimeout: TimeAmount = .seconds(5)

    static func register(_ routes: RouterGroup<BasicRequestContext>, store: Store, deliveryURL: String, logger: Logger, placing: Placing) {
        routes.post("/orders") { request, _ in
            try await place(request, store: store, deliveryURL: deliveryURL, logger: logger, placing: placing)
        }
        routes.patch("/orders/:id") { request, context in
            let id = try context.intParameter("id")
            let body = try await JSON.object(request)
            let type = try JSON.string(body, "type", hint: "\"cancel\"")
            guard type.trimmingCharacters(in: .whitespaces).lowercased() == "cancel" else {
                throw APIError(.badRequest, "field 'type' must be \"cancel\", got \(JSONText.encode(type))")
            }
            let row: Record = try await store.write { db in
                guard let row = try db.one(sql: "SELECT * FROM orders WHERE id = ?", arguments: [id]) else {
                    throw APIError(.notFound, "no order \(id)")
                }
                let status: String = row["status"]
                if status == "cancelled" { return Record(value: json(row)) }
                guard status == "ordered" else {
                    throw APIError(.conflict, "order \(id) is \(status); only an ordered order can be cancelled")
                }
                try db.run(sql: "UPDATE orders SET status = 'cancelled' WHERE id = ?", arguments: [id])
                try Store.append(db, type: "OrderCancelled", payload: event(row))
                return Record(value: json(try db.one(sql: "SELECT * FROM orders WHERE id = ?", arguments: [id])!))
            }
            return JSON.response(.ok, row.value)
        }
        routes.addReadRoutes(ReadableTable(name: "orders", key: "id", notFound: "no order", json: json), store: store)
    }

    static func place(_ request: Request, store: Store, deliveryURL: String, logger: Logger, placing: Placing) async throws -> Response {
        let body = try await JSON.object(request)
        let orderId = try JSON.required(body, "orderId")
        let productId = try JSON.required(body, "productId")
        let qty = try JSON.required(body, "qty", min: 1)
        let customerId = try JSON.int(body, "customerId", optional: true)
        let key = request.headers[HTTPField.Name("Idempotency-Key")!].map { String($0) }
        let requestPrint = fingerprint(orderId: orderId, productId: productId, qty: qty, customerId: customerId)

        // 1. pending row (and the idempotency key, so a concurrent retry finds it). The id is
        // marked as being placed before the row is committed, so reconciliation never sees the
        // row without the mark.
        enum Start: Sendable { case new(Int), replay(Record) }
        let start: Start = try await store.write { db in
            if let key, let existing = try Row.fetchOne(db.cachedStatement(sql: "SELECT orderRowId, request FROM idempotency WHERE key = ?"),
                                                        arguments: [key]) {
                if let first = existing["request"] as String?, first != requestPrint {
                    throw APIError(.unprocessableContent,
                                   "Idempotency-Key '\(key)' was already used for a different request (\(first.replacingOccurrences(of: ";", with: ", "))); use a new key for a new order")
                }
                let rowId: Int = existing["orderRowId"]
                return .replay(Record(value: json(try db.one(sql: "SELECT * FROM orders WHERE id = ?", arguments: [rowId])!)))
            }
            try db.run(sql: "INSERT INTO orders (orderId, productId, qty, customerId, status, createdAt) VALUES (?, ?, ?, ?, 'pending', ?)",
                       arguments: [orderId, productId, qty, customerId, Date().timeIntervalSince1970])
            let id = Int(db.lastInsertedRowID)
            placing.insert(id)
            if let key { try db.run(sql: "INSERT INTO idempotency (key, orderRowId, request) VALUES (?, ?, ?)", arguments: [key, id, requestPrint]) }
            return .new(id)
        }
        let id: Int
        switch start {
        case .replay(let row):
            let status = row.value["status"] as? String ?? ""
            if status == "pending" { throw APIError(.conflict, "the request with this Idempotency-Key is still in progress") }
            if status == "failed" {
                throw APIError(.serviceUnavailable, "the first attempt with this Idempotency-Key failed: delivery unavailable")
            }
            return JSON.response(.created, row.value)
        case .new(let n): id = n
        }
        defer { placing.remove(id) }

        // 2. the synchronous delivery call
        var failure: (HTTPResponse.Status, String, ambiguous: Bool)? = nil
        do {
            let r = try await PeerClient.send(.POST, deliveryURL, "/deliveries",
                                              json: ["orderId": id, "productId": productId, "qty": qty], timeout: deliveryTimeout)
            let text = String(decoding: r.body.prefix(200), as: UTF8.self)
            switch r.status {
            case 200, 201: break
            case 429:
                failure = (.serviceUnavailable, "delivery rate limited (429): \(text)", false)
            case 503 where r.headers["x-envoy-overloaded"].first == "true":
                // Shed by the gateway (circuit breaker overflow, rate limit): delivery never saw it.
                failure = (.serviceUnavailable, "delivery unavailable (\(r.status)): \(text)", false)
            case 400..<500:
                failure = (.badGateway, "delivery refused the order (\(r.status)): \(text)", false)
            default:
                // Any other 5xx (a gateway's reset/timeout/no-healthy-upstream answer, or delivery's
                // own) may hide a delivery that was created: compensate.
                failure = (r.status == 504 ? .gatewayTimeout : .serviceUnavailable,
                           "delivery failed (\(r.status)): \(text)", true)
            }
        } catch let e as PeerError where e.kind == .connect {
            failure = (.serviceUnavailable, "delivery unreachable: \(e.description)", false)
        } catch {
            failure = (.gatewayTimeout, "delivery did not answer: \(error)", true)
        }

        // 3. commit the outcome with its event, only over a row that is still pending
        if let failure {
            let moved: Record? = try await store.write { db in
                try db.run(sql: "UPDATE orders SET status = 'failed' WHERE id = ? AND status = 'pending'", arguments: [id])
                let row = try db.one(sql: "SELECT * FROM orders WHERE id = ?", arguments: [id])!
                guard db.changesCount > 0 else { return Record(value: json(row)) }
                if let key { try db.run(sql: "DELETE FROM idempotency WHERE key = ?", arguments: [key]) }
                if failure.ambiguous {
                    var payload = event(row)
                    payload["reason"] = "delivery-failed"
                    try Store.append(db, type: "OrderCancelled", payload: payload)
                }
                return nil
            }
            if let moved, moved.value["status"] as? String == "ordered" {
                // Reconciliation found its delivery and placed it meanwhile: it is an order.
                return JSON.response(.created, moved.value)
            }
            logger.warning("order \(id) not placed: \(failure.1)")
            throw APIError(failure.0, "order not placed: \(failure.1)")
        }
        let row: Record = try await store.write { db in
            try db.run(sql: "UPDATE orders SET status = 'ordered' WHERE id = ? AND status = 'pending'", arguments: [id])
            let changed = db.changesCount > 0
            let row = try db.one(sql: "SELECT * FROM orders WHERE id = ?", arguments: [id])!
            if changed { try Store.append(db, type: "OrderPlaced", payload: event(row)) }
            return Record(value: json(row))
        }
        guard row.value["status"] as? String == "ordered" else {
            // Reconciliation decided first (it failed the order and cancels its delivery).
            throw APIError(.serviceUnavailable, "order not placed: it was marked \(row.value["status"] as? String ?? "?") while delivery was answering")
        }
        logger.info("order \(id) placed", metadata: ["order": "\(id)"])
        return JSON.response(.created, row.value)
    }

    /// Completes or fails orders left `pending` by a crash (see the type's comment).
    struct Reconciler: Service {
        let store: Store
        let deliveryURL: String
        let logger: Logger
        let placing: Placing
        var interval: Double = 5
        var orphanAge: Double = 60
        /// Rows created before this process started are orphans from its first pass on.
        let started = Date().timeIntervalSince1970

        func run() async throws {
            do {
                try await cancelWhenGracefulShutdown { try await loop() }
            } catch is CancellationError {}
        }

        func loop() async throws {
            var first = true
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                // First pass: every row pending from before this process (a crash's orphans);
                // then rows pending longer than `orphanAge`. Never a row a request is placing.
                let cutoff = first ? max(started, Date().timeIntervalSince1970 - orphanAge) : Date().timeIntervalSince1970 - orphanAge
                first = false
                let pending = try await store.pool.read { db in
                    try Int.fetchAll(db, sql: "SELECT id FROM orders WHERE status = 'pending' AND createdAt <= ?", arguments: [cutoff])
                }
                for id in pending where !placing.contains(id) {
                    guard let r = try? await PeerClient.send(.GET, deliveryURL, "/deliveries?orderId=\(id)", timeout: .seconds(3)),
                          r.status == 200, let list = r.json as? [[String: Any]]
                    else { continue }  // delivery down: stay pending, try again later
                    let exists = list.contains { ($0["status"] as? String) != "cancelled" }
                    let placing = self.placing
                    let changed = try await store.write { db -> Bool in
                        // The row may have moved on (or been taken by a request) while delivery answered.
                        guard !placing.contains(id) else { return false }
                        try db.run(sql: "UPDATE orders SET status = ? WHERE id = ? AND status = 'pending'",
                                   arguments: [exists ? "ordered" : "failed", id])
                        guard db.changesCount > 0 else { return false }
                        let row = try db.one(sql: "SELECT * FROM orders WHERE id = ?", arguments: [id])!
                        if exists {
                            try Store.append(db, type: "OrderPlaced", payload: event(row))
                        } else {
                            try db.run(sql: "DELETE FROM idempotency WHERE orderRowId = ?", arguments: [id])
                            // A tombstone at delivery, in case a create for it is still on its way.
                            var payload = event(row)
                            payload["reason"] = "delivery-failed"
                            try Store.append(db, type: "OrderCancelled", payload: payload)
                        }
                        return true
                    }
                    if changed { logger.info("reconciled pending order \(id): \(exists ? "ordered" : "failed")") }
                }
                try? await Task.sleep(nanoseconds: UInt64(interval * 1e9))
            }
        }
    }
}
