/// Envoy's response flags, as the access log prints them.
public struct ResponseFlags: OptionSet, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let noHealthyUpstream = ResponseFlags(rawValue: 1 << 0)      // UH
    public static let upstreamConnectFailure = ResponseFlags(rawValue: 1 << 1) // UF
    public static let upstreamOverflow = ResponseFlags(rawValue: 1 << 2)       // UO
    public static let noRoute = ResponseFlags(rawValue: 1 << 3)                // NR
    public static let retryLimitExceeded = ResponseFlags(rawValue: 1 << 4)     // URX
    public static let upstreamTimeout = ResponseFlags(rawValue: 1 << 5)        // UT
    public static let rateLimited = ResponseFlags(rawValue: 1 << 6)            // RL
    public static let delayInjected = ResponseFlags(rawValue: 1 << 7)          // DI
    public static let faultInjected = ResponseFlags(rawValue: 1 << 8)          // FI
    public static let upstreamTermination = ResponseFlags(rawValue: 1 << 9)    // UC
    public static let downstreamTermination = ResponseFlags(rawValue: 1 << 10) // DC
    public static let downstreamProtocolError = ResponseFlags(rawValue: 1 << 11) // DPE
    public static let streamIdleTimeout = ResponseFlags(rawValue: 1 << 12)     // SI
    public static let upstreamProtocolError = ResponseFlags(rawValue: 1 << 13) // UPE

    static let names: [(ResponseFlags, StaticString)] = [
        (.noHealthyUpstream, "UH"), (.upstreamConnectFailure, "UF"), (.upstreamOverflow, "UO"),
        (.noRoute, "NR"), (.retryLimitExceeded, "URX"), (.upstreamTimeout, "UT"), (.rateLimited, "RL"),
        (.delayInjected, "DI"), (.faultInjected, "FI"), (.upstreamTermination, "UC"),
        (.downstreamTermination, "DC"), (.downstreamProtocolError, "DPE"), (.streamIdleTimeout, "SI"),
        (.upstreamProtocolError, "UPE"),
    ]

    public var description: String {
        if isEmpty { return "-" }
        return Self.names.filter { contains($0.0) }.map { "\($0.1)" }.joined(separator: ",")
    }

    func write(into out: inout [UInt8]) {
        if isEmpty {
            out.append(UInt8(ascii: "-"))
            return
        }
        var first = true
        for (flag, name) in Self.names where contains(flag) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        }
    }
}
