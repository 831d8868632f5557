import Atomics
import Foundation
import GRDB

/// How hard a commit is pushed to disk (SQLite's `PRAGMA synchronous` in WAL mode).
public enum Durability: String, Sendable, CaseIterable {
    /// fsync of the WAL at every commit: a commit answered to a client survives a power loss.
    case full
    /// No fsync per commit (only at checkpoints): survives the process being killed, may lose
    /// the last commits on an OS crash or power loss.
    case normal
}

/// One service's SQLite database (WAL) with the transactional outbox and consumer offsets.
///
/// Durability: WAL with `synchronous = FULL` by default, so every answered write is on disk.
/// Writes are **group-committed**: the writes that arrive while a commit is being synced are
/// run together in the next transaction, each in its own savepoint (one failing write rolls back
/// only itself), and all of them are answered after that one fsync. Under 16 concurrent clients
/// that is several orders per fsync instead of one.
public final class Store: Sendable {
    public let pool: DatabasePool
    /// Highest outbox seq committed, so long-polling readers wait without querying.
    let lastSeq = ManagedAtomic<Int>(0)
    private let group: GroupCommit

    public init(path: String, durability: Durability = .full,
                migrations: @escaping @Sendable (inout DatabaseMigrator) -> Void) throws {
        var config = Configuration()
        let sync = durability == .full ? "FULL" : "NORMAL"
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(sync)")
            try db.execute(sql: "PRAGMA busy_timeout = 5000")
        }
        pool = try DatabasePool(path: path, configuration: config)
        // DatabasePool switches the writer to WAL *after* `prepareDatabase` and sets
        // `synchronous = NORMAL` while doing so: the writer's level is set again here, and checked.
        let level = try pool.writeWithoutTransaction { db -> Int in
            try db.execute(sql: "PRAGMA synchronous = \(sync)")
            return try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1
        }
        guard level == (durability == .full ? 2 : 1) else {
            throw DatabaseError(message: "PRAGMA synchronous = \(sync) did not take (level \(level)) at \(path)")
        }
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
        group = GroupCommit(pool: pool, lastSeq: lastSeq)
    }

    /// Runs `body` in a transaction (shared with concurrent writers, in its own savepoint) and
    /// returns once it is committed; then wakes long-polling readers. A thrown error rolls back
    /// `body`'s writes only.
    public func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await group.submit(body)
    }

    /// Appends an event inside the caller's transaction (the state change's own).
    static func append(_ db: Database, type: String, payload: [String: Any]) throws {
        try db.run(
            sql: "INSERT INTO events (id, type, occurredAt, payload) VALUES (?, ?, ?, ?)",
            arguments: [UUID().uuidString.lowercased(), type, rfc3339(Date()), JSONText.encode(payload)])
    }

    /// `GET /events?after=&limit=&wait=`: oldest first, waiting up to `wait` seconds when empty.
    func events(after: Int, limit: Int, wait: Double) async throws -> [[String: Any]] {
        let deadline = Date().addingTimeInterval(min(wait, 30))
        while lastSeq.load(ordering: .relaxed) <= after && Date() < deadline {
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        let rows = try await pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT seq, id, type, occurredAt, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?"),
                             arguments: [after, limit])
        }
        return rows.map { row in
            // The stored payload is JSON already: spliced in, not parsed and written again.
            let payload = JSONText.Raw(text: row["payload"] as String)
            return ["seq": row["seq"] as Int, "id": row["id"] as String, "type": row["type"] as String,
                    "occurredAt": row["occurredAt"] as String, "payload": payload]
        }
    }

    static func offset(_ db: Database, feed: String) throws -> Int {
        try Int.fetchOne(db.cachedStatement(sql: "SELECT seq FROM offsets WHERE feed = ?"), arguments: [feed]) ?? 0
    }

    static func setOffset(_ db: Database, feed: String, seq: Int) throws {
        try db.run(sql: "INSERT INTO offsets (feed, seq) VALUES (?, ?) ON CONFLICT(feed) DO UPDATE SET seq = excluded.seq",
                   arguments: [feed, seq])
    }
}

