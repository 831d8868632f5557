import NIOCore
import NIOEmbedded
import XCTest
@testable import GatewayCore

/// The listener's handler byte by byte on an EmbeddedChannel: local answers need no upstream.
final class DownstreamHandlerTests: XCTestCase {
    func makeChannel(_ routes: [RouteConfig] = [], downstream: DownstreamLimits = DownstreamLimits()) throws -> EmbeddedChannel {
        try makeHandler(routes, downstream: downstream).channel
    }

    func makeHandler(_ routes: [RouteConfig] = [], downstream: DownstreamLimits = DownstreamLimits()) throws
        -> (channel: EmbeddedChannel, handler: DownstreamHandler, worker: Worker) {
        let loop = EmbeddedEventLoop()
        let config = GatewayConfig(listener: BindAddress(address: "127.0.0.1", port: 0), admin: BindAddress(address: "127.0.0.1", port: 0),
                                   hosts: ["svc": HostConfig(name: "svc", endpoints: [Endpoint(address: "127.0.0.1", port: 1)])],
                                   routes: routes, downstream: downstream)
        let cluster = Cluster(config: config.hosts["svc"]!)
        let snap = ClusterSnapshot(cluster: cluster, hosts: cluster.hosts(for: config.hosts["svc"]!), policy: TrafficPolicy(), serviceHost: "svc")
        let compiled = try routes.map { try Route(config: $0, clusters: ["svc": snap], stats: RouteStats(name: $0.name),
                                                  rateLimiter: $0.localRateLimit.map { LocalRateLimiter(config: $0) }) }
        let worker = Worker(index: 0, eventLoop: loop, snapshot: ConfigSnapshot(version: 1, config: config, routes: RouteTable(routes: compiled),
                                                                     clusters: ["svc": snap]),
                            listenerStats: ListenerStats(), accessLogFD: nil)
        let handler = DownstreamHandler(worker: worker)
        let channel = EmbeddedChannel(handler: handler, loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "10.1.2.3", port: 5555)).wait()
        return (channel, handler, worker)
    }

    func readAll(_ channel: EmbeddedChannel) throws -> String {
        var out = ""
        while let b = try channel.readOutbound(as: ByteBuffer.self) { out += String(buffer: b) }
        return out
    }

    func testNoRouteAnswers404AndKeepsTheConnection() throws {
        let ch = try makeChannel()
        try ch.writeInbound(ByteBuffer(string: "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"))
        let out = try readAll(ch)
        XCTAssertTrue(out.hasPrefix("HTTP/1.1 404 Not Found\r\n"), out)
        XCTAssertFalse(out.contains("connection: close"))
        XCTAssertTrue(ch.isActive)
        // byte by byte, the next request is still understood
        for b in "GET /y HTTP/1.1\r\nHost: a\r\n\r\n".utf8 { try ch.writeInbound(ByteBuffer(bytes: [b])) }
        XCTAssertTrue(try readAll(ch).hasPrefix("HTTP/1.1 404"))
    }

    func testMalformedRequestGets400AndClose() throws {
        let ch = try makeChannel()
        try ch.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"))
        let out = try readAll(ch)
        XCTAssertTrue(out.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), out)
        XCTAssertTrue(out.contains("connection: close"))
        XCTAssertTrue(out.hasSuffix("more than one Content-Length"), out)
        XCTAssertFalse(ch.isActive)
    }

    /// A head with bare-LF line endings is answered as soon as a bare LF arrives, not when
    /// 60 KiB have piled up.
    func testBareLineFeedHeadIsAnsweredAtOnce() throws {
        let ch = try makeChannel()
        try ch.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\nHost: a\n"))
        let out = try readAll(ch)
        XCTAssertTrue(out.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), out)
        XCTAssertFalse(ch.isActive)
    }

    func testRateLimitedAnswer() throws {
        let rl = LocalRateLimitConfig(maxTokens: 1, tokensPerFill: 1, fillInterval: .seconds(30))
        let route = RouteConfig(name: "r", destinations: [WeightedDestination(host: "svc")], retries: .disabled,
                                fault: FaultConfig(abort: .init(httpStatus: 503, percentage: 100)), localRateLimit: rl)
        let ch = try makeChannel([route])
        try ch.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        XCTAssertTrue(try readAll(ch).hasPrefix("HTTP/1.1 503"), "the one token passes to the fault abort")
        try ch.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        let out = try readAll(ch)
        XCTAssertTrue(out.hasPrefix("HTTP/1.1 429 Too Many Requests\r\n"), out)
        XCTAssertTrue(out.contains("ratelimit-limit: 1\r\n"))
        XCTAssertTrue(out.contains("retry-after: "))
    }

    /// Pipelined requests the gateway answers itself are taken in a loop that yields to the event
    /// loop every `requestsPerPass` requests: 20,000 in one read need neither 20,000 stack frames
    /// nor one uninterrupted turn of the loop.
    func testPipelinedLocalRepliesAreAnsweredInALoopThatYields() throws {
        let ch = try makeChannel()
        let loop = ch.embeddedEventLoop
        let count = 20_000
        let request = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
        try ch.writeInbound(ByteBuffer(string: String(repeating: request, count: count)))
        var answered = try readAll(ch).components(separatedBy: "HTTP/1.1 404").count - 1
        XCTAssertEqual(answered, DownstreamHandler.requestsPerPass, "one pass takes a bounded number of requests")
        var turns = 1
        while answered < count && turns < count {
            loop.run()
            answered += try readAll(ch).components(separatedBy: "HTTP/1.1 404").count - 1
            turns += 1
        }
        XCTAssertEqual(answered, count)
        XCTAssertTrue(ch.isActive)
    }

    /// The autoRead value the handler set last (nil: never set, so reading).
    func lastAutoRead(_ channel: EmbeddedChannel) -> Bool? {
        channel.options.last { $0.option is ChannelOptions.Types.AutoReadOption }?.value as? Bool
    }

    /// Pipelined requests behind a request in flight are read on while they fit the read-ahead
    /// (a client's batch then costs no pair of epoll_ctl calls), and reading stops beyond it, so
    /// a client that pipelines without end still costs a bounded buffer.
    func testPipelinedBytesBehindARequestInFlightAreReadUpToTheReadAhead() throws {
        // A fault delay keeps the first request in flight with no upstream.
        let route = RouteConfig(name: "r", destinations: [WeightedDestination(host: "svc")], retries: .disabled,
                                fault: FaultConfig(delay: .init(fixedDelay: .seconds(60), percentage: 100)))
        let ch = try makeChannel([route])
        let request = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        try ch.writeInbound(ByteBuffer(string: request + request))
        XCTAssertEqual(try readAll(ch), "", "the first request waits for its delay")
        XCTAssertNotEqual(lastAutoRead(ch), false, "one pipelined request behind it: still reading")
        let batch = DownstreamHandler.pipelinedReadAheadBytes / request.utf8.count
        try ch.writeInbound(ByteBuffer(string: String(repeating: request, count: batch - 2)))
        XCTAssertNotEqual(lastAutoRead(ch), false, "a batch within the read-ahead: still reading")
        try ch.writeInbound(ByteBuffer(string: String(repeating: request, count: 4)))
        XCTAssertEqual(lastAutoRead(ch), false, "beyond the read-ahead: reading stops")
    }

    /// A continuation from the loop's queue that finds a request in flight (bytes that arrived
    /// before it ran started one) lifts the backlog pause its scheduling set, so the bytes behind
    /// that request are read on up to the read-ahead.
    func testAContinuationThatFindsARequestInFlightLetsReadingGoOn() throws {
        let slow = RouteConfig(name: "slow", matches: [RouteMatch(uri: .prefix("/slow"))],
                               destinations: [WeightedDestination(host: "svc")], retries: .disabled,
                               fault: FaultConfig(delay: .init(fixedDelay: .seconds(60), percentage: 100)))
        let ch = try makeChannel([slow])
        let local = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
        // One pass answers requestsPerPass local replies and leaves the rest to a continuation.
        try ch.writeInbound(ByteBuffer(string: String(repeating: local, count: DownstreamHandler.requestsPerPass) + "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"))
        XCTAssertEqual(try readAll(ch).components(separatedBy: "HTTP/1.1 404").count - 1, DownstreamHandler.requestsPerPass)
        XCTAssertEqual(lastAutoRead(ch), false, "bytes wait behind a yield: reading pauses")
        // Before the continuation runs, more bytes come: the slow request starts at once.
        try ch.writeInbound(ByteBuffer(string: local))
        ch.embeddedEventLoop.run()
        XCTAssertNotEqual(lastAutoRead(ch), false, "one request behind the one in flight: reading goes on")
    }

    /// Bytes pipelined behind a request in flight are the next request's: trickled in, they do
    /// not keep the request in flight from its stream idle timeout.
    func testPipelinedBytesDoNotHoldOffTheStreamIdleTimeoutOfTheRequestInFlight() throws {
        let route = RouteConfig(name: "r", destinations: [WeightedDestination(host: "svc")], retries: .disabled,
                                fault: FaultConfig(delay: .init(fixedDelay: .seconds(600), percentage: 100)))
        var limits = DownstreamLimits()
        limits.streamIdleTimeout = .seconds(5)
        let (ch, handler, worker) = try makeHandler([route], downstream: limits)
        let start = worker.coarseNow
        try ch.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        // The worker's clock moves on (its tick), then a byte of the next request arrives.
        Thread.sleep(forTimeInterval: 0.05)
        worker.tick()
        XCTAssertGreaterThan(worker.coarseNow, start + .milliseconds(40))
        try ch.writeInbound(ByteBuffer(string: "G"))
        XCTAssertEqual(try readAll(ch), "")
        // Five seconds after the request's last activity, not after the pipelined byte.
        handler.checkTimeouts(now: start + .seconds(5) + .milliseconds(10))
        let out = try readAll(ch)
        XCTAssertTrue(out.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"), out)
    }
}
