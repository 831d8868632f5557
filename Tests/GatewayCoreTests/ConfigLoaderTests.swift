import Foundation
import NIOCore
import XCTest
@testable import GatewayCore

final class ConfigLoaderTests: XCTestCase, ConfigLoading {
    let se = #"{"host":"delivery","endpoints":[{"address":"127.0.0.1","port":8082}]}"#

    func testSpecExampleWithDefaults() throws {
        let c = try load(#"""
        {"serviceEntries":[{"host":"delivery","endpoints":[{"address":"127.0.0.1","port":8082}]}],
         "virtualServices":[{"http":[{"match":[{"uri":{"prefix":"/deliveries"}}],"route":[{"destination":{"host":"delivery"},"weight":100}],
           "timeout":"5s","retries":{"attempts":2,"perTryTimeout":"1s","retryOn":"connect-failure,refused-stream,gateway-error"},
           "fault":{"delay":{"fixedDelay":"2s","percentage":{"value":10}},"abort":{"httpStatus":500,"percentage":{"value":5}}},
           "localRateLimit":{"tokenBucket":{"maxTokens":100,"tokensPerFill":100,"fillInterval":"1s"},"perClient":"remoteAddress"}}]}],
         "destinationRules":[{"host":"delivery","trafficPolicy":{
           "connectionPool":{"tcp":{"maxConnections":1,"connectTimeout":"1s"},
             "http":{"http1MaxPendingRequests":1,"http2MaxRequests":1024,"maxRequestsPerConnection":1,"maxRetries":3,"idleTimeout":"60s"}},
           "outlierDetection":{"consecutive5xxErrors":5,"consecutiveGatewayErrors":3,"interval":"1s","baseEjectionTime":"30s","maxEjectionPercent":100,"minHealthPercent":0},
           "loadBalancer":{"simple":"ROUND_ROBIN"}}}]}
        """#)
        XCTAssertEqual(c.listener, BindAddress(address: "0.0.0.0", port: 8080))
        XCTAssertEqual(c.admin, BindAddress(address: "127.0.0.1", port: 9901))
        let cp = try XCTUnwrap(c.hosts["delivery"]).trafficPolicy.connectionPool
        XCTAssertEqual(cp.maxConnections, 1)
        XCTAssertEqual(cp.http2MaxRequests, 1024)
        XCTAssertEqual(cp.idleTimeout, .seconds(60))
        let r = c.routes[0]
        XCTAssertEqual(r.name, "vs0.0")
        XCTAssertEqual(r.retries.retryOn, [.connectFailure, .refusedStream, .gatewayError])
        XCTAssertEqual(r.retries.perTryTimeout, .seconds(1))
        XCTAssertEqual(r.fault?.delay?.percentage, 10)
        XCTAssertEqual(r.localRateLimit?.perClient, true)
        XCTAssertEqual(c.hosts["delivery"]?.trafficPolicy.outlierDetection?.consecutiveGatewayErrors, 3)
    }

    func testIstioDefaultsWhenFieldsAreAbsent() throws {
        let c = try load(#"{"serviceEntries":[\#(se)],"destinationRules":[{"host":"delivery","trafficPolicy":{"outlierDetection":{}}}],"virtualServices":[{"http":[{"route":[{"destination":{"host":"delivery"}}]}]}]}"#)
        let p = try XCTUnwrap(c.hosts["delivery"]).trafficPolicy
        XCTAssertEqual(p.connectionPool, ConnectionPoolSettings())
        XCTAssertEqual(p.connectionPool.maxConnections, 4_294_967_295)
        XCTAssertEqual(p.outlierDetection, OutlierDetectionSettings())
        XCTAssertEqual(c.routes[0].retries, .istioDefault)
        XCTAssertNil(c.routes[0].timeout)
    }

    func testDurations() {
        XCTAssertEqual(IstioDuration.parse("250ms"), .milliseconds(250))
        XCTAssertEqual(IstioDuration.parse("1.5s"), .milliseconds(1500))
        XCTAssertEqual(IstioDuration.parse("3m"), .minutes(3))
        XCTAssertEqual(IstioDuration.parse("1h"), .hours(1))
        XCTAssertEqual(IstioDuration.parse("1m30s"), .seconds(90))
        XCTAssertEqual(IstioDuration.parse("500us"), .microseconds(500))
        XCTAssertEqual(IstioDuration.parse("100ns"), .nanoseconds(100))
        XCTAssertNil(IstioDuration.parse("5"))
        XCTAssertNil(IstioDuration.parse("1 sec"))
        XCTAssertNil(IstioDuration.parse(""))
    }

    func testKubernetesObjectsAndIstioServiceEntryShape() throws {
        let c = try load(#"""
        {"serviceEntries":[{"apiVersion":"networking.istio.io/v1beta1","kind":"ServiceEntry","metadata":{"name":"se","namespace":"default","labels":{"a":"b"}},
           "spec":{"hosts":["order"],"ports":[{"number":8081,"name":"http","protocol":"HTTP"}],"resolution":"STATIC",
                   "endpoints":[{"address":"127.0.0.1","ports":{"http":9081}},{"address":"127.0.0.2"}]}}],
         "virtualServices":[{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"order-vs"},
           "spec":{"hosts":["order"],"http":[{"route":[{"destination":{"host":"order.default.svc.cluster.local"}}]}]},"status":{}}]}
        """#)
        XCTAssertEqual(c.hosts["order"]?.endpoints, [Endpoint(address: "127.0.0.1", port: 9081), Endpoint(address: "127.0.0.2", port: 8081)])
        XCTAssertEqual(c.routes[0].name, "order-vs.0")
        XCTAssertEqual(c.routes[0].destinations, [WeightedDestination(host: "order")])
        XCTAssertEqual(c.routes[0].virtualHosts, ["order"])
    }

    /// `tcpKeepalive` is applied (never accepted and ignored); `maxConcurrentStreams` is read
    /// for HTTP/2 upstream connections, and out of range refused with its path.
    func testTCPKeepaliveAndMaxConcurrentStreamsAreRead() throws {
        let c = try load(#"{"serviceEntries":[\#(se)],"destinationRules":[{"host":"delivery","trafficPolicy":{"connectionPool":{"tcp":{"tcpKeepalive":{"probes":4,"time":"7s","interval":"3s"}}}}}]}"#)
        XCTAssertEqual(c.hosts["delivery"]?.trafficPolicy.connectionPool.tcpKeepalive,
                       TCPKeepalive(probes: 4, time: .seconds(7), interval: .seconds(3)))
        let partial = try load(#"{"serviceEntries":[\#(se)],"destinationRules":[{"host":"delivery","trafficPolicy":{"connectionPool":{"tcp":{"tcpKeepalive":{}}}}}]}"#)
        XCTAssertEqual(partial.hosts["delivery"]?.trafficPolicy.connectionPool.tcpKeepalive, TCPKeepalive(),
                       "an empty tcpKeepalive turns keep-alive on with the kernel's timings")
        XCTAssertNil(try load(#"{"serviceEntries":[\#(se)]}"#).hosts["delivery"]?.trafficPolicy.connectionPool.tcpKeepalive)
        XCTAssertEqual(error(#"{"serviceEntries":[\#(se)],"destinationRules":[{"host":"delivery","trafficPolicy":{"connectionPool":{"tcp":{"tcpKeepalive":{"probes":0}}}}}]}"#),
                       "destinationRules[0].trafficPolicy.connectionPool.tcp.tcpKeepalive.probes: must be >= 1, found 0")
        XCTAssertEqual(error(#"{"serviceEntries":[\#(se)],"destinationRules":[{"host":"delivery","trafficPolicy":{"connectionPool":{"tcp":{"tcpKeepalive":{"time":"10h"}}}}}]}"#),
                       "destinationRules[0].trafficPolicy.connectionPool.tcp.tcpKeepalive.time: at most 32767s, the kernel's limit")
        XCTAssertEqual(try load(#"{"serviceEntries":[\#(se)],"destinationRules":[{"host":"delivery","trafficPolicy":{"connectionPool":{"http":{"maxConcurrentStreams":100}}}}]}"#)
            .hosts["delivery"]?.trafficPolicy.connectionPool.maxConcurrentStreams, 100)
        XCTAssertEqual(error(#"{"serviceEntries":[\#(se)],"destinationRules":[{"host":"delivery","trafficPolicy":{"connectionPool":{"http":{"maxConcurrentStreams":0}}}}]}"#),
                       "destinationRules[0].trafficPolicy.connectionPool.http.maxConcurrentStreams: must be >= 1, found 0")
    }

    func testDeferAcceptIsAListenerSwitchOffByDefault() throws {
        XCTAssertFalse(try load(#"{"serviceEntries":[\#(se)]}"#).downstream.deferAccept)
        XCTAssertTrue(try load(#"{"listener":{"deferAccept":true},"serviceEntries":[\#(se)]}"#).downstream.deferAccept)
        XCTAssertTrue(error(#"{"listener":{"deferAccept":1},"serviceEntries":[\#(se)]}"#).hasPrefix("listener.deferAccept: "))
    }

    func testErrorsCarryTheJSONPath() {
        XCTAssertEqual(error(#"{"serviceEntries":[\#(se)],"destinationRules":[{"host":"delivery","trafficPolicy":{"connectionPool":{"tcp":{"maxConnections":0}}}}]}"#),
                       "destinationRules[0].trafficPolicy.connectionPool.tcp.maxConnections: must be >= 1, found 0")
        XCTAssertTrue(error(#"{"serviceEntries":[\#(se)],"destinationRules":[{"host":"delivery","trafficPolicy":{"connectionPool":{"tcp":{"maxConection":1}}}}]}"#)
            .hasPrefix("destinationRules[0].trafficPolicy.connectionPool.tcp.maxConection: unknown field 'maxConection'"))
        XCTAssertEqual(error(#"{"serviceEntries":[\#(se)],"destinationRules":[{"host":"delivery","trafficPolicy":{"connectionPool":{"http":{"http1MaxPendingRequests":"1"}}}}]}"#),
                       "destinationRules[0].trafficPolicy.connectionPool.http.http1MaxPendingRequests: expected a number, found a string")
        XCTAssertEqual(error(#"{"serviceEntries":[\#(se)],"destinationRules":[{"host":"delivery","trafficPolicy":{"outlierDetection":{"interval":"soon"}}}]}"#),
                       #"destinationRules[0].trafficPolicy.outlierDetection.interval: invalid duration 'soon' (use e.g. "250ms", "1s", "1m30s")"#)
        XCTAssertTrue(error(#"{"serviceEntries":[\#(se)],"virtualServices":[{"http":[{"route":[{"destination":{"host":"nope"}}]}]}]}"#)
            .hasPrefix("virtualServices[0].http[0].route[0].destination.host: unknown host 'nope'"))
        XCTAssertTrue(error(#"{"serviceEntries":[\#(se)],"virtualServices":[{"http":[{"route":[{"destination":{"host":"delivery"}}],"retries":{"attempts":1,"retryOn":"5xx,sometimes"}}]}]}"#)
            .hasPrefix("virtualServices[0].http[0].retries.retryOn: unknown retry condition 'sometimes'"))
        XCTAssertEqual(error(#"{"serviceEntries":[\#(se)],"virtualServices":[{"http":[{"route":[{"destination":{"host":"delivery"}}],"fault":{"abort":{"httpStatus":700}}}]}]}"#),
                       "virtualServices[0].http[0].fault.abort.httpStatus: must be <= 599, found 700")
        XCTAssertTrue(error(#"{"serviceEntries":[\#(se)],"virtualServices":[{"http":[{"match":[{"uri":{"regex":"(["}}],"route":[{"destination":{"host":"delivery"}}]}]}]}"#)
            .hasPrefix("virtualServices[0].http[0].match[0].uri.regex: invalid regex"))
        XCTAssertEqual(error(#"{"serviceEntries":[\#(se),{"host":"x","endpoints":[{"address":"a","port":1}]}],"virtualServices":[{"http":[{"route":[{"destination":{"host":"delivery"},"weight":60},{"destination":{"host":"x"},"weight":30}]}]}]}"#),
                       "virtualServices[0].http[0].route: destination weights must add up to 100, found 90")
        XCTAssertEqual(error(#"{"virtualServices":[{"kind":"DestinationRule","spec":{}}]}"#),
                       "virtualServices[0].kind: expected kind 'VirtualService', found 'DestinationRule'")
        XCTAssertTrue(error("{not json").hasPrefix("not valid JSON"))
    }

    func testRetryOnStatusCodes() throws {
        let c = try load(#"{"serviceEntries":[\#(se)],"virtualServices":[{"http":[{"route":[{"destination":{"host":"delivery"}}],"retries":{"attempts":3,"retryOn":"gateway-error,409, 429"}}]}]}"#)
        XCTAssertEqual(c.routes[0].retries.retryOn, [.gatewayError, .retriableStatusCodes])
        XCTAssertEqual(c.routes[0].retries.retriableStatusCodes, [409, 429])
    }

    func testShippedConfigsLoadAndWarnAboutTheSeedBreaker() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized
        let shop = try ConfigLoader.load(contentsOf: root.appendingPathComponent("config/gateway.json").path)
        XCTAssertEqual(Set(shop.hosts.keys), ["order", "delivery", "inventory", "mypage"])
        XCTAssertEqual(shop.hosts["delivery"]?.endpoints, [Endpoint(address: "127.0.0.1", port: 8082)])
        let cb = try ConfigLoader.load(contentsOf: root.appendingPathComponent("config/circuit-breaker.json").path)
        for host in ["delivery", "order"] {
            let cp = try XCTUnwrap(cb.hosts[host]).trafficPolicy.connectionPool
            XCTAssertEqual(cp.maxConnections, 1)
            XCTAssertEqual(cp.http1MaxPendingRequests, 1)
            XCTAssertEqual(cp.maxRequestsPerConnection, 1)
        }
        let warnings = ConfigReport.warnings(cb)
        XCTAssertTrue(warnings.contains { $0.hasPrefix("delivery: maxConnections 1 + http1MaxPendingRequests 1: a 3rd concurrent request is shed") }, "\(warnings)")
        XCTAssertTrue(ConfigReport.render(cb).contains("maxConnections            1"))
    }

    func testMaxTrackedClientsDefaultsRangeAndNeedsPerClient() throws {
        func route(_ rl: String) -> String {
            #"{"serviceEntries":[\#(se)],"virtualServices":[{"http":[{"route":[{"destination":{"host":"delivery"}}],"localRateLimit":\#(rl)}]}]}"#
        }
        let bucket = #""tokenBucket":{"maxTokens":10,"fillInterval":"1s"}"#
        let byDefault = try load(route(#"{\#(bucket),"perClient":"remoteAddress"}"#))
        XCTAssertEqual(byDefault.routes[0].localRateLimit?.maxTrackedClients, 10_000)
        let set = try load(route(#"{\#(bucket),"perClient":"remoteAddress","maxTrackedClients":500}"#))
        XCTAssertEqual(set.routes[0].localRateLimit?.maxTrackedClients, 500)
        XCTAssertTrue(ConfigJSON.encode(set).contains(#""maxTrackedClients":500"#))
        XCTAssertEqual(error(route(#"{\#(bucket),"perClient":"remoteAddress","maxTrackedClients":0}"#)),
                       "virtualServices[0].http[0].localRateLimit.maxTrackedClients: must be >= 1, found 0")
        XCTAssertEqual(error(route(#"{\#(bucket),"perClient":"remoteAddress","maxTrackedClients":2000000}"#)),
                       "virtualServices[0].http[0].localRateLimit.maxTrackedClients: must be <= 1000000, found 2000000")
        XCTAssertEqual(error(route(#"{\#(bucket),"perClient":"remoteAddress","maxTrackedClients":"many"}"#)),
                       "virtualServices[0].http[0].localRateLimit.maxTrackedClients: expected a number, found a string")
        XCTAssertTrue(error(route(#"{\#(bucket),"maxTrackedClients":100}"#))
            .hasPrefix("virtualServices[0].http[0].localRateLimit.maxTrackedClients: only applies with \"perClient\""))
    }

    func testConfigFileSizeIsCappedAt16MiB() throws {
        let dir = FileManager.default.temporaryDirectory
        let json = #"{"serviceEntries":[\#(se)]}"#
        let atLimit = dir.appendingPathComponent("cfg-\(UUID().uuidString).json")
        let overLimit = dir.appendingPathComponent("cfg-\(UUID().uuidString).json")
        defer {
            try? FileManager.default.removeItem(at: atLimit)
            try? FileManager.default.removeItem(at: overLimit)
        }
        let limit = ConfigLoader.maxConfigFileBytes
        XCTAssertEqual(limit, 16 << 20)
        try (json + String(repeating: " ", count: limit - json.utf8.count)).write(to: atLimit, atomically: true, encoding: .utf8)
        try (json + String(repeating: " ", count: limit - json.utf8.count + 1)).write(to: overLimit, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ConfigLoader.load(contentsOf: atLimit.path).hosts.count, 1, "exactly 16 MiB is accepted")
        XCTAssertThrowsError(try ConfigLoader.load(contentsOf: overLimit.path)) { error in
            XCTAssertEqual("\(error)", "config file '\(overLimit.path)' is larger than the 16 MiB limit")
        }
        XCTAssertThrowsError(try ConfigLoader.load(contentsOf: dir.path + "/nonexistent-\(UUID().uuidString).json")) { error in
            XCTAssertTrue("\(error)".hasPrefix("cannot read config file"), "\(error)")
        }
    }
}
