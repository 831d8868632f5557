import Atomics
import Foundation
import NIOCore
import NIOPosix
import XCTest
@testable import LoadTestCore

final class OptionParsingTests: XCTestCase {
    func testDurationsHeadersAndURLs() throws {
        XCTAssertEqual(try LoadOptions.parseDuration("10S"), .seconds(10))
        XCTAssertEqual(try LoadOptions.parseDuration("2m"), .minutes(2))
        XCTAssertEqual(try LoadOptions.parseDuration("1H"), .hours(1))
        XCTAssertEqual(try LoadOptions.parseDuration("3"), .seconds(3))
        XCTAssertThrowsError(try LoadOptions.parseDuration("10X"))
        XCTAssertThrowsError(try LoadOptions.parseDuration("-1S"))
        XCTAssertTrue(try LoadOptions.parseHeader("X-Test:  a b ") == ("X-Test", "a b"))
        XCTAssertThrowsError(try LoadOptions.parseHeader("nocolon"))
        XCTAssertEqual(try Target.parseURL("http://127.0.0.1:8080/orders?x=1"), Target(host: "127.0.0.1", port: 8080, path: "/orders?x=1"))
        XCTAssertEqual(try Target.parseURL("localhost"), Target(host: "localhost", port: 80, path: "/"))
        XCTAssertThrowsError(try Target.parseURL("https://x/"))
        XCTAssertThrowsError(try Target.parseURL("http://x:99999/"))
    }

