/// HTTP status codes 100...599 as a bit set held inline. A retry policy is copied into every
/// request's retry state: an array there would be a reference count that every event loop
/// writes on every request, for a list nobody changes.
public struct StatusCodeSet: Sendable, Equatable, Sequence, ExpressibleByArrayLiteral {
    private static let range = 100...599
    private var words = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))

    public init() {}

    public init<S: Sequence>(_ codes: S) where S.Element == Int {
        for code in codes { insert(code) }
    }

    public init(arrayLiteral codes: Int...) { self.init(codes) }

    /// Codes outside 100...599 are a caller's mistake (the loader refuses them with their path).
    public mutating func insert(_ code: Int) {
        precondition(Self.range.contains(code), "a status code in 100...599")
        let bit = code - Self.range.lowerBound
        withUnsafeMutableBytes(of: &words) { raw in
            let w = raw.bindMemory(to: UInt64.self)
            w[bit / 64] |= 1 << UInt64(bit % 64)
        }
    }

    @inline(__always) public func contains(_ code: Int) -> Bool {
        guard Self.range.contains(code) else { return false }
        let bit = code - Self.range.lowerBound
        return withUnsafeBytes(of: words) { raw in
            raw.load(fromByteOffset: (bit / 64) * 8, as: UInt64.self) & (1 << UInt64(bit % 64)) != 0
        }
    }

    public var isEmpty: Bool { first(where: { _ in true }) == nil }

    /// The codes in ascending order.
    public func makeIterator() -> IndexingIterator<[Int]> {
        Self.range.filter { contains($0) }.makeIterator()
    }

    public static func == (a: StatusCodeSet, b: StatusCodeSet) -> Bool { Array(a) == Array(b) }
}
