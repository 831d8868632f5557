#if canImport(Glibc)
import Glibc
#endif
import NIOCore

extension ConfigLoader {
    /// ServiceEntry `resolution`. `addresses`: its endpoints' (empty when it has none and its host
    /// name is resolved instead).
    ///
    /// Absent, it is STATIC when every address is an IP address and DNS otherwise. (Istio's
    /// default is NONE, which forwards to the address the client connected to; a gateway that
    /// ends the client's HTTP connection has no such address, so NONE is refused.)
    static func resolution(_ o: JSONObject, addresses: [String]) throws -> Resolution {
        let allIP = !addresses.isEmpty && addresses.allSatisfy(isIPAddress)
        guard let r = o["resolution"] else { return allIP ? .static : .dns }
        let v = try r.string()
        switch v {
        case "STATIC":
            guard !addresses.isEmpty else {
                throw ConfigError(path: o.node().child("endpoints"), reason: "resolution STATIC needs endpoints with IP addresses")
            }
            for (i, address) in addresses.enumerated() where !isIPAddress(address) {
                throw ConfigError(path: "\(o.node().child("endpoints"))[\(i)].address",
                                  reason: "resolution STATIC needs an IP address, found '\(address)' (use resolution DNS for names)")
            }
            return .static
        case "DNS": return .dns
        case "DNS_ROUND_ROBIN": return .dnsRoundRobin
        case "NONE":
            throw r.fail("not supported by this gateway: resolution NONE forwards to each connection's original destination "
                + "address, which a proxy that ends the client's HTTP connection does not have (use STATIC with IP endpoints, or DNS)")
        default:
            throw r.fail("unknown resolution '\(v)' (allowed: STATIC, DNS, DNS_ROUND_ROBIN, NONE)")
        }
    }

    /// Top-level `dnsRefreshRate` (Envoy's dns_refresh_rate; Envoy's minimum is 1ms).
    static func dnsRefreshRate(_ node: JSONNode) throws -> TimeAmount {
        try node.duration(min: .milliseconds(1))
    }

    /// An IPv4 or IPv6 address literal (no name lookup).
    static func isIPAddress(_ s: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, s, &v4) == 1 || inet_pton(AF_INET6, s, &v6) == 1
    }
}
