import Atomics

/// One circuit-breaker threshold, shared by every event loop (Envoy's `ResourceManager` resource):
/// the pool asks `canCreate()`, then counts with `inc()`/`dec()`. The maximum can change on reload.
/// A view of two of its manager's cells (the count and the maximum), valid while the manager
/// lives: taking one retains nothing, which matters as every request takes several.
public struct ResourceLimit: Sendable {
    private let count: UnsafeAtomic<Int>
    private let maximum: UnsafeAtomic<Int>

    init(count: UnsafeAtomic<Int>, maximum: UnsafeAtomic<Int>) {
        self.count = count
        self.maximum = maximum
    }

    @inline(__always) public func canCreate() -> Bool {
        count.load(ordering: .relaxed) < maximum.load(ordering: .relaxed)
    }
    @inline(__always) public func inc() { count.wrappingIncrement(ordering: .relaxed) }
    @inline(__always) public func dec() { count.wrappingDecrement(ordering: .relaxed) }
    /// Takes one unit if the limit allows it.
    @inline(__always) public func tryAcquire() -> Bool {
        tryAcquire(max: maximum.load(ordering: .relaxed))
    }
    /// Takes one unit if fewer than `max` are taken (a limit computed by the caller: the retry budget).
    @inline(__always) public func tryAcquire(max: Int) -> Bool {
        var current = count.load(ordering: .relaxed)
        while current < max {
            let (exchanged, original) = count.weakCompareExchange(
                expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }
    public var current: Int { count.load(ordering: .relaxed) }
    public var max: Int { maximum.load(ordering: .relaxed) }
    func setMax(_ value: Int) { maximum.store(value, ordering: .relaxed) }
}
