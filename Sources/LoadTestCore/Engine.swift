import Atomics
import HTTP1Wire
import NIOCore
import NIOPosix

/// Live totals for the progress ticker (only maintained when a ticker is shown).
public final class LiveCounters: Sendable {
    public let responses = ManagedAtomic<Int>(0)
    public let failures = ManagedAtomic<Int>(0)
    public let latencyMicros = ManagedAtomic<Int>(0)
    public init() {}
}

/// Runs the simulated users. Each user owns one connection (a new one per request with
/// `--connection close`) on one event loop; all its state stays on that loop, and each loop
/// records into its own `Recorder`.
public enum LoadEngine {
    public struct Result: Sendable {
        public var recorder: Recorder
        public var elapsed: Double
    }

    /// Fails with a one-line reason when the first target cannot be reached at all.
    public static func preflight(_ options: LoadOptions, group: EventLoopGroup) async throws {
        let t = options.targets[0]
        do {
            let ch = try await ClientBootstrap(group: group).connectTimeout(.seconds(5)).connect(host: t.host, port: t.port).get()
            try? await ch.close()
        } catch {
            throw OptionError("cannot connect to \(t.host):\(t.port): \(error)")
        }
    }

    public static func run(_ options: LoadOptions, group: EventLoopGroup, live: LiveCounters?, stop: ManagedAtomic<Bool>) async throws -> Result {
        let requests = options.encodedRequests()
        let loops = Array(group.makeIterator())
        let start = NIODeadline.now()
        let deadline = options.duration.map { start + $0 }
        let runs = loops.enumerated().map { i, loop in
            // Users go round-robin over the loops: loop i gets every n-th user from i.
            let users = options.concurrency / loops.count + (i < options.concurrency % loops.count ? 1 : 0)
            return LoopRun(loop: loop, users: users, options: options, requests: requests, start: start, deadline: deadline,
                           live: live, stop: stop)
        }
        for i in 0..<options.concurrency {
            let run = runs[i % runs.count]
            run.loop.execute { run.addUser(index: i) }
        }
        var recorder = Recorder()
        for run in runs {
            recorder.merge(try await run.finished.futureResult.get())
        }
        let end = NIODeadline.now()
        var elapsed = Double((end - start).nanoseconds) / 1e9
        if let d = options.duration, stop.load(ordering: .relaxed) == false { elapsed = min(elapsed, Double(d.nanoseconds) / 1e9) }
        return Result(recorder: recorder, elapsed: elapsed)
    }
}

/// The users of one event loop and what they recorded.
final class LoopRun: @unchecked Sendable {
    // @unchecked: everything mutable is touched only on `loop`.
    let loop: EventLoop
    let options: LoadOptions
    let requests: [ByteBuffer]
    let start: NIODeadline
    let deadline: NIODeadline?
    let live: LiveCounters?
    let stop: ManagedAtomic<Bool>
    let finished: EventLoopPromise<Recorder>
    var recorder = Recorder()
    var users: [User] = []
    var running = 0
    var added = 0
    var sweeper: RepeatedTask?
    var random = SystemRandomNumberGenerator()

    let expectedUsers: Int

    init(loop: EventLoop, users: Int, options: LoadOptions, requests: [ByteBuffer], start: NIODeadline, deadline: NIODeadline?,
         live: LiveCounters?, stop: ManagedAtomic<Bool>) {
        self.loop = loop
        expectedUsers = users
        self.options = options
        self.requests = requests
        self.start = start
        self.deadline = deadline
        self.live = live
        self.stop = stop
        finished = loop.makePromise()
        // Timeouts and the -t deadline are checked by one sweep per loop, not a timer per request.
        sweeper = loop.scheduleRepeatedTask(initialDelay: .milliseconds(10), delay: .milliseconds(10)) { [self] _ in sweep() }
        if users == 0 { loop.execute { [self] in complete() } }
    }

    func addUser(index: Int) {
        added += 1
        running += 1
        let u = User(run: self, index: index)
        users.append(u)
        u.begin()
    }

    var shouldStop: Bool {
        if stop.load(ordering: .relaxed) { return true }
        if let deadline, NIODeadline.now() >= deadline { return true }
        return false
    }

    func second(_ now: NIODeadline) -> Int { Int((now - start).nanoseconds / 1_000_000_000) }

    func userDone() {
        running -= 1
        if running == 0 && added == expectedUsers { complete() }
    }

    private var completed = false
    func complete() {
        guard !completed else { return }
        completed = true
        sweeper?.cancel()
        finished.succeed(recorder)
    }

    func sweep() {
        let now = NIODeadline.now()
        let stopping = shouldStop
        for u in users { u.check(now: now, stopping: stopping) }
    }
}

/// One simulated user: sends, reads one response, records it, and goes again.
final class User {
    unowned let run: LoopRun
    let index: Int
    var channel: Channel?
    var connecting = false
    var sent = 0
    var targetIndex: Int
    var inFlight = false
    var requestStart = NIODeadline.now()
    var intended: NIODeadline?
    var nextSend: Scheduled<Void>?
    var done = false
    // response parsing
    var buffer: ByteBuffer?
    var head: MessageHead?
    var body = BodyDecoder(.none)
    var bodyBytes = 0
    var keepAlive = true

