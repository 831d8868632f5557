import Atomics
import Foundation
import GRDB

/// One service's SQLite database (WAL) with the transactional outbox and consumer offsets.
///
/// Durability: WAL with `synchronous = NORMAL`: a committed transaction survives the process
/// being killed (SIGKILL), which is what the consistency guarantees here rest on; only an OS crash
/// or power loss could lose the last commits.
public final class Store: Sendable {
    public let pool: DatabasePool
    /// Highest outbox seq committed, so long-polling readers wait without querying.
    let lastSeq = ManagedAtomic<Int>(0)

    public init(path: String, migrations: @escaping @Sendable (inout DatabaseMigrator) -> Void) throws {
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            try db.execute(sql: "PRAGMA busy_timeout = 5000")
        }
        pool = try DatabasePool(path: path, configuration: config)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("outbox") { db in
            try db.execute(sql: """
                CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, type TEXT NOT NULL,
                                     occurredAt TEXT NOT NULL, payload TEXT NOT NULL);
                CREATE TABLE offsets (feed TEXT PRIMARY KEY, seq INTEGER NOT NULL);
                """)
        }
        migrations(&migrator)
        try migrator.migrate(pool)
        let max = try pool.read { db in try Int.fetchOne(db, sql: "SELECT MAX(seq) FROM events") } ?? 0
        lastSeq.store(max, ordering: .relaxed)
    }

    /// Appends an event inside the caller's transaction (the state change's own).
    static func append(_ db: Database, type: String, payload: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys])
        try db.execute(
            sql: "INSERT INTO events (id, type, occurredAt, payload) VALUES (?, ?, ?, ?)",
            arguments: [UUID().uuidString.lowercased(), type, rfc3339(Date()), String(decoding: data, as: UTF8.self)])
    }

    /// Writes and, once committed, wakes long-polling readers.
    public func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let result = try await pool.write { db in
            let r = try body(db)
            return (r, try Int.fetchOne(db, sql: "SELECT MAX(seq) FROM events") ?? 0)
        }
        if result.1 > lastSeq.load(ordering: .relaxed) { lastSeq.store(result.1, ordering: .relaxed) }
        return result.0
    }

    /// `GET /events?after=&limit=&wait=`: oldest first, waiting up to `wait` seconds when empty.
    func events(after: Int, limit: Int, wait: Double) async throws -> [[String: Any]] {
        let deadline = Date().addingTimeInterval(min(wait, 30))
        while lastSeq.load(ordering: .relaxed) <= after && Date() < deadline {
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        let rows = try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT seq, id, type, occurredAt, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                             arguments: [after, limit])
        }
        return rows.map { row in
            let payload = (try? JSONSerialization.jsonObject(with: Data((row["payload"] as String).utf8))) ?? [:]
            return ["seq": row["seq"] as Int, "id": row["id"] as String, "type": row["type"] as String,
                    "occurredAt": row["occurredAt"] as String, "payload": payload]
        }
    }

    static func offset(_ db: Database, feed: String) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT seq FROM offsets WHERE feed = ?", arguments: [feed]) ?? 0
    }

    static func setOffset(_ db: Database, feed: String, seq: Int) throws {
        try db.execute(sql: "INSERT INTO offsets (feed, seq) VALUES (?, ?) ON CONFLICT(feed) DO UPDATE SET seq = excluded.seq",
                       arguments: [feed, seq])
    }
}

func rfc3339(_ date: Date) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: date)
}
