import HTTP1Wire
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import XCTest
@testable import GatewayCore

/// The client side of one request, recorded: what the router filter encodes and asks for.
final class RecordingStream: DownstreamStream {
    var clientAddress = "10.0.0.7"
    var isWritable = true
    var requestComplete = true
    private(set) var responseBytesSent = 0
    var isHTTP2: Bool { false }
    private(set) var heads: [MessageHead] = []
    private(set) var body = ""
    private(set) var localReplies: [(status: Int, body: String, headers: [(String, String)])] = []
    private(set) var ended: [Bool] = []
    private(set) var pauses = 0
    private(set) var resumes = 0

    var status: Int? { heads.last?.status ?? localReplies.last?.status }

    func pauseReading() { pauses += 1 }
    func resumeReading() { resumes += 1 }
    func encodeInterimHead(_ bytes: ByteBuffer) { responseBytesSent += bytes.readableBytes }
    func encodeHead(_ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming, upstreamServiceMs: Int) {
        heads.append(head)
        responseBytesSent += bytes.readableBytes
    }
    func encodeBody(_ part: ByteBuffer) {
        body += String(buffer: part)
        responseBytesSent += part.readableBytes
    }
    func flushResponse() {}
    func encodeLocalReply(status: Int, body: String, headers: [(String, String)], forceClose: Bool) {
        localReplies.append((status, body, headers))
        responseBytesSent += body.utf8.count
    }
    /// Held as the connection holds it: from `begin` to the end of the stream.
    var filter: RouterFilter?
    func endStream(reset: Bool) {
        ended.append(reset)
        filter = nil
    }
    var connectionAddresses = "[IPv4]10.0.0.7/10.0.0.7:40000[IPv4]10.0.0.1/10.0.0.1:8080"
    private(set) var addedResponseHeaders: [(String, String)] = []
    func addResponseHeader(name: String, value: String) { addedResponseHeaders.append((name, value)) }
    func headBuffer(capacity: Int) -> ByteBuffer { ByteBuffer() }
    func recycle(_ buffer: ByteBuffer) {}
    var localPort = 8080
    func encodeHead(_ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming, upstreamServiceMs: Int,
                    edit: ResponseHeadEdit) {
        encodeHead(head, bytes: bytes, framing: framing, upstreamServiceMs: upstreamServiceMs)
    }
    func encodeLocalReply(status: Int, body: [UInt8], headers: [(String, String)], edit: ResponseHeadEdit?,
                          forceClose: Bool) {
        encodeLocalReply(status: status, body: String(decoding: body, as: UTF8.self),
                         headers: headers + (edit?.pairs.map { ($0.name, $0.value) } ?? []), forceClose: forceClose)
    }
    func encodeSwitchingProtocols(_ head: MessageHead, bytes: ByteBuffer) {
        heads.append(head)
        responseBytesSent += bytes.readableBytes
    }
    var tunnelEnd: TunnelEnd { self }
    private(set) var tunnel: UpgradeTunnel?
    func startTunnel(_ tunnel: UpgradeTunnel) { self.tunnel = tunnel }
    /// What the tunnel wrote to the client, and whether it closed the client's side.
    private(set) var tunnelled = ""
    private(set) var tunnelClosed = false
}

extension RecordingStream: TunnelEnd {
    func tunnelWrite(_ bytes: ByteBuffer) {
        tunnelled += String(buffer: bytes)
        responseBytesSent += bytes.readableBytes
    }
    func tunnelFlush() {}
    var tunnelWritable: Bool { isWritable }
    func tunnelPauseReading() { pauseReading() }
    func tunnelResumeReading() { resumeReading() }
    func tunnelClose() { tunnelClosed = true }
}

/// Upstream connections on embedded channels: each connect makes one (or fails, when told to),
/// so a test writes the upstream's bytes and reads what the gateway sent, with no socket.
final class EmbeddedConnector: UpstreamConnector, @unchecked Sendable {
    // @unchecked: used on the test's one embedded event loop only.
    let loop: EmbeddedEventLoop
    private(set) var channels: [EmbeddedChannel] = []
    /// The endpoint each connect was for, in order (failed ones included).
    private(set) var endpoints: [Endpoint] = []
    /// Connects that fail, in order, before the next one succeeds.
    var failuresToCome = 0

