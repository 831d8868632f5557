import Atomics
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest
@testable import GatewayCore

/// A resolver the test controls: names map to addresses or to a failure.
final class ControlledResolver: EndpointResolver, @unchecked Sendable {
    private let answers = NIOLockedValueBox<[String: [String]?]>([:])
    let calls = ManagedAtomic<Int>(0)
    func set(_ name: String, _ addresses: [String]?) { answers.withLockedValue { $0[name] = addresses } }
    func resolve(_ name: String) throws -> [String] {
        calls.wrappingIncrement(ordering: .relaxed)
        guard let a = answers.withLockedValue({ $0[name] }) ?? nil else { throw ResolutionFailure(name: name, reason: "refused by the test") }
        return a
    }
}

/// A resolver whose lookups wait at `gate` while `holding` is set (a slow DNS server).
final class GatedResolver: EndpointResolver, @unchecked Sendable {
    let inner = ControlledResolver()
    let gate = DispatchSemaphore(value: 0)
    let holding = ManagedAtomic<Bool>(false)
    let waiting = ManagedAtomic<Int>(0)
    func resolve(_ name: String) throws -> [String] {
        if holding.load(ordering: .relaxed) {
            waiting.wrappingIncrement(ordering: .relaxed)
            gate.wait()
        }
        return try inner.resolve(name)
    }
}

/// ServiceEntry `resolution: DNS` and `DNS_ROUND_ROBIN` on the real runtime and real sockets:
/// names re-resolved every `dnsRefreshRate`, hosts added and drained without dropping requests,
/// failed resolutions keeping the last good hosts.
final class ServiceDiscoveryTests: XCTestCase {
    final class Gateway: @unchecked Sendable {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let runtime: GatewayRuntime
        let port: Int
        init(_ json: String, resolver: EndpointResolver? = nil) async throws {
            var logger = Logger(label: "dns-test")
            logger.logLevel = .warning
            let config = try ConfigLoader.decode(Array(json.utf8))
            if let resolver {
                runtime = try GatewayRuntime(config: config, configPath: nil, loadConfig: { _ in throw ReloadError("none") },
                                             group: group, accessLogFD: nil, logger: logger, resolver: resolver)
            } else {
                runtime = try GatewayRuntime(config: config, configPath: nil, loadConfig: { _ in throw ReloadError("none") },
                                             group: group, accessLogFD: nil, logger: logger)
            }
            port = try await runtime.start(listener: config.listener, admin: config.admin).listener.port!
        }
        func hosts(_ cluster: String = "svc") -> [String] {
            runtime.snapshot.clusters[cluster]?.hosts.map { $0.endpoint.description } ?? []
        }
        func stat(_ c: ClusterCounter, _ cluster: String = "svc") -> Int {
            runtime.clusters.first { $0.name == cluster }?.stats[c] ?? -1
        }
        func stop() async {
            await runtime.drain(timeout: .seconds(2))
            await runtime.closeAdmin()
            try? await group.shutdownGracefully()
        }
    }

    static func config(_ serviceEntry: String, refresh: String = "100ms") -> String {
        """
        {"listener":{"address":"127.0.0.1","port":0},"admin":{"address":"127.0.0.1","port":0},"dnsRefreshRate":"\(refresh)",
         "serviceEntries":[\(serviceEntry)],
         "virtualServices":[{"http":[{"route":[{"destination":{"host":"svc"}}],"retries":{"attempts":0}}]}]}
        """
    }

