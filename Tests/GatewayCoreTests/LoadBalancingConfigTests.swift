import NIOCore
import XCTest
@testable import GatewayCore

/// ConfigLoader: DestinationRule `loadBalancer` (consistent hash, slow start), `retryBudget`,
/// outlier detection's local-origin split, and VirtualService `retries.backoff` /
/// `retryIgnorePreviousHosts`: what parses to what, and what is refused where.
final class LoadBalancingConfigTests: XCTestCase {
    let se = #"{"host":"delivery","endpoints":[{"address":"127.0.0.1","port":8082}]}"#

    func policy(_ trafficPolicy: String) throws -> TrafficPolicy {
        let c = try ConfigLoader.decode(Array(#"{"serviceEntries":[\#(se)],"destinationRules":[{"host":"delivery","trafficPolicy":\#(trafficPolicy)}]}"#.utf8))
        return try XCTUnwrap(c.hosts["delivery"]).trafficPolicy
    }

    func policyError(_ trafficPolicy: String) -> String { configErrorText { try policy(trafficPolicy) } }

    func retries(_ json: String) throws -> RetryPolicyConfig {
        let c = try ConfigLoader.decode(Array(#"{"serviceEntries":[\#(se)],"virtualServices":[{"http":[{"route":[{"destination":{"host":"delivery"}}],"retries":\#(json)}]}]}"#.utf8))
        return c.routes[0].retries
    }

    func retriesError(_ json: String) -> String { configErrorText { try retries(json) } }

    let tp = "destinationRules[0].trafficPolicy"

    func testConsistentHashKeys() throws {
        XCTAssertEqual(try policy(#"{"loadBalancer":{"consistentHash":{"httpHeaderName":"X-User"}}}"#).consistentHash,
                       ConsistentHashSettings(key: .header("x-user"), algorithm: .ringHash(minimumRingSize: 1024)))
        XCTAssertEqual(try policy(#"{"loadBalancer":{"consistentHash":{"httpCookie":{"name":"user","path":"/","ttl":"3600s"}}}}"#).consistentHash?.key,
                       .cookie(name: "user", path: "/", ttl: .seconds(3600)))
        XCTAssertEqual(try policy(#"{"loadBalancer":{"consistentHash":{"httpCookie":{"name":"user","ttl":"0s"}}}}"#).consistentHash?.key,
                       .cookie(name: "user", path: nil, ttl: .nanoseconds(0)), "ttl 0: a session cookie")
        XCTAssertEqual(try policy(#"{"loadBalancer":{"consistentHash":{"httpCookie":{"name":"user"}}}}"#).consistentHash?.key,
                       .cookie(name: "user", path: nil, ttl: nil), "no ttl: never generated")
        XCTAssertEqual(try policy(#"{"loadBalancer":{"consistentHash":{"useSourceIp":true}}}"#).consistentHash?.key, .sourceIP)
        XCTAssertEqual(try policy(#"{"loadBalancer":{"consistentHash":{"httpQueryParameterName":"user"}}}"#).consistentHash?.key,
                       .queryParameter("user"))
    }

    func testRingHashAndMaglevSizes() throws {
        XCTAssertEqual(try policy(#"{"loadBalancer":{"consistentHash":{"useSourceIp":true,"ringHash":{"minimumRingSize":4096}}}}"#)
            .consistentHash?.algorithm, .ringHash(minimumRingSize: 4096))
        XCTAssertEqual(try policy(#"{"loadBalancer":{"consistentHash":{"useSourceIp":true,"ringHash":{}}}}"#)
            .consistentHash?.algorithm, .ringHash(minimumRingSize: 1024))
        XCTAssertEqual(try policy(#"{"loadBalancer":{"consistentHash":{"useSourceIp":true,"minimumRingSize":2048}}}"#)
            .consistentHash?.algorithm, .ringHash(minimumRingSize: 2048), "the deprecated field directly under consistentHash")
        XCTAssertEqual(try policy(#"{"loadBalancer":{"consistentHash":{"useSourceIp":true,"maglev":{}}}}"#)
            .consistentHash?.algorithm, .maglev(tableSize: 65537))
        XCTAssertEqual(try policy(#"{"loadBalancer":{"consistentHash":{"useSourceIp":true,"maglev":{"tableSize":251}}}}"#)
            .consistentHash?.algorithm, .maglev(tableSize: 251))
    }

    func testConsistentHashRefusals() {
        let ch = "\(tp).loadBalancer.consistentHash"
        XCTAssertEqual(policyError(#"{"loadBalancer":{"consistentHash":{"useSourceIp":true,"maglev":{"tableSize":1000}}}}"#),
                       "\(ch).maglev.tableSize: must be a prime number (Maglev's table walk needs it), found 1000")
        XCTAssertEqual(policyError(#"{"loadBalancer":{"consistentHash":{"useSourceIp":true,"ringHash":{"minimumRingSize":9000000}}}}"#),
                       "\(ch).ringHash.minimumRingSize: must be <= 8388608, found 9000000")
        XCTAssertEqual(policyError(#"{"loadBalancer":{"consistentHash":{"useSourceIp":true,"ringHash":{},"maglev":{}}}}"#),
                       "\(ch).maglev: ringHash and maglev are exclusive")
        XCTAssertEqual(policyError(#"{"loadBalancer":{"consistentHash":{"httpHeaderName":"a","useSourceIp":true}}}"#),
                       "\(ch): httpHeaderName and useSourceIp are exclusive: the hash has one source")
        XCTAssertEqual(policyError(#"{"loadBalancer":{"consistentHash":{"useSourceIp":false}}}"#),
                       "\(ch): needs one of httpHeaderName, httpCookie, useSourceIp: true, httpQueryParameterName")
        XCTAssertEqual(policyError(#"{"loadBalancer":{"simple":"RANDOM","consistentHash":{"useSourceIp":true}}}"#),
                       "\(ch): simple and consistentHash are exclusive (one load balancer per policy)")
        XCTAssertEqual(policyError(#"{"loadBalancer":{"consistentHash":{"httpCookie":{"name":"a","path":"/;x"}}}}"#),
                       "\(ch).httpCookie.path: a cookie path may not hold control characters or ';'")
        XCTAssertEqual(policyError(#"{"loadBalancer":{"consistentHash":{"httpCookie":{"name":"a","attributes":[]}}}}"#),
                       "\(ch).httpCookie.attributes: not supported by this gateway")
        XCTAssertEqual(policyError(#"{"loadBalancer":{"consistentHash":{"httpHeaderName":"bad header"}}}"#),
                       "\(ch).httpHeaderName: 'bad header' is not a valid header name")
        XCTAssertTrue(policyError(#"{"loadBalancer":{"localityLbSetting":{"enabled":true}}}"#)
            .hasPrefix("\(tp).loadBalancer.localityLbSetting: not supported by this gateway: endpoints carry no locality"))
    }

    func testLeastConnIsLeastRequest() throws {
        XCTAssertEqual(try policy(#"{"loadBalancer":{"simple":"LEAST_CONN"}}"#).loadBalancer, .leastRequest)
        XCTAssertEqual(try policy(#"{"loadBalancer":{"simple":"LEAST_REQUEST"}}"#).loadBalancer, .leastRequest)
    }

    func testWarmup() throws {
        XCTAssertEqual(try policy(#"{"loadBalancer":{"simple":"ROUND_ROBIN","warmupDurationSecs":"60s"}}"#).warmup,
                       WarmupSettings(duration: .seconds(60), minimumPercent: 10, aggression: 1))
        XCTAssertEqual(try policy(#"{"loadBalancer":{"warmup":{"duration":"100s","minimumPercent":5,"aggression":2}}}"#).warmup,
                       WarmupSettings(duration: .seconds(100), minimumPercent: 5, aggression: 2))
        XCTAssertNil(try policy(#"{"loadBalancer":{"warmupDurationSecs":"0s"}}"#).warmup, "a zero window: no slow start")
        XCTAssertNil(try policy(#"{"loadBalancer":{"warmup":{"duration":"0s"}}}"#).warmup)
        XCTAssertEqual(policyError(#"{"loadBalancer":{"warmup":{"duration":"500ms"}}}"#),
                       "\(tp).loadBalancer.warmup.duration: must be >= 1000ms, found '500ms'")
        XCTAssertEqual(policyError(#"{"loadBalancer":{"warmup":{"minimumPercent":5}}}"#),
                       "\(tp).loadBalancer.warmup.duration: required field is missing")
        XCTAssertEqual(policyError(#"{"loadBalancer":{"warmup":{"duration":"10s","aggression":0.5}}}"#),
                       "\(tp).loadBalancer.warmup.aggression: must be 1...1000 (Istio's lower bound), found 0.5")
        XCTAssertEqual(policyError(#"{"loadBalancer":{"simple":"RANDOM","warmupDurationSecs":"10s"}}"#),
                       "\(tp).loadBalancer.warmupDurationSecs: slow start applies to ROUND_ROBIN and LEAST_REQUEST only, not RANDOM")
        XCTAssertEqual(policyError(#"{"loadBalancer":{"consistentHash":{"useSourceIp":true},"warmup":{"duration":"10s"}}}"#),
                       "\(tp).loadBalancer.warmup: slow start applies to ROUND_ROBIN and LEAST_REQUEST only, not consistentHash")
        XCTAssertEqual(policyError(#"{"loadBalancer":{"warmupDurationSecs":"10s","warmup":{"duration":"10s"}}}"#),
                       "\(tp).loadBalancer.warmup: set either warmup or the deprecated warmupDurationSecs, not both")
    }

    func testRetryBudget() throws {
        XCTAssertEqual(try policy(#"{"retryBudget":{}}"#).retryBudget, RetryBudgetSettings(percent: 20, minRetryConcurrency: 3))
        XCTAssertEqual(try policy(#"{"retryBudget":{"percent":12.5,"minRetryConcurrency":0}}"#).retryBudget,
                       RetryBudgetSettings(percent: 12.5, minRetryConcurrency: 0))
        XCTAssertNil(try policy(#"{}"#).retryBudget)
        XCTAssertEqual(policyError(#"{"retryBudget":{"percent":120}}"#), "\(tp).retryBudget.percent: must be 0...100, found 120.0")
        XCTAssertTrue(policyError(#"{"retryBudget":{"ttl":"1s"}}"#).hasPrefix("\(tp).retryBudget.ttl: unknown field 'ttl'"))
    }

    func testRetryBudgetSilencesTheMaxRetriesWarning() throws {
        func warnings(_ tp: String) throws -> [String] {
            ConfigReport.warnings(try ConfigLoader.decode(Array(#"{"serviceEntries":[\#(se)],"destinationRules":[{"host":"delivery","trafficPolicy":\#(tp)}],"virtualServices":[{"http":[{"route":[{"destination":{"host":"delivery"}}],"retries":{"attempts":3}}]}]}"#.utf8)))
        }
        XCTAssertTrue(try warnings(#"{"connectionPool":{"http":{"maxRetries":1}}}"#).contains { $0.contains("maxRetries 1") })
        XCTAssertFalse(try warnings(#"{"connectionPool":{"http":{"maxRetries":1}},"retryBudget":{}}"#).contains { $0.contains("maxRetries") },
                       "a retry budget replaces maxRetries")
    }

    func testValidateExplainsTheNewFields() throws {
        let c = try ConfigLoader.decode(Array(#"""
        {"serviceEntries":[\#(se)],
         "destinationRules":[{"host":"delivery","trafficPolicy":{
           "loadBalancer":{"consistentHash":{"httpCookie":{"name":"sid","path":"/","ttl":"60s"},"maglev":{}}},
           "retryBudget":{"percent":25,"minRetryConcurrency":2},
           "outlierDetection":{"splitExternalLocalOriginErrors":true}}}],
         "virtualServices":[{"http":[{"route":[{"destination":{"host":"delivery"}}],"retries":{"attempts":2,"backoff":"50ms","retryIgnorePreviousHosts":false}}]}]}
        """#.utf8))
        let text = ConfigReport.render(c)
        XCTAssertTrue(text.contains("consistent hash on cookie sid, set when missing (Max-Age 60s, Path /), Maglev (65537 slots)"), text)
        XCTAssertTrue(text.contains("retry budget: 25.0% of active + pending requests, at least 2 (replaces maxRetries; "
            + "retries at once by active count: 0 → 2, 10 → 2, 100 → 25, 1000 → 250)"), text)
        XCTAssertTrue(text.contains("local-origin failures apart: consecutiveLocalOriginFailures 5"), text)
        XCTAssertTrue(text.contains("backoff 50ms (at most 500ms), may retry on the same host"), text)
    }

    func testLocalOriginSplit() throws {
        let od = try XCTUnwrap(try policy(#"{"outlierDetection":{"splitExternalLocalOriginErrors":true,"consecutiveLocalOriginFailures":3}}"#).outlierDetection)
        XCTAssertTrue(od.splitExternalLocalOriginErrors)
        XCTAssertEqual(od.consecutiveLocalOriginFailures, 3)
        let defaults = try XCTUnwrap(try policy(#"{"outlierDetection":{"splitExternalLocalOriginErrors":true}}"#).outlierDetection)
        XCTAssertEqual(defaults.consecutiveLocalOriginFailures, 5, "Envoy's default")
        XCTAssertTrue(policyError(#"{"outlierDetection":{"consecutiveLocalOriginFailures":3}}"#)
            .hasPrefix("\(tp).outlierDetection.consecutiveLocalOriginFailures: only counted with splitExternalLocalOriginErrors: true"))
    }

    func testBackoffAndPreviousHosts() throws {
        let p = try retries(#"{"attempts":2,"backoff":"100ms","retryIgnorePreviousHosts":false}"#)
        XCTAssertEqual(p.backoffBase, .milliseconds(100))
        XCTAssertFalse(p.ignorePreviousHosts)
        let d = try retries(#"{"attempts":2}"#)
        XCTAssertEqual(d.backoffBase, .milliseconds(25), "Envoy's default base interval")
        XCTAssertTrue(d.ignorePreviousHosts, "Istio's default")
        XCTAssertTrue(RetryPolicyConfig.istioDefault.ignorePreviousHosts)
        XCTAssertEqual(retriesError(#"{"attempts":2,"backoff":"0s"}"#), "virtualServices[0].http[0].retries.backoff: must be > 0, found '0s'")
        XCTAssertEqual(retriesError(#"{"attempts":2,"retryIgnorePreviousHosts":"yes"}"#),
                       "virtualServices[0].http[0].retries.retryIgnorePreviousHosts: expected true or false, found a string")
    }
}