    init(loop: EmbeddedEventLoop) { self.loop = loop }

    func connect(_ connection: UpstreamConnection, to host: GatewayCore.Host, on eventLoop: EventLoop,
                 settings: ConnectionPoolSettings) -> EventLoopFuture<Void> {
        endpoints.append(host.endpoint)
        if failuresToCome > 0 {
            failuresToCome -= 1
            return loop.makeFailedFuture(ChannelError.connectTimeout(settings.connectTimeout))
        }
        let channel = EmbeddedChannel(loop: loop)
        try! channel.pipeline.syncOperations.addHandler(connection)
        channels.append(channel)
        return channel.connect(to: try! SocketAddress(ipAddress: "127.0.0.1", port: 9))
    }

    /// What the gateway wrote on connection `i`, flushed at the end of the loop's round (the
    /// embedded loop runs the round's tasks first).
    func sent(_ i: Int) throws -> String {
        loop.run()
        var out = ""
        while let b = try channels[i].readOutbound(as: ByteBuffer.self) { out += String(buffer: b) }
        return out
    }

    func respond(_ i: Int, _ text: String) throws {
        try channels[i].writeInbound(ByteBuffer(string: text))
    }
}

/// A worker on an embedded loop with one cluster `svc` of `endpoints` hosts and one route.
struct RouterHarness {
    let loop = EmbeddedEventLoop()
    let connector: EmbeddedConnector
    let worker: Worker
    let cluster: Cluster

    init(route: RouteConfig, policy: TrafficPolicy = TrafficPolicy(), endpoints: Int = 1) throws {
        connector = EmbeddedConnector(loop: loop)
        let host = HostConfig(name: "svc", endpoints: (0..<endpoints).map { Endpoint(address: "127.0.0.1", port: 8001 + $0) },
                              trafficPolicy: policy)
        let config = GatewayConfig(listener: BindAddress(address: "127.0.0.1", port: 0), admin: BindAddress(address: "127.0.0.1", port: 0),
                                   hosts: ["svc": host], routes: [route])
        cluster = Cluster(config: host)
        let snap = ClusterSnapshot(cluster: cluster, hosts: cluster.hosts(for: host), policy: policy, serviceHost: host.service)
        let compiled = try Route(config: route, clusters: ["svc": snap], stats: RouteStats(name: route.name), rateLimiter: nil)
        worker = Worker(index: 0, eventLoop: loop,
                        snapshot: ConfigSnapshot(version: 1, config: config, routes: RouteTable(routes: [compiled]), clusters: ["svc": snap]),
                        listenerStats: ListenerStats(), accessLogFD: nil)
        worker.connector = connector
    }

    /// Starts one request through a router filter; returns the stream that records the answer.
    @discardableResult
    func send(_ request: String = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", body: String = "",
              stream: RecordingStream = RecordingStream()) throws -> (RecordingStream, RouterFilter?) {
        let bytes = ByteBuffer(string: request)
        let head = try XCTUnwrap(try bytes.parseHead(.request).get())
        let filter = RouterFilter.route(stream: stream, worker: worker, head: head, headBytes: bytes,
                                        earlyBody: body.isEmpty ? nil : ByteBuffer(string: body))
        stream.filter = filter
        filter?.begin()
        return (stream, filter)
    }

    func stat(_ c: ClusterCounter) -> Int { cluster.stats[c] }

    /// Past every backoff (at most 250 ms) but short of any timer a test sets.
    func passBackoff() { loop.advanceTime(by: .milliseconds(300)) }
}

let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
func status(_ code: Int) -> String { "HTTP/1.1 \(code) X\r\ncontent-length: 0\r\n\r\n" }

final class RouterFilterTests: XCTestCase {
    func route(_ retries: RetryPolicyConfig, timeout: TimeAmount? = nil) -> RouteConfig {
        RouteConfig(name: "r", destinations: [WeightedDestination(host: "svc")], timeout: timeout, retries: retries)
    }

