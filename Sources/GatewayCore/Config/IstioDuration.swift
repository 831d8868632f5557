import NIOCore

/// Istio/protobuf duration strings: "250ms", "1s", "1.5s", "3m", "1h", "500us", "100ns", "1m30s".
enum IstioDuration {
    static func parse(_ text: String) -> TimeAmount? {
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        guard !rest.isEmpty else { return nil }
        var total: Double = 0
        while !rest.isEmpty {
            let numberEnd = rest.firstIndex { !($0.isNumber || $0 == ".") } ?? rest.endIndex
            guard numberEnd != rest.startIndex, let value = Double(rest[rest.startIndex..<numberEnd]) else { return nil }
            rest = rest[numberEnd...]
            let unitEnd = rest.firstIndex { $0.isNumber || $0 == "." } ?? rest.endIndex
            let unit = rest[rest.startIndex..<unitEnd]
            rest = rest[unitEnd...]
            let scale: Double
            switch unit {
            case "h": scale = 3600e9
            case "m": scale = 60e9
            case "s": scale = 1e9
            case "ms": scale = 1e6
            case "us", "µs": scale = 1e3
            case "ns": scale = 1
            default: return nil
            }
            total += value * scale
        }
        guard total.isFinite, total < 9e18 else { return nil }
        return .nanoseconds(Int64(total.rounded()))
    }
}

extension JSONNode {
    /// A duration string; `allowZero` for fields where "0s" means "off".
    func duration(allowZero: Bool = false, min: TimeAmount? = nil) throws -> TimeAmount {
        let s = try string()
        guard let d = IstioDuration.parse(s) else {
            throw fail("invalid duration '\(s)' (use e.g. \"250ms\", \"1s\", \"1m30s\")")
        }
        if d.nanoseconds < 0 || (!allowZero && d.nanoseconds == 0) { throw fail("must be > 0, found '\(s)'") }
        if let min, d.nanoseconds != 0, d < min { throw fail("must be >= \(min.nanoseconds / 1_000_000)ms, found '\(s)'") }
        return d
    }
}