    /// The name moves from 127.0.0.1 to 127.0.0.2 while a slow request is on the old host: new
    /// requests go to the new host at once, the slow one finishes with its answer, and the old
    /// host's connection closes after it. A failed resolution then changes nothing.
    func testHostsFollowTheNameAndTheOldOneDrains() async throws {
        let old = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(delay: .milliseconds(1500), body: "old"))
        defer { old.close() }
        let new = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "new"), host: "127.0.0.2", port: old.port)
        defer { new.close() }
        let resolver = ControlledResolver()
        resolver.set("svc.test", ["127.0.0.1"])
        let gw = try await Gateway(Self.config(#"{"host":"svc","resolution":"DNS","endpoints":[{"address":"svc.test","port":\#(old.port)}]}"#),
                                   resolver: resolver)
        XCTAssertEqual(gw.hosts(), ["127.0.0.1:\(old.port)"], "resolved before the first request")

        let slow = NIOLockedValueBox<RawResponse?>(nil)
        let done = DispatchSemaphore(value: 0)
        let port = gw.port
        Thread {
            slow.withLockedValue { $0 = httpRequest(port: port, path: "/slow") }
            done.signal()
        }.start()
        XCTAssertTrue(waitUntil(3) { old.requests.load(ordering: .relaxed) == 1 }, "the slow request reached the old host")

        resolver.set("svc.test", ["127.0.0.2"])
        XCTAssertTrue(waitUntil(3) { gw.hosts() == ["127.0.0.2:\(old.port)"] }, "hosts: \(gw.hosts())")
        for i in 0..<10 {
            let r = httpRequest(port: gw.port, path: "/n/\(i)")
            XCTAssertEqual(r?.status, 200)
            XCTAssertEqual(r?.body, "new")
        }
        XCTAssertEqual(new.requests.load(ordering: .relaxed), 10)
        XCTAssertEqual(old.requests.load(ordering: .relaxed), 1, "no new request went to the drained host")

        XCTAssertEqual(done.wait(timeout: .now() + 5), .success)
        XCTAssertEqual(slow.withLockedValue { $0 }?.status, 200, "the request in flight on the removed host finished")
        XCTAssertEqual(slow.withLockedValue { $0 }?.body, "old")
        XCTAssertTrue(waitUntil(2) { old.closedConnections.load(ordering: .relaxed) == 1 }, "the drained host's connection closed after its response")
        XCTAssertGreaterThanOrEqual(gw.stat(.membership_change), 2)

        // A failed resolution keeps the last good hosts.
        resolver.set("svc.test", nil)
        let failures = gw.stat(.update_failure)
        XCTAssertTrue(waitUntil(3) { gw.stat(.update_failure) > failures + 1 })
        XCTAssertEqual(gw.hosts(), ["127.0.0.2:\(old.port)"])
        XCTAssertEqual(httpRequest(port: gw.port, path: "/after-failure")?.status, 200)

        // Two addresses: two hosts (STRICT_DNS).
        resolver.set("svc.test", ["127.0.0.2", "127.0.0.1"])
        XCTAssertTrue(waitUntil(3) { gw.hosts().count == 2 }, "hosts: \(gw.hosts())")
        await gw.stop()
    }

    /// DNS_ROUND_ROBIN (LOGICAL_DNS): one host, at the first address of the latest answer.
    func testDNSRoundRobinUsesTheFirstAddress() async throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let resolver = ControlledResolver()
        resolver.set("svc.test", ["127.0.0.1", "127.0.0.3"])
        let gw = try await Gateway(Self.config(#"{"host":"svc","resolution":"DNS_ROUND_ROBIN","endpoints":[{"address":"svc.test","port":\#(up.port)}]}"#),
                                   resolver: resolver)
        XCTAssertEqual(gw.hosts(), ["127.0.0.1:\(up.port)"])
        for _ in 0..<5 { XCTAssertEqual(httpRequest(port: gw.port, path: "/")?.status, 200) }
        resolver.set("svc.test", ["127.0.0.3", "127.0.0.4"])
        XCTAssertTrue(waitUntil(3) { gw.hosts() == ["127.0.0.3:\(up.port)"] }, "hosts: \(gw.hosts())")
        await gw.stop()
    }

    /// A DNS server that rotates its records answers the same addresses in another order at each
    /// refresh. Envoy compares hosts, not the order they came in: no membership change, no new
    /// config version, and a DNS_ROUND_ROBIN cluster keeps its host and its pooled connection.
    func testSameAddressesInAnotherOrderChangeNothing() async throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let resolver = ControlledResolver()
        resolver.set("svc.test", ["127.0.0.1", "127.0.0.3"])
        let gw = try await Gateway(Self.config(#"{"host":"svc","resolution":"DNS_ROUND_ROBIN","endpoints":[{"address":"svc.test","port":\#(up.port)}]}"#),
                                   resolver: resolver)
        XCTAssertEqual(gw.hosts(), ["127.0.0.1:\(up.port)"])
        let client = try RawConnection(port: gw.port)
        client.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(client.readResponse()?.status, 200)
        let version = gw.runtime.snapshot.version

        resolver.set("svc.test", ["127.0.0.3", "127.0.0.1"])
        let attempts = gw.stat(.update_attempt)
        XCTAssertTrue(waitUntil(3) { gw.stat(.update_attempt) >= attempts + 3 }, "re-resolved every 100ms")
        XCTAssertEqual(gw.hosts(), ["127.0.0.1:\(up.port)"])
        XCTAssertEqual(gw.runtime.snapshot.version, version, "no new config version for the same addresses")
        XCTAssertEqual(gw.stat(.membership_change), 1, "only the first answer changed the hosts")
        client.send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(client.readResponse()?.status, 200)
        XCTAssertEqual(up.closedConnections.load(ordering: .relaxed), 0, "the pooled upstream connection was kept")
        await gw.stop()
    }

    /// A config reloaded while a resolution round runs brings a new name: it is resolved when that
    /// round ends, not a whole `dnsRefreshRate` later (its cluster has no host until then).
    func testNameAddedByAReloadDuringARoundIsResolvedAfterIt() async throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let resolver = GatedResolver()
        resolver.inner.set("a.test", ["127.0.0.1"])
        resolver.inner.set("b.test", ["127.0.0.1"])
        let svc = #"{"host":"svc","resolution":"DNS","endpoints":[{"address":"a.test","port":\#(up.port)}]}"#
        let other = #"{"host":"other","resolution":"DNS","endpoints":[{"address":"b.test","port":\#(up.port)}]}"#
        let gw = try await Gateway(Self.config(svc, refresh: "60s"), resolver: resolver)
        XCTAssertEqual(gw.hosts(), ["127.0.0.1:\(up.port)"])

        resolver.holding.store(true, ordering: .relaxed)
        _ = gw.runtime.refreshDNS()
        XCTAssertTrue(waitUntil(3) { resolver.waiting.load(ordering: .relaxed) == 1 }, "a round is resolving a.test")
        let config = try ConfigLoader.decode(Array(Self.config(svc + "," + other, refresh: "60s").utf8))
        guard case .success = gw.runtime.apply(config) else { return XCTFail("reload refused") }
        resolver.holding.store(false, ordering: .relaxed)
        resolver.gate.signal()
        XCTAssertTrue(waitUntil(3) { gw.hosts("other") == ["127.0.0.1:\(up.port)"] }, "hosts of other: \(gw.hosts("other"))")
        await gw.stop()
    }

    /// A name that does not resolve at start: no host (503, no healthy upstream) until it does.
    func testUnresolvedNameHasNoHostsUntilItResolves() async throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let resolver = ControlledResolver()
        let gw = try await Gateway(Self.config(#"{"host":"svc","resolution":"DNS","endpoints":[{"address":"svc.test","port":\#(up.port)}]}"#),
                                   resolver: resolver)
        XCTAssertEqual(gw.hosts(), [])
        XCTAssertEqual(httpRequest(port: gw.port, path: "/")?.status, 503)
        resolver.set("svc.test", ["127.0.0.1"])
        XCTAssertTrue(waitUntil(3) { gw.hosts().count == 1 })
        XCTAssertEqual(httpRequest(port: gw.port, path: "/")?.status, 200)
        await gw.stop()
    }

    /// The system resolver with a real name: `localhost` (from /etc/hosts), as an endpoint address
    /// and as the ServiceEntry's own host with no endpoints; resolved again every refresh.
    func testLocalhostResolvesThroughTheSystemResolver() async throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let gw = try await Gateway(Self.config(#"""
            {"host":"svc","resolution":"DNS","endpoints":[{"address":"localhost","port":\#(up.port)}]},
            {"hosts":["localhost"],"resolution":"DNS","ports":[{"number":\#(up.port),"name":"http"}]}
            """#))
        XCTAssertEqual(gw.hosts(), ["127.0.0.1:\(up.port)"], "IPv4 preferred, as Istio asks Envoy")
        XCTAssertEqual(gw.hosts("localhost"), ["127.0.0.1:\(up.port)"])
        XCTAssertEqual(httpRequest(port: gw.port, path: "/")?.status, 200)
        let attempts = gw.stat(.update_attempt)
        XCTAssertTrue(waitUntil(3) { gw.stat(.update_attempt) >= attempts + 3 }, "re-resolved every 100ms")
        XCTAssertEqual(gw.stat(.update_failure), 0)
        XCTAssertEqual(gw.stat(.membership_change), 1, "the same answer is no change")
        await gw.stop()
    }
}