    func testEachRetryOnConditionRetriesItsFailureOnce() throws {
        enum Failure { case response(Int), reset, connectFailure }
        let cases: [(RetryOn, [Int], Failure)] = [
            (.fiveXX, [], .response(500)),
            (.gatewayError, [], .response(502)),
            (.gatewayError, [], .response(504)),
            (.gatewayError, [], .reset),
            (.reset, [], .reset),
            (.connectFailure, [], .connectFailure),
            (.retriable4xx, [], .response(409)),
            (.retriableStatusCodes, [418], .response(418)),
        ]
        for (on, codes, failure) in cases {
            let h = try RouterHarness(route: route(RetryPolicyConfig(attempts: 1, retryOn: on, retriableStatusCodes: StatusCodeSet(codes))))
            if case .connectFailure = failure { h.connector.failuresToCome = 1 }
            let (stream, _) = try h.send()
            switch failure {
            case .response(let code): try h.connector.respond(0, status(code))
            case .reset: try h.connector.channels[0].close().wait()
            case .connectFailure: break
            }
            XCTAssertNil(stream.status, "\(on) \(failure): nothing answered before the retry")
            h.passBackoff()
            let retried = try XCTUnwrap(h.connector.channels.last, "\(on) \(failure)")
            try retried.writeInbound(ByteBuffer(string: ok))
            XCTAssertEqual(stream.status, 200, "\(on) \(failure)")
            XCTAssertEqual(stream.body, "ok")
            XCTAssertEqual(stream.ended, [false])
            XCTAssertEqual(h.stat(.upstream_rq_retry), 1, "\(on) \(failure)")
            XCTAssertEqual(h.stat(.upstream_rq_retry_success), 1, "\(on) \(failure)")
            XCTAssertEqual(h.cluster.resources.retries.current, 0, "the retry budget is given back")
        }
    }

    func testAResultRetryOnDoesNotCoverIsAnsweredAsItIs() throws {
        let h = try RouterHarness(route: route(RetryPolicyConfig(attempts: 3, retryOn: [.connectFailure])))
        let (stream, _) = try h.send()
        try h.connector.respond(0, status(503))
        XCTAssertEqual(stream.status, 503)
        XCTAssertEqual(stream.heads.count, 1, "the upstream's own 503 is passed on")
        XCTAssertEqual(h.stat(.upstream_rq_retry), 0)
    }

    func testAttemptsRunOutWithRetryLimitExceeded() throws {
        let h = try RouterHarness(route: route(RetryPolicyConfig(attempts: 2, retryOn: [.fiveXX])))
        let (stream, _) = try h.send()
        try h.connector.respond(0, status(500))
        h.passBackoff()
        try h.connector.respond(1, status(500))
        h.passBackoff()
        try h.connector.respond(2, status(503))
        XCTAssertEqual(h.connector.channels.count, 3, "one try and two retries")
        XCTAssertEqual(stream.status, 503, "the last try's answer goes to the client")
        XCTAssertEqual(h.stat(.upstream_rq_retry), 2)
        XCTAssertEqual(h.stat(.upstream_rq_retry_limit_exceeded), 1)
        XCTAssertEqual(h.stat(.upstream_rq_retry_success), 0)
    }

    func testOverflowIsNeverRetried() throws {
        let policy = TrafficPolicy(connectionPool: ConnectionPoolSettings(maxConnections: 1, http1MaxPendingRequests: 0))
        let h = try RouterHarness(route: route(RetryPolicyConfig(attempts: 5, retryOn: [.fiveXX, .gatewayError, .reset, .connectFailure])),
                                  policy: policy)
        let (stream, _) = try h.send()
        h.passBackoff()
        XCTAssertEqual(stream.status, 503)
        XCTAssertTrue(stream.localReplies[0].body.hasSuffix("reset reason: overflow"))
        XCTAssertTrue(stream.localReplies[0].headers.contains { $0 == ("x-envoy-overloaded", "true") })
        XCTAssertEqual(h.stat(.upstream_rq_pending_overflow), 1)
        XCTAssertEqual(h.stat(.upstream_rq_retry), 0)
        XCTAssertEqual(h.connector.channels.count, 0)
    }