    func testURLFileLines() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try "{\"qty\":1}".write(to: dir.appendingPathComponent("body.json"), atomically: true, encoding: .utf8)
        let file = dir.appendingPathComponent("urls.txt")
        try """
            # the shop
            http://127.0.0.1:8080/orders POST {"orderId":1,"productId":2,"qty":3}
            http://127.0.0.1:8080/deliveries
            http://127.0.0.1:8080/orders POST < body.json
            """.write(to: file, atomically: true, encoding: .utf8)
        let targets = try Target.parseFile(file.path)
        XCTAssertEqual(targets.count, 3)
        XCTAssertEqual(targets[0].method, "POST")
        XCTAssertEqual(targets[0].body.map { String(decoding: $0, as: UTF8.self) }, "{\"orderId\":1,\"productId\":2,\"qty\":3}")
        XCTAssertEqual(targets[1].method, "GET")
        XCTAssertEqual(targets[2].body.map { String(decoding: $0, as: UTF8.self) }, "{\"qty\":1}")
        XCTAssertThrowsError(try Target.parseLine("http://x/ FETCH"))
        XCTAssertThrowsError(try Target.parseFile(dir.appendingPathComponent("missing").path))
    }

    func testDefaultEventLoopsFollowTheConnectionMode() {
        XCTAssertEqual(LoadOptions.defaultEventLoops(.keepAlive, cores: 2), 1)
        XCTAssertEqual(LoadOptions.defaultEventLoops(.keepAlive, cores: 1), 1)
        XCTAssertEqual(LoadOptions.defaultEventLoops(.keepAlive, cores: 8), 4)
        XCTAssertEqual(LoadOptions.defaultEventLoops(.close, cores: 2), 2)
        XCTAssertEqual(LoadOptions.defaultEventLoops(.close, cores: 1), 1)
    }

    func testEncodedRequest() {
        var o = LoadOptions()
        o.targets = [Target(method: "POST", host: "h", port: 8080, path: "/o", body: Array("{}".utf8))]
        o.headers = [("X-A", "1")]
        o.connection = .close
        let text = String(buffer: o.encodedRequests()[0])
        XCTAssertEqual(text, "POST /o HTTP/1.1\r\nHost: h:8080\r\nUser-Agent: loadtest\r\nAccept: */*\r\nConnection: close\r\nX-A: 1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    }
}

final class SummaryTests: XCTestCase {
    /// A recorded run: 8 × 200 (10 ms), 1 × 503 (20 ms), 1 × 404 (30 ms), 2 socket failures, 4 s,
    /// counted as siege 4 counts: the 503 is a failed transaction, the 404 a transaction that is
    /// not successful.
    func testSiegeArithmetic() {
        var r = Recorder()
        for _ in 0..<8 { r.recordResponse(status: 200, bodyBytes: 1_048_576 / 8, latencyMicros: 10_000, second: 0) }
        r.recordResponse(status: 503, bodyBytes: 0, latencyMicros: 20_000, second: 1)
        r.recordResponse(status: 404, bodyBytes: 0, latencyMicros: 30_000, second: 2)
        r.recordSocketFailure(second: 3)
        r.recordSocketFailure(second: 3)
        let s = Summary(r, elapsed: 4)
        XCTAssertEqual(s.transactions, 9)
        XCTAssertEqual(s.responses, 10)
        XCTAssertEqual(s.successful, 8)
        XCTAssertEqual(s.failed, 3)
        XCTAssertEqual(s.availability, 100 * 9 / 12, accuracy: 1e-9)
        XCTAssertEqual(s.megabytes, 1, accuracy: 1e-9)
        XCTAssertEqual(s.responseTime, 0.13 / 9, accuracy: 1e-9)
        XCTAssertEqual(s.transactionRate, 2.25, accuracy: 1e-9)
        XCTAssertEqual(s.throughput, 0.25, accuracy: 1e-9)
        XCTAssertEqual(s.concurrency, 0.13 / 4, accuracy: 1e-9)
        XCTAssertEqual(s.longest, 0.03, accuracy: 1e-9)
        XCTAssertEqual(s.shortest, 0.01, accuracy: 1e-9)
        XCTAssertEqual(s.statusCounts, [200: 8, 503: 1, 404: 1])
        XCTAssertEqual(s.percentiles.first { $0.0 == "p50" }?.1 ?? 0, 10, accuracy: 0.02)
        let text = Report.text(s)
        XCTAssertTrue(text.contains("Transactions:                        9 hits"), text)
        XCTAssertTrue(text.contains("Availability:                    75.00 %"), text)
        XCTAssertTrue(text.contains("Failed transactions:                 3"), text)
        let json = try! JSONSerialization.jsonObject(with: Data(Report.json(s).utf8)) as! [String: Any]
        XCTAssertEqual(json["transactions"] as? Int, 9)
        XCTAssertEqual(json["responses"] as? Int, 10)
        XCTAssertEqual(json["socket_failures"] as? Int, 2)
        XCTAssertEqual((json["status_codes"] as? [String: Int])?["503"], 1)
        let html = Report.html(s, r, title: "t")
        XCTAssertTrue(html.contains("<svg id=\"latency\""))
        XCTAssertFalse(html.contains("http://") && html.contains("src="), "no external fetches")
    }
}

final class EngineTests: XCTestCase {
    func run(_ o: LoadOptions) async throws -> (Summary, Recorder) {
        let r = try await LoadEngine.run(o, group: MultiThreadedEventLoopGroup.singleton, live: nil, stop: ManagedAtomic(false))
        return (Summary(r.recorder, elapsed: r.elapsed), r.recorder)
    }

    func testRepetitionsAreCountedHonestly() async throws {
        let server = try CountingServer()
        defer { server.close() }
        var o = LoadOptions()
        o.concurrency = 4
        o.repetitions = 50
        o.targets = [try Target.parseURL(server.url)]
        let (s, _) = try await run(o)
        XCTAssertEqual(s.transactions, 200)
        XCTAssertEqual(server.requests.load(ordering: .relaxed), 200, "the server saw exactly the transactions")
        XCTAssertEqual(s.failed, 0)
    }

    func testPostBodiesArriveAsPosts() async throws {
        let server = try CountingServer()
        defer { server.close() }
        var o = LoadOptions()
        o.concurrency = 2
        o.repetitions = 5
        o.connection = .close
        o.targets = [try Target.parseLine("\(server.url)orders POST {\"qty\":10}")!]
        let (s, _) = try await run(o)
        XCTAssertEqual(s.transactions, 10)
        XCTAssertEqual(server.posts.load(ordering: .relaxed), 10)
        XCTAssertEqual(Set(server.seenBodies), ["{\"qty\":10}"])
    }

    /// A body larger than the socket buffers: the first send of each request writes only part of
    /// it and NIO writes the rest; every request must still arrive whole and in order.
    func testRequestsLargerThanTheSocketBufferArriveWhole() async throws {
        let server = try CountingServer()
        defer { server.close() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let body = String(repeating: "0123456789abcdef", count: 1 << 20)  // 16 MiB
        try body.write(to: dir.appendingPathComponent("big.json"), atomically: true, encoding: .utf8)
        var o = LoadOptions()
        o.concurrency = 2
        o.repetitions = 3
        o.timeout = .seconds(30)
        o.targets = [try Target.parseLine("\(server.url)orders POST < big.json", relativeTo: dir.path)!]
        let (s, _) = try await run(o)
        XCTAssertEqual(s.transactions, 6)
        XCTAssertEqual(s.failed, 0)
        XCTAssertEqual(server.posts.load(ordering: .relaxed), 6)
        XCTAssertEqual(server.seenBodies.map(\.count), Array(repeating: body.utf8.count, count: 6))
        XCTAssertTrue(server.seenBodies.allSatisfy { $0 == body }, "no byte lost, doubled or reordered")
    }

    func testServerClosingMidResponseCountsAsFailedNotAHang() async throws {
        let server = try CountingServer(mode: .closeMidResponse)
        defer { server.close() }
        var o = LoadOptions()
        o.concurrency = 2
        o.repetitions = 3
        o.targets = [try Target.parseURL(server.url)]
        let (s, _) = try await run(o)
        XCTAssertEqual(s.transactions, 0)
        XCTAssertEqual(s.failed, 6)
        XCTAssertEqual(s.availability, 0)
    }

    func testDurationEndsOnTime() async throws {
        let server = try CountingServer()
        defer { server.close() }
        var o = LoadOptions()
        o.concurrency = 3
        o.duration = .seconds(1)
        o.targets = [try Target.parseURL(server.url)]
        let started = Date()
        let (s, _) = try await run(o)
        XCTAssertEqual(Date().timeIntervalSince(started), 1, accuracy: 0.3)
        XCTAssertEqual(s.elapsed, 1, accuracy: 0.05)
        XCTAssertGreaterThan(s.transactions, 10)
    }

    /// siege's order: each user goes through the URLs in order; with -i (internet) it picks them
    /// at random.
    func testURLsInOrderOrAtRandom() async throws {
        let server = try CountingServer()
        defer { server.close() }
        var o = LoadOptions()
        o.concurrency = 1
        o.repetitions = 300
        o.targets = try ["a", "b", "c"].map { try Target.parseURL("\(server.url)\($0)") }
        _ = try await run(o)
        let inOrder = server.seen.map { String($0.split(separator: " ")[1]) }
        XCTAssertEqual(inOrder, (0..<300).map { ["/a", "/b", "/c"][$0 % 3] })
        server.reset()
        o.internet = true
        let (s, _) = try await run(o)
        XCTAssertEqual(s.transactions, 300)
        let random = server.seen.map { String($0.split(separator: " ")[1]) }
        XCTAssertNotEqual(random, inOrder)
        for path in ["/a", "/b", "/c"] { XCTAssertGreaterThan(random.filter { $0 == path }.count, 50, path) }
    }

    /// siege's `failures`: the run stops once that many transactions failed.
    func testFailureLimitStopsTheRun() async throws {
        let server = try CountingServer(mode: .status(503))
        defer { server.close() }
        var o = LoadOptions()
        o.concurrency = 2
        o.repetitions = 5000
        o.failureLimit = 10
        o.targets = [try Target.parseURL(server.url)]
        let r = try await LoadEngine.run(o, group: MultiThreadedEventLoopGroup.singleton, live: nil, stop: ManagedAtomic(false))
        let s = Summary(r.recorder, elapsed: r.elapsed)
        XCTAssertTrue(r.aborted)
        XCTAssertGreaterThanOrEqual(s.failed, 10)
        XCTAssertLessThan(s.failed, 100, "stopped soon after the limit, not after 10,000 requests")
        XCTAssertEqual(s.transactions, 0)
    }

    /// `-v`: siege's line, coloured only when asked (the caller asks only for a terminal).
    func testVerboseLinesInSiegesShape() throws {
        let post = try XCTUnwrap(try Target.parseLine(#"http://127.0.0.1:8080/orders POST {"qty":1}"#))
        let get = try Target.parseURL("http://127.0.0.1:8080/orders/1?x=1")
        let plain = TransactionLog(targets: [post, get], color: false, write: { _, _ in })
        XCTAssertEqual(plain.line(minorVersion: 1, status: 201, seconds: 0.0123, bytes: 68, target: 0),
                       "HTTP/1.1 201     0.01 secs:      68 bytes ==> POST http://127.0.0.1:8080/orders\n")
        XCTAssertEqual(plain.line(minorVersion: 0, status: 404, seconds: 12.5, bytes: 1234567, target: 1),
                       "HTTP/1.0 404    12.50 secs: 1234567 bytes ==> GET  /orders/1?x=1\n")
        let coloured = TransactionLog(targets: [post], color: true, write: { _, _ in })
        XCTAssertEqual(coloured.line(minorVersion: 1, status: 503, seconds: 0, bytes: 0, target: 0),
                       "\u{1B}[0;31mHTTP/1.1 503     0.00 secs:       0 bytes ==> POST http://127.0.0.1:8080/orders\u{1B}[0m\n")
        XCTAssertTrue(coloured.line(minorVersion: 1, status: 200, seconds: 0, bytes: 0, target: 0).hasPrefix("\u{1B}[0;34m"))
    }

    /// wrk2's coordinated-omission correction: at a fixed rate, one 400 ms stall delays every
    /// request scheduled behind it, and their latency counts from when they were due.
    func testRateModeCountsLatencyFromTheIntendedSendTime() async throws {
        let server = try CountingServer()
        defer { server.close() }
        server.delay(request: 20, by: .milliseconds(400))
        var o = LoadOptions()
        o.concurrency = 1
        o.rate = 100
        o.duration = .milliseconds(1500)
        o.targets = [try Target.parseURL(server.url)]
        let (s, r) = try await run(o)
        // ~40 requests were due during the stall: a naive recorder would show only one slow one.
        let slow = r.histogram.totalCount - r.histogram.count(within: 0...100_000)
        XCTAssertGreaterThan(slow, 20, "requests queued behind the stall carry its delay")
        XCTAssertGreaterThan(s.percentiles.first { $0.0 == "p90" }?.1 ?? 0, 100)
        XCTAssertEqual(s.transactionRate, 100, accuracy: 25, "the rate holds")
    }
}
