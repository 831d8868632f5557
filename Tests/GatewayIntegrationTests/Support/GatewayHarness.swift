import Foundation
import GatewayCore
import Logging
import NIOCore
import NIOPosix

/// Config builders for tests: one host per upstream, one prefix route per host.
enum TestConfig {
    static func host(_ name: String, ports: [Int], policy: TrafficPolicy = TrafficPolicy()) -> HostConfig {
        HostConfig(name: name, endpoints: ports.map { Endpoint(address: "127.0.0.1", port: $0) }, trafficPolicy: policy)
    }

    static func gateway(hosts: [HostConfig], routes: [RouteConfig]) -> GatewayConfig {
        GatewayConfig(
            listener: BindAddress(address: "127.0.0.1", port: 0), admin: BindAddress(address: "127.0.0.1", port: 0),
            hosts: Dictionary(uniqueKeysWithValues: hosts.map { ($0.name, $0) }), routes: routes)
    }

    static func route(_ prefix: String, to host: String, name: String? = nil, timeout: TimeAmount? = nil,
                      retries: RetryPolicyConfig = .disabled, fault: FaultConfig? = nil,
                      rateLimit: LocalRateLimitConfig? = nil) -> RouteConfig {
        RouteConfig(name: name ?? host, matches: [RouteMatch(uri: .prefix(prefix))],
                    destinations: [WeightedDestination(host: host)], timeout: timeout, retries: retries, fault: fault,
                    localRateLimit: rateLimit)
    }
}

/// The gateway's runtime in this process, on real sockets (ports from 0).
final class InProcessGateway: @unchecked Sendable {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let runtime: GatewayRuntime
    let port: Int
    let adminPort: Int
    /// What `request` speaks, and the port it speaks it to (the HTTPS server's, for TLS).
    let clientProtocol: ClientProtocol
    let clientPort: Int

    init(_ config: GatewayConfig, over clientProtocol: ClientProtocol = .http1, configPath: String? = nil,
         loader: @escaping @Sendable (String) throws -> GatewayConfig = { _ in throw ReloadError("no loader") })
        async throws
    {
        var logger = Logger(label: "gateway-test")
        logger.logLevel = .warning
        let (config, httpsPort) = try clientProtocol.adapt(config)
        runtime = try GatewayRuntime(config: config, configPath: configPath, loadConfig: loader, group: group,
                                     accessLogFD: nil, logger: logger)
        let bound = try await runtime.start(listener: config.listener, admin: config.admin)
        port = bound.listener.port!
        adminPort = bound.admin.port!
        self.clientProtocol = clientProtocol
        clientPort = httpsPort ?? port
    }

    /// One request on a new connection, in `clientProtocol`.
    func request(method: String = "GET", path: String, headers: [String: String] = [:], body: String? = nil)
        -> RawResponse?
    {
        clientProtocol.request(port: clientPort, method: method, path: path, headers: headers, body: body)
    }

    func admin(_ path: String, method: String = "GET") -> String {
        httpRequest(port: adminPort, method: method, path: path, body: method == "POST" ? "" : nil)?.body ?? ""
    }

    /// `cluster.<host>.<name>` from /stats.
    func stat(_ name: String) -> Int? {
        for line in admin("/stats").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0] == name { return Int(parts[1].trimmingCharacters(in: .whitespaces)) }
        }
        return nil
    }

    func stop() async {
        await runtime.drain(timeout: .seconds(2))
        await runtime.closeAdmin()
        try? await group.shutdownGracefully()
    }
}
