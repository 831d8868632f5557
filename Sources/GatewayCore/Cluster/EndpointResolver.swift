#if canImport(Glibc)
import Glibc
#endif

/// Turns an endpoint name into addresses. Blocking: it is only ever called on a thread pool
/// thread (`GatewayRuntime.refreshDNS`), never on an event loop.
protocol EndpointResolver: Sendable {
    /// IP address literals in the resolver's order, or a thrown error (the last good addresses stay).
    func resolve(_ name: String) throws -> [String]
}

struct ResolutionFailure: Error, CustomStringConvertible {
    let name: String
    let reason: String
    var description: String { "resolving '\(name)': \(reason)" }
}

/// getaddrinfo(3): /etc/hosts, then DNS, as the system is configured. IPv4 addresses when the name
/// has any, else IPv6 (Envoy's V4_PREFERRED lookup family, what Istio programs without dual stack).
struct SystemResolver: EndpointResolver {
    /// Most addresses kept per name: a hostile or broken DNS answer cannot make thousands of hosts.
    static let maxAddresses = 64

    func resolve(_ name: String) throws -> [String] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(name, nil, &hints, &list)
        guard rc == 0 else { throw ResolutionFailure(name: name, reason: String(cString: gai_strerror(rc))) }
        defer { freeaddrinfo(list) }
        var v4: [String] = [], v6: [String] = []
        var p = list
        while let ai = p {
            p = ai.pointee.ai_next
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            switch ai.pointee.ai_family {
            case AF_INET:
                var a = ai.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                guard inet_ntop(AF_INET, &a, &text, socklen_t(text.count)) != nil else { continue }
                let s = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if !v4.contains(s) && v4.count < Self.maxAddresses { v4.append(s) }
            case AF_INET6:
                var a = ai.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                guard inet_ntop(AF_INET6, &a, &text, socklen_t(text.count)) != nil else { continue }
                let s = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if !v6.contains(s) && v6.count < Self.maxAddresses { v6.append(s) }
            default:
                continue
            }
        }
        let found = v4.isEmpty ? v6 : v4
        guard !found.isEmpty else { throw ResolutionFailure(name: name, reason: "no addresses") }
        return found
    }
}
