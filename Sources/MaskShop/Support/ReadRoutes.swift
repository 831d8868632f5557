import GRDB
import Hummingbird

/// A table clients read through two routes: `GET /<table>` (its rows in key order, or only those
/// whose `filter` column equals that query parameter when the request has it) and
/// `GET /<table>/:<key>` (one row, or a 404).
struct ReadableTable: Sendable {
    let name: String
    /// The primary key column, by which the list is ordered; also the path parameter's name.
    let key: String
    /// A column the list can be narrowed by, as `GET /deliveries?orderId=7`.
    var filter: String? = nil
    /// The 404's reason, followed by the key asked for: "no order" → "no order 7".
    let notFound: String
    /// A row as the JSON object clients get.
    let json: @Sendable (Row) -> [String: Any]
}

extension RouterMethods where Context == BasicRequestContext {
    /// Registers `GET /<table>` and `GET /<table>/:<key>` for `table`, read from `store`.
    func addReadRoutes(_ table: ReadableTable, store: Store) {
        let all = "SELECT * FROM \(table.name) ORDER BY \(table.key)"
        let filtered = table.filter.map { (column: $0, sql: "SELECT * FROM \(table.name) WHERE \($0) = ? ORDER BY \(table.key)") }
        let byKey = "SELECT * FROM \(table.name) WHERE \(table.key) = ?"
        get("/\(table.name)") { request, _ in
            let query: (sql: String, arguments: StatementArguments) =
                if let filtered, let value = try request.intQuery(filtered.column) { (filtered.sql, [value]) } else { (all, []) }
            let rows = try await store.pool.read { db in
                Rows(value: try Row.fetchAll(db, sql: query.sql, arguments: query.arguments).map(table.json))
            }
            return JSON.response(.ok, rows.value)
        }
        get("/\(table.name)/:\(table.key)") { _, context in
            let key = try context.intParameter(table.key)
            guard let row = try await store.pool.read({ db in
                try db.one(sql: byKey, arguments: [key]).map { Record(value: table.json($0)) }
            }) else { throw APIError(.notFound, "\(table.notFound) \(key)") }
            return JSON.response(.ok, row.value)
        }
    }
}
