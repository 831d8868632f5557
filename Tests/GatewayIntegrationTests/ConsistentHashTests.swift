import Foundation
import GatewayCore
import NIOCore
import NIOPosix
import XCTest

/// Consistent hashing through the gateway on real sockets: upstreams answer with their own name,
/// so each response says which host served it.
final class ConsistentHashTests: XCTestCase {
    func namedUpstreams(_ names: [String]) throws -> [TestUpstream] {
        try names.map { try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: $0)) }
    }

    func hashedGateway(_ upstreams: [TestUpstream], key: ConsistentHashSettings.Key,
                       algorithm: ConsistentHashSettings.Algorithm = .ringHash(minimumRingSize: 1024),
                       retries: RetryPolicyConfig = .disabled) async throws -> InProcessGateway {
        let policy = TrafficPolicy(consistentHash: ConsistentHashSettings(key: key, algorithm: algorithm))
        return try await InProcessGateway(TestConfig.gateway(
            hosts: [TestConfig.host("shop", ports: upstreams.map(\.port), policy: policy)],
            routes: [TestConfig.route("/", to: "shop", retries: retries)]))
    }

    func testHeaderHashSticksToOneUpstream() async throws {
        for algorithm in [ConsistentHashSettings.Algorithm.ringHash(minimumRingSize: 1024), .maglev(tableSize: 65537)] {
            let ups = try namedUpstreams(["a", "b", "c"])
            let gw = try await hashedGateway(ups, key: .header("x-user"), algorithm: algorithm)
            var hostsUsed = Set<String>()
            for user in 0..<30 {
                var served = Set<String>()
                for _ in 0..<8 {
                    let r = httpRequest(port: gw.port, path: "/cart", headers: ["X-User": "user-\(user)"])
                    XCTAssertEqual(r?.status, 200)
                    served.insert(r?.body ?? "?")
                }
                XCTAssertEqual(served.count, 1, "\(algorithm): user-\(user) went to \(served)")
                hostsUsed.formUnion(served)
            }
            XCTAssertEqual(hostsUsed, ["a", "b", "c"], "\(algorithm): 30 users spread over the three hosts")
            await gw.stop()
            for u in ups { u.close() }
        }
    }

    func testQueryParameterHash() async throws {
        let ups = try namedUpstreams(["a", "b", "c"])
        defer { for u in ups { u.close() } }
        let gw = try await hashedGateway(ups, key: .queryParameter("user"))
        var hostsUsed = Set<String>()
        for user in 0..<20 {
            let first = httpRequest(port: gw.port, path: "/cart?user=u\(user)&x=1")?.body
            for k in 0..<5 {
                XCTAssertEqual(httpRequest(port: gw.port, path: "/other?x=\(k)&user=u\(user)")?.body, first)
            }
            hostsUsed.insert(first ?? "?")
        }
        XCTAssertGreaterThan(hostsUsed.count, 1)
        await gw.stop()
    }

    func testSourceIPHash() async throws {
        let ups = try namedUpstreams(["a", "b", "c"])
        defer { for u in ups { u.close() } }
        let gw = try await hashedGateway(ups, key: .sourceIP)
        var hostsUsed = Set<String>()
        for client in 2..<32 {
            var served = Set<String>()
            for _ in 0..<5 {
                // A new connection each time (a new source port): only the address counts.
                let c = try RawConnection(port: gw.port, source: "127.0.0.\(client)")
                c.send("GET /cart HTTP/1.1\r\nHost: shop\r\n\r\n")
                served.insert(c.readResponse()?.body ?? "?")
            }
            XCTAssertEqual(served.count, 1, "127.0.0.\(client) went to \(served)")
            hostsUsed.formUnion(served)
        }
        XCTAssertEqual(hostsUsed, ["a", "b", "c"])
        await gw.stop()
    }

    /// `retryIgnorePreviousHosts`: with a hash, a retry that may not avoid the host that failed
    /// lands on it again; by default (true) it goes elsewhere.
    func testRetryIgnorePreviousHostsWithAHash() async throws {
        let ups = try namedUpstreams(["a", "b", "c"])
        defer { for u in ups { u.close() } }
        // A ring of one entry per host: a retry's next entry is another host. (With 1024 entries,
        // the four entries after a key's may all be the same host, (1/3)^4 per retry with the
        // upstreams' random ports; Envoy's ring does not promise another host either.)
        let ring = ConsistentHashSettings.Algorithm.ringHash(minimumRingSize: 3)
        // Find which upstream "alice" hashes to, then make it fail.
        let probe = try await hashedGateway(ups, key: .header("x-user"), algorithm: ring)
        let home = httpRequest(port: probe.port, path: "/", headers: ["X-User": "alice"])?.body ?? "?"
        await probe.stop()
        let failing = ups[["a", "b", "c"].firstIndex(of: home)!]
        failing.set { $0.status = 503 }
        let before = ups.map { $0.requests.load(ordering: .relaxed) }

        var stay = RetryPolicyConfig(attempts: 2, retryOn: [.retriableStatusCodes], retriableStatusCodes: [503],
                                     backoffBase: .milliseconds(1))
        stay.ignorePreviousHosts = false
        let gw1 = try await hashedGateway(ups, key: .header("x-user"), algorithm: ring, retries: stay)
        XCTAssertEqual(httpRequest(port: gw1.port, path: "/", headers: ["X-User": "alice"])?.status, 503)
        await gw1.stop()
        let afterStay = ups.map { $0.requests.load(ordering: .relaxed) }
        XCTAssertEqual(failing.requests.load(ordering: .relaxed) - before[ups.firstIndex { $0 === failing }!], 3,
                       "all three tries on \(home), the host the key hashes to")
        XCTAssertEqual(zip(afterStay, before).map { $0 - $1 }.reduce(0, +), 3)

        let avoid = RetryPolicyConfig(attempts: 2, retryOn: [.retriableStatusCodes], retriableStatusCodes: [503],
                                      backoffBase: .milliseconds(1))
        let gw2 = try await hashedGateway(ups, key: .header("x-user"), algorithm: ring, retries: avoid)
        let r = httpRequest(port: gw2.port, path: "/", headers: ["X-User": "alice"])
        XCTAssertEqual(r?.status, 200, "the retry went to another host")
        XCTAssertNotEqual(r?.body, home)
        XCTAssertEqual(failing.requests.load(ordering: .relaxed) - afterStay[ups.firstIndex { $0 === failing }!], 1)
        await gw2.stop()
    }
}

