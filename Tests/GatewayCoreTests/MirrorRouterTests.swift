import HTTP1Wire
import NIOCore
import NIOEmbedded
import XCTest
@testable import GatewayCore

/// The router's side of mirroring, on an embedded loop: which request a connection goes to, and
/// which cluster a shadow copy is sent to when a reload came while the request was arriving.
final class MirrorRouterTests: XCTestCase {
    /// A shadow must never take what the main request needs. With one connection allowed, the
    /// request that asks the pool first gets it and the other waits for its response. Envoy
    /// starts the main upstream request before its shadows, so it is the shadow that waits.
    func testMainRequestAsksThePoolBeforeItsShadow() throws {
        let policy = TrafficPolicy(connectionPool: ConnectionPoolSettings(maxConnections: 1))
        let route = RouteConfig(name: "r", destinations: [WeightedDestination(host: "svc")], retries: .disabled,
                                mirrors: [MirrorPolicy(host: "svc")])
        let h = try RouterHarness(route: route, policy: policy)
        let (stream, _) = try h.send()
        XCTAssertEqual(h.connector.channels.count, 1)
        let first = try h.connector.sent(0)
        XCTAssertFalse(first.contains("a-shadow"), "the shadow took the one connection:\n\(first)")
        try h.connector.respond(0, ok)
        XCTAssertEqual(stream.status, 200, "the main request was answered by the first response")
        XCTAssertEqual(stream.body, "ok")
        // The connection then serves the shadow that waited for it.
        XCTAssertTrue(try h.connector.sent(0).contains("Host: a-shadow"))
    }

