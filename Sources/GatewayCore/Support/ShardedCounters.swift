import Atomics

/// Counters kept in one row per event loop and summed when read. A proxied request bumps about
/// ten counters; as shared atomics their cache lines would move between cores on every request.
/// Every update is still an atomic add, so a row shared by two writers (more loops than rows,
/// or the `shared` row used off the request path) stays exact, only slower.
public final class ShardedCounters: @unchecked Sendable {
    // @unchecked: the storage is only ever touched through atomic operations.
    public static let rows = 16
    /// The row for updates made outside an event loop's request path (timers, admin).
    public static let shared = rows - 1

    private let stride: Int
    private let storage: UnsafeMutablePointer<UnsafeAtomic<Int>.Storage>

    public init(count: Int) {
        // Rows padded to whole 64-byte lines so two loops never write the same line.
        stride = (count + 7) / 8 * 8
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: stride * Self.rows * 8, alignment: 64)
        storage = bytes.bindMemory(to: UnsafeAtomic<Int>.Storage.self, capacity: stride * Self.rows)
        storage.initialize(repeating: UnsafeAtomic<Int>.Storage(0), count: stride * Self.rows)
    }

    deinit { storage.deallocate() }

    /// The row an event loop with this index writes.
    @inline(__always) public static func row(forLoop index: Int) -> Int { index % (rows - 1) }

    @inline(__always) public func add(_ counter: Int, _ delta: Int, row: Int) {
        UnsafeAtomic<Int>(at: storage + row * stride + counter).wrappingIncrement(by: delta, ordering: .relaxed)
    }

    @inline(__always) public func increment(_ counter: Int, row: Int) { add(counter, 1, row: row) }

    public subscript(_ counter: Int) -> Int {
        var sum = 0
        for r in 0..<Self.rows { sum &+= UnsafeAtomic<Int>(at: storage + r * stride + counter).load(ordering: .relaxed) }
        return sum
    }
}