    func testRetryBudgetFullAnswersWithoutRetrying() throws {
        let policy = TrafficPolicy(connectionPool: ConnectionPoolSettings(maxRetries: 0))
        let h = try RouterHarness(route: route(RetryPolicyConfig(attempts: 3, retryOn: [.fiveXX])), policy: policy)
        let (stream, _) = try h.send()
        try h.connector.respond(0, status(503))
        XCTAssertEqual(stream.status, 503)
        XCTAssertEqual(h.stat(.upstream_rq_retry_overflow), 1)
        XCTAssertEqual(h.stat(.upstream_rq_retry), 0)
    }

    func testPerTryTimeoutRetriesAndThenAnswers504() throws {
        let h = try RouterHarness(route: route(RetryPolicyConfig(attempts: 1, perTryTimeout: .seconds(1), retryOn: [.gatewayError])))
        let (stream, _) = try h.send()
        h.loop.advanceTime(by: .milliseconds(999))
        XCTAssertNil(stream.status)
        h.loop.advanceTime(by: .milliseconds(1))
        XCTAssertEqual(h.stat(.upstream_rq_per_try_timeout), 1)
        XCTAssertFalse(h.connector.channels[0].isActive, "the timed-out try's connection is closed, never reused")
        h.passBackoff()
        XCTAssertEqual(h.connector.channels.count, 2)
        h.loop.advanceTime(by: .seconds(1))
        XCTAssertEqual(stream.status, 504)
        XCTAssertEqual(stream.localReplies.last?.body, "upstream request timeout")
        XCTAssertEqual(h.stat(.upstream_rq_per_try_timeout), 2)
        XCTAssertEqual(h.stat(.upstream_rq_retry), 1)
    }

    func testRouteTimeoutEndsTheRequestWithoutRetrying() throws {
        let h = try RouterHarness(route: route(RetryPolicyConfig(attempts: 3, retryOn: [.fiveXX, .gatewayError]), timeout: .seconds(2)))
        let (stream, _) = try h.send()
        h.loop.advanceTime(by: .seconds(2))
        XCTAssertEqual(stream.status, 504)
        XCTAssertEqual(h.stat(.upstream_rq_timeout), 1)
        XCTAssertEqual(h.stat(.upstream_rq_retry), 0)
        XCTAssertFalse(h.connector.channels[0].isActive)
    }