    /// Envoy bounds a shadow by the route's timeout, the whole of it: a shadow upstream that sends
    /// its head and then stalls its body must not hold its connection and its in-flight place for
    /// ever (a few such would use up `ShadowRequest.maxInFlight` and stop all mirroring).
    func testShadowWhoseBodyStallsEndsAtTheRouteTimeout() throws {
        let route = RouteConfig(name: "r", destinations: [WeightedDestination(host: "svc")], timeout: .seconds(1),
                                retries: .disabled, mirrors: [MirrorPolicy(host: "svc")])
        let h = try RouterHarness(route: route)
        let (stream, _) = try h.send()
        XCTAssertEqual(h.connector.channels.count, 2, "the main request, then its shadow")
        try h.connector.respond(0, ok)
        XCTAssertEqual(stream.status, 200)
        try h.connector.respond(1, "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        let pool = h.worker.pool(for: h.worker.snapshot.clusters["svc"]!)
        XCTAssertEqual(pool.shadowsInFlight, 1)
        h.loop.advanceTime(by: .milliseconds(1100))
        XCTAssertEqual(pool.shadowsInFlight, 0, "the stalled shadow ended at the route timeout")
        XCTAssertFalse(h.connector.channels[1].isActive, "its connection, whose response was not read to the end, is closed")
        XCTAssertTrue(h.connector.channels[0].isActive, "the main request's connection stays for the next request")
    }

    /// A two-cluster worker: `svc` (the route's destination) and `shadow` (its mirror).
    struct TwoClusters {
        let loop = EmbeddedEventLoop()
        let connector: EmbeddedConnector
        let worker: Worker
        let svc: Cluster
        let shadow: Cluster
        let route = RouteConfig(name: "r", destinations: [WeightedDestination(host: "svc")], retries: .disabled,
                                mirrors: [MirrorPolicy(host: "shadow")])

        init() throws {
            connector = EmbeddedConnector(loop: loop)
            svc = Cluster(config: HostConfig(name: "svc", endpoints: []))
            shadow = Cluster(config: HostConfig(name: "shadow", endpoints: []))
            let first = try Self.snapshot(version: 1, route: route, svc: svc, shadow: shadow, shadowPort: 9001)
            worker = Worker(index: 0, eventLoop: loop, snapshot: first, listenerStats: ListenerStats(), accessLogFD: nil)
            worker.connector = connector
        }

        /// A config version; `shadowPort` nil: the shadow cluster is not in it.
        static func snapshot(version: Int, route: RouteConfig, svc: Cluster, shadow: Cluster, shadowPort: Int?) throws -> ConfigSnapshot {
            var hosts = ["svc": HostConfig(name: "svc", endpoints: [Endpoint(address: "127.0.0.1", port: 8001)])]
            if let shadowPort { hosts["shadow"] = HostConfig(name: "shadow", endpoints: [Endpoint(address: "127.0.0.1", port: shadowPort)]) }
            var clusters: [String: ClusterSnapshot] = [:]
            for (name, host) in hosts {
                let cluster = name == "svc" ? svc : shadow
                clusters[name] = ClusterSnapshot(cluster: cluster, hosts: cluster.hosts(for: host), policy: host.trafficPolicy,
                                                 serviceHost: name)
            }
            let config = GatewayConfig(listener: BindAddress(address: "127.0.0.1", port: 0), admin: BindAddress(address: "127.0.0.1", port: 0),
                                       hosts: hosts, routes: [route])
            let compiled = try Route(config: route, clusters: clusters, stats: RouteStats(name: route.name), rateLimiter: nil)
            return ConfigSnapshot(version: version, config: config, routes: RouteTable(routes: [compiled]), clusters: clusters)
        }

        /// A POST whose 4-byte body has not arrived yet; its main request is on connection 0.
        func startPost() throws -> (RecordingStream, RouterFilter) {
            let bytes = ByteBuffer(string: "POST /x HTTP/1.1\r\nHost: a\r\ncontent-length: 4\r\n\r\n")
            let head = try XCTUnwrap(try bytes.parseHead(.request).get())
            let stream = RecordingStream()
            stream.requestComplete = false
            let filter = try XCTUnwrap(RouterFilter.route(stream: stream, worker: worker, head: head, headBytes: bytes, earlyBody: nil))
            stream.filter = filter
            filter.begin()
            return (stream, filter)
        }

        func endBody(_ stream: RecordingStream, _ filter: RouterFilter) {
            filter.requestBodyPart(ByteBuffer(string: "abcd"))
            stream.requestComplete = true
            filter.requestBodyEnded()
        }
    }

    /// The body ends after a reload moved the shadow cluster to another endpoint: the copy goes
    /// to the cluster as it is now (Envoy looks the shadow cluster up by name when it shadows),
    /// never to the endpoint the reload removed.
    func testShadowAfterAReloadGoesToTheClusterInForce() throws {
        let t = try TwoClusters()
        let (stream, filter) = try t.startPost()
        XCTAssertEqual(t.connector.endpoints.map(\.port), [8001])
        t.worker.install(try TwoClusters.snapshot(version: 2, route: t.route, svc: t.svc, shadow: t.shadow, shadowPort: 9002))
        t.endBody(stream, filter)
        XCTAssertEqual(t.connector.endpoints.map(\.port), [8001, 9002], "the shadow went to the endpoint of the config in force")
        try t.connector.respond(0, ok)
        XCTAssertEqual(stream.status, 200)
    }

    /// The body ends after a reload removed the shadow cluster: no copy is sent, and no pool is
    /// made again on this loop for a cluster the config no longer has.
    func testShadowAfterAReloadRemovedItsClusterIsDropped() throws {
        let t = try TwoClusters()
        let (stream, filter) = try t.startPost()
        t.worker.install(try TwoClusters.snapshot(version: 2, route: t.route, svc: t.svc, shadow: t.shadow, shadowPort: nil))
        t.endBody(stream, filter)
        XCTAssertEqual(t.connector.endpoints.map(\.port), [8001], "no connection to the removed cluster")
        XCTAssertEqual(filter.route.stats.mirrorDropped.load(ordering: .relaxed), 1)
        try t.connector.respond(0, ok)
        XCTAssertEqual(stream.status, 200)
    }
}
