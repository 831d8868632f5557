import Foundation
import GRDB
import XCTest

@testable import MaskShop

/// The store's connection settings, as SQLite reports them on the connection that writes.
final class StoreTests: XCTestCase {
    func testWriterRunsAtTheRequestedSynchronousLevel() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (durability, level) in [(Durability.full, 2), (.normal, 1)] {
            let store = try Store(path: dir.appendingPathComponent("\(durability.rawValue).sqlite").path,
                                  durability: durability) { _ in }
            // Through the group commit, i.e. on the connection every answered write commits on.
            let seen = try await store.write { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
            XCTAssertEqual(seen, level, "synchronous on the writer with durability \(durability)")
            let mode = try await store.write { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
            XCTAssertEqual(mode, "wal")
        }
    }
}