    func testRouteTimeoutAfterTheHeadCutsTheResponseOff() throws {
        let h = try RouterHarness(route: route(.disabled, timeout: .seconds(2)))
        let (stream, _) = try h.send()
        try h.connector.respond(0, "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
        h.loop.advanceTime(by: .seconds(2))
        XCTAssertEqual(stream.status, 200)
        XCTAssertEqual(stream.body, "half")
        XCTAssertEqual(stream.ended, [true], "a reset: the client must not wait for the rest")
    }

    func testABodyWithinTheReplayBoundIsSentAgainOnRetry() throws {
        let h = try RouterHarness(route: route(RetryPolicyConfig(attempts: 1, retryOn: [.fiveXX])))
        let body = String(repeating: "b", count: 1000)
        try h.send("POST /x HTTP/1.1\r\nHost: a\r\ncontent-length: 1000\r\n\r\n", body: body)
        XCTAssertTrue(try h.connector.sent(0).hasSuffix("\r\n\r\n" + body))
        try h.connector.respond(0, status(503))
        h.passBackoff()
        XCTAssertTrue(try h.connector.sent(1).hasSuffix("\r\n\r\n" + body), "the retry carries the same body")
    }

    func testABodyBeyondTheReplayBoundIsNotRetried() throws {
        let h = try RouterHarness(route: route(RetryPolicyConfig(attempts: 3, retryOn: [.fiveXX])))
        let size = RouterFilter.maxReplayBytes + 1
        let (stream, _) = try h.send("POST /x HTTP/1.1\r\nHost: a\r\ncontent-length: \(size)\r\n\r\n",
                                     body: String(repeating: "b", count: size))
        try h.connector.respond(0, status(503))
        h.passBackoff()
        XCTAssertEqual(h.connector.channels.count, 1, "a body not kept cannot be sent again")
        XCTAssertEqual(stream.status, 503)
        XCTAssertEqual(h.stat(.upstream_rq_retry_limit_exceeded), 1)
    }

    func testMalformedResponseIs502AndNotRetried() throws {
        let h = try RouterHarness(route: route(RetryPolicyConfig(attempts: 3, retryOn: [.fiveXX, .gatewayError, .reset])))
        let (stream, _) = try h.send()
        try h.connector.respond(0, "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n")
        h.passBackoff()
        XCTAssertEqual(stream.status, 502)
        XCTAssertEqual(h.connector.channels.count, 1)
        XCTAssertEqual(h.stat(.upstream_cx_protocol_error), 1)
    }

    func testClientGoneCancelsTheWaitingTry() throws {
        let policy = TrafficPolicy(connectionPool: ConnectionPoolSettings(maxConnections: 1))
        let h = try RouterHarness(route: route(.disabled), policy: policy)
        let (first, _) = try h.send()
        let (_, waiting) = try h.send()
        XCTAssertEqual(h.cluster.resources.pendingRequests.current, 1)
        waiting?.downstreamClosed()
        XCTAssertEqual(h.cluster.resources.pendingRequests.current, 0)
        XCTAssertEqual(h.stat(.upstream_rq_cancelled), 1)
        try h.connector.respond(0, ok)
        XCTAssertEqual(first.status, 200)
        XCTAssertEqual(h.cluster.resources.requests.current, 0)
    }

    /// A reload that removes the cluster drops its pool while a request still runs on one of
    /// its connections: the response finishes, and the connection closes instead of idling.
    func testAReloadRemovingTheClusterLetsItsConnectionFinishAndClose() throws {
        let h = try RouterHarness(route: route(.disabled))
        let (stream, _) = try h.send()
        let old = h.worker.snapshot
        h.worker.install(ConfigSnapshot(version: 2, config: old.config, routes: RouteTable(routes: []), clusters: [:]))
        try h.connector.respond(0, ok)
        XCTAssertEqual(stream.status, 200)
        XCTAssertFalse(h.connector.channels[0].isActive, "a leaving cluster's connection closes after its response")
        XCTAssertEqual(h.cluster.resources.connections.current, 0)
        XCTAssertEqual(h.cluster.resources.requests.current, 0)
    }

    /// `http2MaxRequests` refusing a request that found an idle connection leaves that
    /// connection idle, ready for the next one.
    func testAnIdleConnectionRefusedByTheActiveRequestLimitStaysIdle() throws {
        let h = try RouterHarness(route: route(.disabled),
                                  policy: TrafficPolicy(connectionPool: ConnectionPoolSettings(http2MaxRequests: 2)))
        try h.send()
        try h.send()
        try h.connector.respond(0, ok)
        try h.connector.respond(1, ok)
        h.cluster.resources.update(ConnectionPoolSettings(http2MaxRequests: 1))
        let (c, _) = try h.send()
        let (d, _) = try h.send()
        XCTAssertEqual(d.status, 503, "over http2MaxRequests")
        XCTAssertEqual(h.stat(.upstream_rq_pending_overflow), 1)
        try h.connector.respond(1, ok)
        XCTAssertEqual(c.status, 200)
        let (e, _) = try h.send()
        try h.connector.respond(1, ok)
        XCTAssertEqual(e.status, 200)
        XCTAssertEqual(h.connector.channels.count, 2, "both connections stayed in the pool")
        XCTAssertTrue(h.connector.channels.allSatisfy(\.isActive))
        XCTAssertEqual(h.cluster.resources.requests.current, 0)
    }
}

/// One try on its own, its owner recorded.
final class UpstreamRequestTests: XCTestCase {
    final class RecordingOwner: UpstreamRequestOwner {
        var events: [String] = []
        var body = ""
        var keepResponse = true
        func upstreamReady(_ request: UpstreamRequest) {
            events.append("ready")
            request.sendBody(ByteBuffer(string: "BODY"))
        }
        func upstreamHead(_ request: UpstreamRequest, _ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming,
                          serviceMs: Int) -> Bool {
            events.append("head \(head.status)")
            return keepResponse
        }
        func upstreamInterimHead(_ bytes: ByteBuffer) { events.append("interim") }
        func upstreamBody(_ part: ByteBuffer) { body += String(buffer: part) }
        func upstreamReadComplete() {}
        func upstreamResponseEnd(_ request: UpstreamRequest) { events.append("end") }
        func upstreamTryFailed(_ request: UpstreamRequest, _ result: TryResult, reason: String) {
            events.append("failed \(result)")
        }
        func upstreamWritabilityChanged(_ writable: Bool) {}
        func upstreamSwitchedProtocols(_ request: UpstreamRequest, _ head: MessageHead, bytes: ByteBuffer,
                                       rest: ByteBuffer?, connection: UpstreamConnection) {
            events.append("switched \(head.status)")
            connection.close()
        }
    }

