import Atomics

/// Atomic Ints belonging to an object that every event loop uses (a host, a cluster's limits),
/// reached through a raw pointer. A `ManagedAtomic` is an object of its own, and each use of one
/// retains and releases it: a write to its reference count, a cache line the two event loops
/// would pull from each other on every request even when the value only is read. Each cell also
/// has its own 64-byte line, so loops updating different cells never contend.
///
/// The owner frees the cells in its `deinit`; nothing may keep a cell past its owner's life.
struct AtomicCells: @unchecked Sendable {
    // @unchecked: the memory is only ever touched through atomic operations.
    private static let intsPerLine = 8
    private let base: UnsafeMutablePointer<UnsafeAtomic<Int>.Storage>
    let count: Int

    init(count: Int) {
        precondition(count > 0, "at least one cell")
        let raw = UnsafeMutableRawPointer.allocate(byteCount: count * Self.intsPerLine * 8, alignment: 64)
        base = raw.bindMemory(to: UnsafeAtomic<Int>.Storage.self, capacity: count * Self.intsPerLine)
        base.initialize(repeating: UnsafeAtomic<Int>.Storage(0), count: count * Self.intsPerLine)
        self.count = count
    }

    @inline(__always) subscript(_ index: Int) -> UnsafeAtomic<Int> {
        assert(index >= 0 && index < count, "a cell of this block")
        return UnsafeAtomic(at: base + index * Self.intsPerLine)
    }

    /// Called once, by the owner's `deinit`.
    func deallocate() { base.deallocate() }
}