/// Cookie affinity through the real gateway binary, from its JSON config: the first answer sets
/// the cookie, 1,000 requests carrying it stay on one host, and only the keys of an ejected host
/// move (and come back with it).
final class CookieAffinityTests: XCTestCase {
    func testCookieAffinityAcrossAThousandRequestsAndAnEjection() async throws {
        let names = ["a", "b", "c", "d"]
        let ups = try names.map { try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: $0)) }
        defer { for u in ups { u.close() } }
        let endpoints = ups.map { #"{"address":"127.0.0.1","port":\#($0.port)}"# }.joined(separator: ",")
        let gw = try GatewayProcess(config: #"""
        {"serviceEntries":[{"host":"shop","endpoints":[\#(endpoints)]}],
         "destinationRules":[{"host":"shop","trafficPolicy":{
           "loadBalancer":{"consistentHash":{"httpCookie":{"name":"affinity","path":"/","ttl":"3600s"}}},
           "outlierDetection":{"consecutive5xxErrors":1,"interval":"100ms","baseEjectionTime":"1s","maxEjectionPercent":100}}}],
         "virtualServices":[{"http":[{"route":[{"destination":{"host":"shop"}}],"retries":{"attempts":0}}]}]}
        """#)

        // The first answer carries the generated cookie.
        let first = try XCTUnwrap(httpRequest(port: gw.port, path: "/cart"))
        XCTAssertEqual(first.status, 200)
        let setCookie = try XCTUnwrap(first.header("set-cookie"), "the first answer sets the affinity cookie")
        let match = try XCTUnwrap(setCookie.wholeMatch(of: /affinity="([0-9a-f]{16})"; Max-Age=3600; Path=\/; HttpOnly/))
        let cookie = "affinity=\"\(match.1)\""
        let home = first.body
        var served: [String: Int] = [:]
        for _ in 0..<1000 {
            let r = httpRequest(port: gw.port, path: "/cart", headers: ["Cookie": "lang=en; \(cookie)"])
            XCTAssertNil(r?.header("set-cookie"), "a request with the cookie gets no new one")
            served[r?.body ?? "?", default: 0] += 1
        }
        XCTAssertEqual(served, [home: 1000], "1,000 requests with the cookie, one host")

        // Forty clients, each with its own cookie (a new connection makes a new value).
        var clients: [(cookie: String, host: String)] = []
        for _ in 0..<40 {
            let r = try XCTUnwrap(httpRequest(port: gw.port, path: "/"))
            let value = try XCTUnwrap(r.header("set-cookie")?.firstMatch(of: /affinity="([0-9a-f]{16})"/)?.1)
            clients.append(("affinity=\"\(value)\"", r.body))
        }
        XCTAssertGreaterThan(Set(clients.map(\.host)).count, 2, "cookies spread over the hosts")
        let ejected = clients[0].host
        let ejectedUpstream = ups[names.firstIndex(of: ejected)!]

        // One 500 ejects that host (consecutive5xxErrors 1).
        ejectedUpstream.set { $0.status = 500 }
        XCTAssertEqual(httpRequest(port: gw.port, path: "/", headers: ["Cookie": clients[0].cookie])?.status, 500)
        ejectedUpstream.set { $0.status = 200 }
        XCTAssertTrue(gw.admin("/clusters")?.body.contains("failed_outlier_check") == true)
        for c in clients {
            let body = httpRequest(port: gw.port, path: "/", headers: ["Cookie": c.cookie])?.body
            if c.host == ejected {
                XCTAssertNotEqual(body, ejected, "the ejected host's clients move")
            } else {
                XCTAssertEqual(body, c.host, "a client of a healthy host does not move")
            }
        }

        // baseEjectionTime 1s: the host returns and its clients with it.
        try await Task.sleep(nanoseconds: 1_600_000_000)
        for c in clients {
            XCTAssertEqual(httpRequest(port: gw.port, path: "/", headers: ["Cookie": c.cookie])?.body, c.host)
        }
        gw.signal(SIGTERM)
        _ = gw.waitForExit(timeout: 5)
    }
}