    init(run: LoopRun, index: Int) {
        self.run = run
        self.index = index
        targetIndex = index % run.requests.count
    }

    var options: LoadOptions { run.options }

    func begin() {
        if let rate = options.rate {
            // Spread the users' first sends over one interval so the rate is even from the start.
            let interval = Double(options.concurrency) / rate
            let offset = interval * Double(index) / Double(options.concurrency)
            intended = run.start + .nanoseconds(Int64(offset * 1e9))
            schedule(at: intended!)
        } else {
            sendNext()
        }
    }

    func schedule(at when: NIODeadline) {
        if when <= NIODeadline.now() {
            sendNext()
        } else {
            nextSend = run.loop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: when) { self.sendNext() }
        }
    }

    func finish() {
        guard !done else { return }
        done = true
        nextSend?.cancel()
        channel?.close(promise: nil)
        channel = nil
        run.userDone()
    }

    func sendNext() {
        nextSend = nil
        guard !done else { return }
        if run.shouldStop || (options.repetitions.map { sent >= $0 } ?? false) {
            finish()
            return
        }
        sent += 1
        inFlight = true
        requestStart = NIODeadline.now()
        if let channel, channel.isActive {
            write(channel)
        } else {
            connect()
        }
    }

    func connect() {
        connecting = true
        let t = options.targets[targetIndex]
        let handler = UserHandler(user: self)
        ClientBootstrap(group: run.loop)
            .connectTimeout(options.timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(handler) } }
            .connect(host: t.host, port: t.port)
            .assumeIsolatedUnsafeUnchecked()
            .whenComplete { result in
                self.connecting = false
                switch result {
                case .success(let ch):
                    if self.done { ch.close(promise: nil); return }
                    self.channel = ch
                    self.write(ch)
                case .failure:
                    self.failed()
                }
            }
    }

    func write(_ channel: Channel) {
        buffer = nil
        head = nil
        bodyBytes = 0
        channel.writeAndFlush(run.requests[targetIndex], promise: nil)
    }

    func read(_ data: ByteBuffer) {
        guard inFlight else { return }
        var data = data
        if var b = buffer {
            b.writeBuffer(&data)
            data = b
            buffer = nil
        }
        if head == nil {
            switch data.parseHead(.response) {
            case .failure:
                failed()
                return
            case .success(nil):
                buffer = data
                return
            case .success(let h?):
                data.moveReaderIndex(forwardBy: h.length)
                if h.status < 200 { read(data); return }
                head = h
                keepAlive = h.keepAlive && options.connection == .keepAlive
                let framing = HeadParser.responseFraming(h, requestWasHead: options.targets[targetIndex].method == "HEAD")
                if framing == .untilClose { keepAlive = false }
                body = BodyDecoder(framing, errorStatus: 502)
            }
        }
        switch data.consumeBody(&body) {
        case .failure:
            failed()
        case .success(let n):
            bodyBytes += n
            if body.isComplete { completed() }
        }
    }

    /// The peer closed: the end of an until-close body, or a failure mid-response.
    func closed(_ ch: Channel) {
        // Only the current connection matters; one this user closed itself is already forgotten.
        guard channel === ch else { return }
        channel = nil
        guard inFlight else { return }
        if head != nil && body.endsAtClose {
            completed()
        } else {
            failed()
        }
    }

    func completed() {
        inFlight = false
        let now = NIODeadline.now()
        let from = intended ?? requestStart
        let micros = UInt64(max(0, (now - from).nanoseconds / 1000))
        let status = head?.status ?? 0
        run.recorder.recordResponse(status: status, bodyBytes: bodyBytes, latencyMicros: micros, second: run.second(now))
        if let live = run.live {
            live.responses.wrappingIncrement(ordering: .relaxed)
            if status >= 400 { live.failures.wrappingIncrement(ordering: .relaxed) }
            live.latencyMicros.wrappingIncrement(by: Int(micros), ordering: .relaxed)
        }
        if !keepAlive {
            channel?.close(promise: nil)
            channel = nil
        }
        advance()
    }

    func failed() {
        guard inFlight else { return }
        inFlight = false
        run.recorder.recordSocketFailure(second: run.second(.now()))
        run.live?.failures.wrappingIncrement(ordering: .relaxed)
        channel?.close(promise: nil)
        channel = nil
        advance()
    }

    private func advance() {
        targetIndex = (targetIndex + 1) % run.requests.count
        if let rate = options.rate {
            let interval = Double(options.concurrency) / rate
            intended = intended! + .nanoseconds(Int64(interval * 1e9))
            schedule(at: intended!)
        } else if options.delay > 0 {
            let d = Double.random(in: 0...options.delay, using: &run.random)
            schedule(at: .now() + .nanoseconds(Int64(d * 1e9)))
        } else {
            sendNext()
        }
    }

    /// From the loop's sweep: the deadline (stop now) and per-request timeouts.
    func check(now: NIODeadline, stopping: Bool) {
        guard !done else { return }
        if stopping {
            // Requests still in flight at the deadline are not counted (siege stops its clock too).
            inFlight = false
            finish()
            return
        }
        if inFlight && now - requestStart > options.timeout { failed() }
    }
}

final class UserHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let user: User
    init(user: User) { self.user = user }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard user.channel === context.channel else { return }
        user.read(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) { user.closed(context.channel) }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}