/// `2026-11-25T07:50:17.123Z` (UTC, milliseconds), without a formatter object per call.
func rfc3339(_ date: Date) -> String {
    let totalMs = Int64((date.timeIntervalSince1970 * 1000).rounded())
    var secs = time_t(totalMs / 1000)
    let ms = Int(totalMs % 1000)
    var parts = tm()
    gmtime_r(&secs, &parts)
    func pad(_ n: Int, _ width: Int) -> String {
        let s = String(n)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
    return "\(pad(Int(parts.tm_year) + 1900, 4))-\(pad(Int(parts.tm_mon) + 1, 2))-\(pad(Int(parts.tm_mday), 2))T"
        + "\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(Int(parts.tm_sec), 2)).\(pad(ms, 3))Z"
}

/// Seconds since 1970 of an RFC 3339 UTC time as `rfc3339` writes it (`Z`, optional fraction).
func parseRFC3339(_ text: String) -> Double? {
    let u = Array(text.utf8)
    guard u.count >= 20, u[4] == UInt8(ascii: "-"), u[10] == UInt8(ascii: "T") else { return nil }
    func num(_ at: Int, _ n: Int) -> Int32? {
        var v: Int32 = 0
        for i in at..<(at + n) {
            guard u[i] >= 48 && u[i] <= 57 else { return nil }
            v = v * 10 + Int32(u[i] - 48)
        }
        return v
    }
    guard let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2), let h = num(11, 2), let mi = num(14, 2), let s = num(17, 2)
    else { return nil }
    var parts = tm()
    parts.tm_year = y - 1900
    parts.tm_mon = mo - 1
    parts.tm_mday = d
    parts.tm_hour = h
    parts.tm_min = mi
    parts.tm_sec = s
    var value = Double(timegm(&parts))
    if u[19] == UInt8(ascii: ".") {
        var scale = 0.1
        var i = 20
        while i < u.count, u[i] >= 48 && u[i] <= 57 {
            value += Double(u[i] - 48) * scale
            scale /= 10
            i += 1
        }
    }
    return value
}

/// One write's outcome, filled on the commit queue and read after the commit.
private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, Error>?
}

/// Batches concurrent writes into one transaction (one commit, one fsync), each write in a
/// savepoint. Commits run on one serial queue, off Swift's cooperative threads.
final class GroupCommit: @unchecked Sendable {
    private struct Job {
        /// Runs the write in a savepoint; remembers its own result or error.
        let run: (Database) -> Void
        /// Answers the caller once the transaction's fate is known.
        let finish: (Error?) -> Void
    }

    private let pool: DatabasePool
    private let lastSeq: ManagedAtomic<Int>
    private let lock = NSLock()
    private var queue: [Job] = []
    private var running = false
    private let committer = DispatchQueue(label: "maskshop.group-commit")
    /// Most writes folded into one transaction (bounds the latency of the first in a batch).
    private let maxBatch = 256

    init(pool: DatabasePool, lastSeq: ManagedAtomic<Int>) {
        self.pool = pool
        self.lastSeq = lastSeq
    }

    func submit<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
            let box = ResultBox<T>()
            let job = Job(
                run: { db in
                    do {
                        try db.inSavepoint {
                            box.result = .success(try body(db))
                            return .commit
                        }
                    } catch {
                        box.result = .failure(error)
                    }
                },
                finish: { commitError in
                    if let commitError {
                        cont.resume(throwing: commitError)
                    } else {
                        cont.resume(with: box.result ?? .failure(PeerError(description: "write did not run")))
                    }
                })
            lock.lock()
            queue.append(job)
            let start = !running
            running = true
            lock.unlock()
            if start { committer.async { self.drain() } }
        }
    }

    private func drain() {
        while true {
            lock.lock()
            if queue.isEmpty {
                running = false
                lock.unlock()
                return
            }
            let batch = Array(queue.prefix(maxBatch))
            queue.removeFirst(batch.count)
            lock.unlock()
            do {
                let seq = try pool.writeWithoutTransaction { db -> Int in
                    var seq = 0
                    try db.inTransaction {
                        for job in batch { job.run(db) }
                        seq = try Int.fetchOne(db.cachedStatement(sql: "SELECT MAX(seq) FROM events")) ?? 0
                        return .commit
                    }
                    return seq
                }
                if seq > lastSeq.load(ordering: .relaxed) { lastSeq.store(seq, ordering: .relaxed) }
                for job in batch { job.finish(nil) }
            } catch {
                for job in batch { job.finish(error) }
            }
        }
    }
}

extension Database {
    /// Executes one statement from the connection's statement cache (parsed once).
    func run(sql: String, arguments: StatementArguments = StatementArguments()) throws {
        try cachedStatement(sql: sql).execute(arguments: arguments)
    }

    /// One row through the statement cache.
    func one(sql: String, arguments: StatementArguments = StatementArguments()) throws -> Row? {
        try Row.fetchOne(cachedStatement(sql: sql), arguments: arguments)
    }
}