    func makeTry(_ h: RouterHarness, _ owner: RecordingOwner, perTry: TimeAmount? = nil) -> UpstreamRequest {
        let snap = h.worker.snapshot.clusters["svc"]!
        let pool = h.worker.pool(for: snap)
        return UpstreamRequest(owner: owner, hostPool: pool.pool(for: snap.hosts[0]), cluster: snap, eventLoop: h.loop,
                               row: h.worker.row, perTryTimeout: perTry, requestIsHead: false)
    }

    func testHeadAndBodyLeaveInOneFlushAndTheConnectionReturnsToThePool() throws {
        let h = try RouterHarness(route: RouteConfig(name: "r", destinations: [WeightedDestination(host: "svc")]))
        let owner = RecordingOwner()
        let request = makeTry(h, owner)
        request.start(head: ByteBuffer(string: "POST / HTTP/1.1\r\n\r\n"), requestComplete: true)
        XCTAssertEqual(owner.events, ["ready"])
        XCTAssertNil(try h.connector.channels[0].readOutbound(as: ByteBuffer.self), "sent at the round's end")
        h.loop.run()
        XCTAssertEqual(try h.connector.channels[0].readOutbound(as: ByteBuffer.self).map { String(buffer: $0) },
                       "POST / HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try h.connector.channels[0].readOutbound(as: ByteBuffer.self).map { String(buffer: $0) }, "BODY")
        XCTAssertEqual(h.cluster.resources.requests.current, 1, "an active request while the try runs")
        try h.connector.respond(0, "HTTP/1.1 100 Continue\r\n\r\n" + ok)
        XCTAssertEqual(owner.events, ["ready", "interim", "head 200", "end"])
        XCTAssertEqual(owner.body, "ok")
        XCTAssertEqual(h.cluster.resources.requests.current, 0)
        let pool = h.worker.pool(for: h.worker.snapshot.clusters["svc"]!)
        XCTAssertEqual(pool.allPools.first?.connections, 1)
        XCTAssertTrue(h.connector.channels[0].isActive, "kept for the next request")
        XCTAssertEqual(h.stat(.upstream_rq_total), 1)
        XCTAssertEqual(h.stat(.upstream_rq_completed), 1)
        XCTAssertEqual(h.worker.snapshot.clusters["svc"]!.hosts[0].requestsSuccess, 1)
    }

    func testBytesAfterTheResponseCloseTheConnection() throws {
        let h = try RouterHarness(route: RouteConfig(name: "r", destinations: [WeightedDestination(host: "svc")]))
        let owner = RecordingOwner()
        makeTry(h, owner).start(head: ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"), requestComplete: true)
        try h.connector.respond(0, ok + "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nforge")
        XCTAssertEqual(owner.events.last, "end")
        XCTAssertFalse(h.connector.channels[0].isActive, "never reused: the extra bytes would answer someone else")
        XCTAssertEqual(h.stat(.upstream_cx_destroy), 1)
    }

    func testARefusedResponseClosesTheConnection() throws {
        let h = try RouterHarness(route: RouteConfig(name: "r", destinations: [WeightedDestination(host: "svc")]))
        let owner = RecordingOwner()
        owner.keepResponse = false
        makeTry(h, owner).start(head: ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"), requestComplete: true)
        try h.connector.respond(0, "HTTP/1.1 503 X\r\ncontent-length: 4\r\n\r\nbusy")
        XCTAssertEqual(owner.events, ["ready", "head 503"])
        XCTAssertEqual(owner.body, "", "nothing of a response let go of is relayed")
        XCTAssertFalse(h.connector.channels[0].isActive)
        XCTAssertEqual(h.cluster.resources.requests.current, 0)
    }

    func testPerTryTimeoutIsATimeoutResult() throws {
        let h = try RouterHarness(route: RouteConfig(name: "r", destinations: [WeightedDestination(host: "svc")]))
        let owner = RecordingOwner()
        makeTry(h, owner, perTry: .milliseconds(100)).start(head: ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"), requestComplete: true)
        h.loop.advanceTime(by: .milliseconds(100))
        XCTAssertEqual(owner.events, ["ready", "failed timeout"])
        XCTAssertEqual(h.stat(.upstream_rq_per_try_timeout), 1)
        XCTAssertFalse(h.connector.channels[0].isActive)
    }

    func testAResponseCutOffBeforeItsHeadIsAReset() throws {
        let h = try RouterHarness(route: RouteConfig(name: "r", destinations: [WeightedDestination(host: "svc")]))
        let owner = RecordingOwner()
        makeTry(h, owner).start(head: ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"), requestComplete: true)
        try h.connector.respond(0, "HTTP/1.1 200 OK\r\ncont")
        try h.connector.channels[0].close().wait()
        XCTAssertEqual(owner.events, ["ready", "failed reset"])
        XCTAssertEqual(h.stat(.upstream_rq_rx_reset), 1)
    }
}

final class RetryStateStatusTests: XCTestCase {
    final class Counter: RetryTarget {
        var fired = 0
        func retryNow() { fired += 1 }
    }

    func testStatusesAndTheBudget() {
        let loop = EmbeddedEventLoop()
        let resources = ResourceManager(ConnectionPoolSettings(maxRetries: 1))
        let budget = resources.retries
        let stats = ClusterStats()
        // RetryState does not keep its resources and stats alive: the test does, to its end.
        defer { withExtendedLifetime((resources, stats)) {} }
        var random = FastRandom(seed: 1)
        let target = Counter()
        var state = RetryState(policy: RetryPolicyConfig(attempts: 2, retryOn: [.fiveXX]), resources: resources, stats: stats, row: 0)
        XCTAssertEqual(state.shouldRetry(.response(status: 404), eventLoop: loop, random: &random, target: target), .no)
        XCTAssertEqual(state.shouldRetry(.overflow, eventLoop: loop, random: &random, target: target), .no)
        XCTAssertEqual(state.shouldRetry(.response(status: 500), eventLoop: loop, random: &random, target: target), .yes)
        XCTAssertEqual(budget.current, 1, "the scheduled retry holds the budget")
        loop.advanceTime(by: RetryState.maxInterval)
        XCTAssertEqual(target.fired, 1, "the retry runs after its backoff")

        // Another request's retry finds the budget taken.
        var other = RetryState(policy: RetryPolicyConfig(attempts: 2, retryOn: [.fiveXX]), resources: resources, stats: stats, row: 0)
        XCTAssertEqual(other.shouldRetry(.reset, eventLoop: loop, random: &random, target: target), .noOverflow)
        XCTAssertEqual(stats[.upstream_rq_retry_overflow], 1)

        XCTAssertEqual(state.shouldRetry(.response(status: 503), eventLoop: loop, random: &random, target: target), .yes,
                       "the same request's next retry reuses its unit")
        XCTAssertEqual(state.shouldRetry(.response(status: 503), eventLoop: loop, random: &random, target: target),
                       .noRetryLimitExceeded)
        XCTAssertEqual(stats[.upstream_rq_retry_limit_exceeded], 1)
        XCTAssertEqual(stats[.upstream_rq_retry], 2)
        state.reset()
        XCTAssertEqual(budget.current, 0, "the end of the request gives the budget back")
        loop.advanceTime(by: .seconds(1))
        XCTAssertEqual(target.fired, 1, "a reset cancels the pending retry")

        var unreplayable = RetryState(policy: RetryPolicyConfig(attempts: 2, retryOn: [.fiveXX]), resources: resources, stats: stats, row: 0)
        XCTAssertEqual(unreplayable.shouldRetry(.response(status: 500), replayable: false, eventLoop: loop, random: &random, target: target),
                       .noRetryLimitExceeded)
    }
}
