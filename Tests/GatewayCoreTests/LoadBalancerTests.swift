import HTTP1Wire
import NIOCore
import XCTest
@testable import GatewayCore

/// The consistent-hash tables (distribution, weights, stability when a host is ejected), the
/// hash policy's key extraction, slow start's factor, the retry budget's formula, Envoy's backoff
/// and outlier detection's local-origin split.
final class LoadBalancerTests: XCTestCase {
    func testXXHash64KnownValues() {
        // Reference values of XXH64 with seed 0.
        XCTAssertEqual(XXHash64.hash(""), 0xEF46_DB37_51D8_E999)
        XCTAssertEqual(XXHash64.hash("a"), 0xD24E_C4F1_A98C_6E5B)
        XCTAssertEqual(XXHash64.hash("abc"), 0x44BC_2CF5_AD77_0999)
        XCTAssertEqual(XXHash64.hash("Nobody inspects the spammish repetition"), 0xFBCE_A83C_8A37_8BF1)
        XCTAssertEqual(XXHash64.hex(0xAB), "00000000000000ab")
    }

    let keys = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]

    /// 20,000 request keys, as the hash policy would produce them.
    var requestHashes: [UInt64] { (0..<20_000).map { XXHash64.hash("user-\($0)") } }

    func shares(_ pick: (UInt64) -> Int?, hosts: Int) -> [Double] {
        var counts = [Int](repeating: 0, count: hosts)
        for h in requestHashes { counts[pick(h)!] += 1 }
        return counts.map { Double($0) / 20_000 }
    }

    func testRingSizeAndDistribution() {
        let ring = RingHashTable(keys: keys, weights: [1, 1, 1], minimumRingSize: 1024)
        // Envoy's scale: ceil(1/3 × 1024) / (1/3) = 1026 entries, 342 a host.
        XCTAssertEqual(ring.count, 1026)
        XCTAssertTrue(ring.hashes == ring.hashes.sorted())
        for share in shares({ ring.pick($0, attempt: 0) { _ in true } }, hosts: 3) {
            XCTAssertEqual(share, 1.0 / 3, accuracy: 0.06)
        }
        let weighted = RingHashTable(keys: Array(keys.prefix(2)), weights: [1, 3], minimumRingSize: 1024)
        XCTAssertEqual(weighted.count, 1024, "minimumRingSize is the whole ring's: 1/4 × 1024 is whole already")
        XCTAssertEqual(weighted.owners.filter { $0 == 0 }.count, 256)
        let s = shares({ weighted.pick($0, attempt: 0) { _ in true } }, hosts: 2)
        XCTAssertEqual(s[0], 0.25, accuracy: 0.05)
    }

    func testMaglevDistribution() {
        let table = MaglevTable(keys: keys, weights: [1, 1, 1], tableSize: 65537)
        var slots = [0, 0, 0]
        for s in table.slots { slots[Int(s)] += 1 }
        XCTAssertLessThanOrEqual(slots.max()! - slots.min()!, 1, "Maglev: equal weights differ by one slot at most")
        let weighted = MaglevTable(keys: Array(keys.prefix(2)), weights: [1, 3], tableSize: 65537)
        var w = [0, 0]
        for s in weighted.slots { w[Int(s)] += 1 }
        XCTAssertEqual(Double(w[0]) / 65537, 0.25, accuracy: 0.01)
        XCTAssertTrue(MaglevTable.isPrime(65537) && MaglevTable.isPrime(2) && !MaglevTable.isPrime(65535) && !MaglevTable.isPrime(1))
    }

    /// Keys of hosts that stay usable never move when another host is ejected; the ejected
    /// host's keys spread over the rest and come back with it.
    func assertStableUnderEjection(_ pick: (UInt64, (Int) -> Bool) -> Int?, hosts: Int, file: StaticString = #filePath, line: UInt = #line) {
        let before = requestHashes.map { pick($0) { _ in true }! }
        let ejected = 1
        var moved = 0
        var receivers = Set<Int>()
        for (i, h) in requestHashes.enumerated() {
            let now = pick(h) { $0 != ejected }!
            XCTAssertNotEqual(now, ejected, file: file, line: line)
            if before[i] != ejected {
                XCTAssertEqual(now, before[i], "a key of a healthy host moved", file: file, line: line)
            } else {
                moved += 1
                receivers.insert(now)
            }
        }
        XCTAssertGreaterThan(moved, 0, file: file, line: line)
        XCTAssertEqual(receivers.count, hosts - 1, "the ejected host's keys spread over every other host", file: file, line: line)
        XCTAssertEqual(requestHashes.map { pick($0) { _ in true }! }, before, "back unejected: every key where it was", file: file, line: line)
        XCTAssertNil(pick(42) { _ in false }, file: file, line: line)
    }

    func testRingStableUnderEjection() {
        let ring = RingHashTable(keys: keys + ["10.0.0.4:80"], weights: [1, 1, 1, 1], minimumRingSize: 1024)
        assertStableUnderEjection({ h, usable in ring.pick(h, attempt: 0, usable: usable) }, hosts: 4)
    }

    func testMaglevStableUnderEjection() {
        let table = MaglevTable(keys: keys + ["10.0.0.4:80"], weights: [1, 1, 1, 1], tableSize: 65537)
        assertStableUnderEjection({ h, usable in table.pick(h, attempt: 0, usable: usable) }, hosts: 4)
    }

    func testRetryAttemptPicksAnotherHostMostly() {
        let ring = RingHashTable(keys: keys, weights: [1, 1, 1], minimumRingSize: 1024)
        let table = MaglevTable(keys: keys, weights: [1, 1, 1], tableSize: 65537)
        var ringOther = 0, maglevOther = 0
        for h in requestHashes.prefix(1000) {
            if ring.pick(h, attempt: 1) { _ in true } != ring.pick(h, attempt: 0) { _ in true } { ringOther += 1 }
            if table.pick(h, attempt: 1) { _ in true } != table.pick(h, attempt: 0) { _ in true } { maglevOther += 1 }
        }
        XCTAssertGreaterThan(ringOther, 500)
        XCTAssertGreaterThan(maglevOther, 500)
    }

    // MARK: hash policy

    func parsed(_ text: String) -> (MessageHead, ByteBuffer) {
        let buffer = ByteBuffer(string: text)
        let head = buffer.withUnsafeReadableBytes { b -> MessageHead in try! HeadParser.parse(b, kind: .request)! }
        return (head, buffer)
    }

    func hash(_ key: ConsistentHashSettings.Key, _ text: String, client: String = "10.1.2.3") -> UInt64? {
        let (head, bytes) = parsed(text)
        return bytes.withUnsafeReadableBytes { HashPolicy(key).hash(head, $0, clientAddress: client) }
    }

    func testHashKeys() {
        let req = "GET /a?x=1&user=alice&y HTTP/1.1\r\nHost: h\r\nX-User: bob \r\nCookie: a=1; sid=\"s1\"\r\nCookie: other=2\r\n\r\n"
        XCTAssertEqual(hash(.header("x-user"), req), XXHash64.hash("bob"))
        XCTAssertNil(hash(.header("x-none"), req))
        let twice = "GET / HTTP/1.1\r\nHost: h\r\nX-User: b\r\nX-User: a\r\n\r\n"
        let swapped = "GET / HTTP/1.1\r\nHost: h\r\nX-User: a\r\nX-User: b\r\n\r\n"
        XCTAssertEqual(hash(.header("x-user"), twice), XXHash64.hash("b", seed: XXHash64.hash("a")), "sorted, chained")
        XCTAssertEqual(hash(.header("x-user"), twice), hash(.header("x-user"), swapped))
        XCTAssertEqual(hash(.cookie(name: "sid", path: nil, ttl: nil), req), XXHash64.hash("s1"), "quotes are not part of the value")
        XCTAssertEqual(hash(.cookie(name: "other", path: nil, ttl: nil), req), XXHash64.hash("2"), "every Cookie line is searched")
        XCTAssertNil(hash(.cookie(name: "si", path: nil, ttl: nil), req))
        XCTAssertEqual(hash(.queryParameter("user"), req), XXHash64.hash("alice"))
        XCTAssertEqual(hash(.queryParameter("y"), req), XXHash64.hash(""))
        XCTAssertNil(hash(.queryParameter("us"), req))
        XCTAssertEqual(hash(.sourceIP, req, client: "10.9.9.9"), XXHash64.hash("10.9.9.9"))
        let cookie = HashPolicy(.cookie(name: "sid", path: "/", ttl: .seconds(60))).cookieToGenerate
        XCTAssertEqual(cookie?.attributes, "; Max-Age=60; Path=/; HttpOnly")
        XCTAssertEqual(HashPolicy(.cookie(name: "sid", path: nil, ttl: .seconds(0))).cookieToGenerate?.attributes, "; HttpOnly",
                       "ttl 0: a session cookie, no Max-Age")
        XCTAssertNil(HashPolicy(.cookie(name: "sid", path: nil, ttl: nil)).cookieToGenerate)
    }

    // MARK: slow start, retry budget, backoff

    func testWarmupFactor() {
        let w = WarmupSettings(duration: .seconds(100))
        XCTAssertEqual(w.factor(age: .milliseconds(10)), 0.1, accuracy: 1e-9, "minimumPercent holds at the start")
        XCTAssertEqual(w.factor(age: .seconds(50)), 0.5, accuracy: 1e-9)
        XCTAssertEqual(w.factor(age: .seconds(100)), 1)
        let fast = WarmupSettings(duration: .seconds(100), minimumPercent: 0, aggression: 2)
        XCTAssertEqual(fast.factor(age: .seconds(25)), 0.5, accuracy: 1e-9, "t^(1/aggression)")
    }

    func testWarmingHostGetsItsShare() {
        let old = Host(endpoint: Endpoint(address: "127.0.0.1", port: 1), addedAt: .now() - .seconds(1000))
        let new = Host(endpoint: Endpoint(address: "127.0.0.1", port: 2), addedAt: .now())
        let warmup = WarmupSettings(duration: .seconds(100))
        var random = FastRandom(seed: 3)
        var toNew = 0
        for _ in 0..<20_000 {
            let h = ClusterPool.drawWarming(.roundRobin, [old, new], { _ in true }, warmup, .now(), &random)
            if h === new { toNew += 1 }
        }
        // Weight 1 × 0.1 against 1: 1/11 of the picks.
        XCTAssertEqual(Double(toNew) / 20_000, 1.0 / 11, accuracy: 0.01)
    }

    func testRetryBudgetFormula() {
        let b = RetryBudgetSettings(percent: 20, minRetryConcurrency: 3)
        XCTAssertEqual(b.maxRetries(activeAndPending: 0), 3)
        XCTAssertEqual(b.maxRetries(activeAndPending: 24), 4, "4.8 truncates to 4")
        XCTAssertEqual(b.maxRetries(activeAndPending: 100), 20)
        let m = ResourceManager(ConnectionPoolSettings(maxRetries: 1))
        XCTAssertEqual(m.retryLimit, 1, "no budget: maxRetries")
        m.setRetryBudget(RetryBudgetSettings(percent: 50, minRetryConcurrency: 1))
        XCTAssertEqual(m.retryLimit, 1)
        for _ in 0..<6 { m.requests.inc() }
        for _ in 0..<4 { m.pendingRequests.inc() }
        XCTAssertEqual(m.retryLimit, 5, "50% of 6 active + 4 pending")
        for _ in 0..<5 { XCTAssertTrue(m.tryAcquireRetry()) }
        XCTAssertFalse(m.tryAcquireRetry())
        m.setRetryBudget(nil)
        XCTAssertEqual(m.retryLimit, 1)
    }

    func testBackoffBaseAndCap() {
        var state = RetryState(policy: RetryPolicyConfig(attempts: 10, retryOn: [.fiveXX], backoffBase: .milliseconds(100)))
        var random = FastRandom(seed: 11)
        var worst: Int64 = 0
        for _ in 0..<10 { worst = max(worst, state.nextBackoff(random: &random).nanoseconds) }
        XCTAssertLessThanOrEqual(worst, 1_000_000_000, "the cap is 10 × base")
        var first: [Int64] = []
        for seed in 0..<200 {
            var s = RetryState(policy: RetryPolicyConfig(attempts: 1, retryOn: [.fiveXX], backoffBase: .milliseconds(100)))
            var r = FastRandom(seed: UInt64(seed))
            first.append(s.nextBackoff(random: &r).nanoseconds)
        }
        XCTAssertLessThan(first.max()!, 100_000_000)
        XCTAssertGreaterThan(first.max()!, 80_000_000, "the draw spans the base interval")
    }

    // MARK: outlier detection, split mode

    func testLocalOriginSplitCountsApart() {
        let stats = ClusterStats()
        let settings = OutlierDetectionSettings(consecutive5xxErrors: 2, maxEjectionPercent: 100,
                                                splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 3)
        let detector = OutlierDetector(settings: settings, stats: stats)
        let host = Host(endpoint: Endpoint(address: "127.0.0.1", port: 1))
        detector.update(settings: settings, hosts: [host])
        detector.record(.connectFailure, host: host, settings: settings, now: .now())
        detector.record(.timeout, host: host, settings: settings, now: .now())
        XCTAssertFalse(host.isEjected, "local-origin failures do not count as 5xx in split mode")
        detector.record(.response(status: 200), host: host, settings: settings, now: .now())
        detector.record(.reset, host: host, settings: settings, now: .now())
        detector.record(.connectFailure, host: host, settings: settings, now: .now())
        XCTAssertFalse(host.isEjected, "an answer reset the local-origin count")
        detector.record(.connectFailure, host: host, settings: settings, now: .now())
        XCTAssertTrue(host.isEjected)
        XCTAssertEqual(stats[.outlier_detection_ejections_enforced_consecutive_local_origin_failure], 1)
        XCTAssertEqual(stats[.outlier_detection_ejections_enforced_consecutive_5xx], 0)

        let plain = OutlierDetectionSettings(consecutive5xxErrors: 2, maxEjectionPercent: 100)
        let other = Host(endpoint: Endpoint(address: "127.0.0.1", port: 2))
        let d2 = OutlierDetector(settings: plain, stats: ClusterStats())
        d2.update(settings: plain, hosts: [other])
        d2.record(.connectFailure, host: other, settings: plain, now: .now())
        d2.record(.connectFailure, host: other, settings: plain, now: .now())
        XCTAssertTrue(other.isEjected, "without the split a connect failure is a 503")
    }
}
