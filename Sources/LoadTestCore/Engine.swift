import Atomics
import DirectIO
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
        /// The run stopped because failed transactions reached `failureLimit`.
        public var aborted = false
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

    /// Where each target connects. An IP literal is used as it is; a host name is resolved once,
    /// by one connection through NIO's happy-eyeballs connector, so that the users connect straight
    /// to that address instead of resolving the name again for every connection. nil (the name
    /// could not be reached now): each connection resolves it, and its failure is counted.
    static func resolve(_ targets: [Target], group: EventLoopGroup) async -> [SocketAddress?] {
        var known: [String: SocketAddress?] = [:]
        var out: [SocketAddress?] = []
        for t in targets {
            let key = "\(t.host):\(t.port)"
            if let k = known[key] {
                out.append(k)
                continue
            }
            var address = try? SocketAddress(ipAddress: t.host, port: t.port)
            if address == nil,
                let ch = try? await ClientBootstrap(group: group).connectTimeout(.seconds(5)).connect(host: t.host, port: t.port).get()
            {
                address = ch.remoteAddress
                try? await ch.close()
            }
            known[key] = address
            out.append(address)
        }
        return out
    }

    public static func run(_ options: LoadOptions, group: EventLoopGroup, live: LiveCounters?, stop: ManagedAtomic<Bool>,
                           log: TransactionLog? = nil) async throws -> Result {
        let requests = options.encodedRequests()
        let addresses = await resolve(options.targets, group: group)
        let loops = Array(group.makeIterator())
        let start = NIODeadline.now()
        let deadline = options.duration.map { start + $0 }
        let failures = options.failureLimit.map { FailureLimit(limit: $0, stop: stop) }
        let runs = loops.enumerated().map { i, loop in
            // Users go round-robin over the loops: loop i gets every n-th user from i.
            let users = options.concurrency / loops.count + (i < options.concurrency % loops.count ? 1 : 0)
            return LoopRun(loop: loop, users: users, options: options, requests: requests, addresses: addresses, start: start,
                           deadline: deadline, live: live, stop: stop, log: log, failures: failures)
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
        if let d = options.duration, stop.load(ordering: .relaxed) == false, !options.finishInFlight {
            elapsed = min(elapsed, Double(d.nanoseconds) / 1e9)
        }
        return Result(recorder: recorder, elapsed: elapsed, aborted: failures?.reached.load(ordering: .relaxed) ?? false)
    }
}

/// siege's `failures`: failed transactions counted across loops; reaching the limit stops the run.
final class FailureLimit: Sendable {
    let limit: Int
    let count = ManagedAtomic(0)
    let reached = ManagedAtomic(false)
    let stop: ManagedAtomic<Bool>
    init(limit: Int, stop: ManagedAtomic<Bool>) {
        self.limit = limit
        self.stop = stop
    }

    func add() {
        if count.wrappingIncrementThenLoad(ordering: .relaxed) >= limit {
            reached.store(true, ordering: .relaxed)
            stop.store(true, ordering: .relaxed)
        }
    }
}

/// The users of one event loop and what they recorded. The options a user needs per request are
/// copied into plain stored properties here, so the hot path never copies `LoadOptions`.
final class LoopRun: @unchecked Sendable {
    // @unchecked: everything mutable is touched only on `loop`.
    let loop: EventLoop
    let options: LoadOptions
    let requests: [ByteBuffer]
    /// Per target: the resolved address (nil: resolve per connection) and whether it is a HEAD.
    let addresses: [SocketAddress?]
    let isHead: [Bool]
    /// Per target: whether users make and connect their sockets themselves (see `DirectSocket`);
    /// turned off for a target whose handshake does not finish at once.
    var connectsDirectly: [Bool]
    let bootstrap: ClientBootstrap
    let keepAliveMode: Bool
    let repetitions: Int
    let timeout: TimeAmount
    /// `-R`: the time between two sends of one user; `-d`: the longest random delay.
    let rateInterval: TimeAmount?
    let delay: Double
    let start: NIODeadline
    let deadline: NIODeadline
    let live: LiveCounters?
    let stop: ManagedAtomic<Bool>
    /// `-v`: a line per transaction.
    let log: TransactionLog?
    let failures: FailureLimit?
    /// `-i`: users pick their URLs at random.
    let internet: Bool
    /// See `LoadOptions.finishInFlight`.
    let finishInFlight: Bool
    let finished: EventLoopPromise<Recorder>
    var recorder = Recorder()
    var users: [User] = []
    var running = 0
    var added = 0
    var sweeper: RepeatedTask?
    var random = SystemRandomNumberGenerator()

    let expectedUsers: Int

    init(loop: EventLoop, users: Int, options: LoadOptions, requests: [ByteBuffer], addresses: [SocketAddress?], start: NIODeadline,
         deadline: NIODeadline?, live: LiveCounters?, stop: ManagedAtomic<Bool>, log: TransactionLog? = nil,
         failures: FailureLimit? = nil) {
        self.loop = loop
        expectedUsers = users
        self.options = options
        self.requests = requests
        self.addresses = addresses
        isHead = options.targets.map { $0.method == "HEAD" }
        connectsDirectly = addresses.map { $0 != nil }
        // TCP_NODELAY is ClientBootstrap's default.
        bootstrap = ClientBootstrap(group: loop).connectTimeout(options.timeout)
        keepAliveMode = options.connection == .keepAlive
        repetitions = options.onceEach ? options.targets.count : options.repetitions ?? .max
        timeout = options.timeout
        rateInterval = options.rate.map { .nanoseconds(Int64(Double(options.concurrency) / $0 * 1e9)) }
        delay = options.delay
        self.start = start
        self.deadline = deadline ?? .distantFuture
        self.live = live
        self.stop = stop
        self.log = log
        self.failures = failures
        internet = options.internet
        finishInFlight = options.finishInFlight
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

    @inline(__always) func shouldStop(_ now: NIODeadline) -> Bool {
        stop.load(ordering: .relaxed) || now >= deadline
    }

    @inline(__always) func second(_ now: NIODeadline) -> Int { Int((now - start).nanoseconds / 1_000_000_000) }

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
        // The users point back at this run: let them go.
        users.removeAll()
    }

    func sweep() {
        let now = NIODeadline.now()
        let stopping = shouldStop(now)
        for u in users { u.check(now: now, stopping: stopping) }
    }
}

/// One simulated user: sends, reads one response, records it, and goes again.
final class User {
    let run: LoopRun
    let index: Int
    /// The handler of the current connection (nil: none open).
    var handler: UserHandler?
    var sent = 0
    var targetIndex: Int
    var inFlight = false
    var requestStart = NIODeadline.uptimeNanoseconds(0)
    var intended: NIODeadline?
    var nextSend: Scheduled<Void>?
    var done = false
    // response parsing
    var responses = MessageFramer(.response)
    /// The final head of the response in flight.
    var head: MessageHead?
    var bodyBytes = 0
    var keepAlive = true

    init(run: LoopRun, index: Int) {
        self.run = run
        self.index = index
        let n = run.requests.count
        if run.internet {
            targetIndex = Int.random(in: 0..<n, using: &run.random)
        } else if run.options.onceEach {
            targetIndex = 0
        } else {
            // siege's start: user i begins at URL i × (URLs / users).
            targetIndex = (index * (n / max(1, run.options.concurrency))) % n
        }
    }

    var options: LoadOptions { run.options }

    func begin() {
        if let interval = run.rateInterval {
            // Spread the users' first sends over one interval so the rate is even from the start.
            intended = run.start + .nanoseconds(interval.nanoseconds * Int64(index) / Int64(options.concurrency))
            schedule(at: intended!)
        } else {
            sendNext(now: .now())
        }
    }

    func schedule(at when: NIODeadline) {
        let now = NIODeadline.now()
        if when <= now {
            sendNext(now: now)
        } else {
            nextSend = run.loop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: when) { self.sendNext(now: .now()) }
        }
    }

    func finish() {
        guard !done else { return }
        done = true
        nextSend?.cancel()
        closeConnection()
        run.userDone()
    }

    @inline(__always) func closeConnection() {
        if let h = handler {
            handler = nil
            h.close()
        }
    }

    /// `now`: the time just read by the caller (one clock read per request).
    func sendNext(now: NIODeadline) {
        nextSend = nil
        guard !done else { return }
        if sent >= run.repetitions || run.shouldStop(now) {
            finish()
            return
        }
        sent += 1
        inFlight = true
        requestStart = now
        if let handler {
            write(handler)
        } else {
            connect()
        }
    }

    func connect() {
        let future: EventLoopFuture<Channel>
        var fd: CInt = -1
        if let address = run.addresses[targetIndex] {
            if run.connectsDirectly[targetIndex] {
                switch DirectSocket.connect(to: address) {
                case .connected(let s):
                    fd = s
                case .failed:
                    failed(.connect)
                    return
                case .notImmediate:
                    run.connectsDirectly[targetIndex] = false
                }
            }
            future = fd >= 0 ? run.bootstrap.withConnectedSocket(fd) : run.bootstrap.connect(to: address)
        } else {
            let t = options.targets[targetIndex]
            future = run.bootstrap.connect(host: t.host, port: t.port)
        }
        future.assumeIsolatedUnsafeUnchecked().whenComplete { result in
            switch result {
            case .success(let ch):
                if self.done {
                    ch.close(promise: nil)
                    return
                }
                let h = UserHandler(user: self, descriptor: fd)
                do {
                    try ch.pipeline.syncOperations.addHandler(h)
                } catch {
                    ch.close(promise: nil)
                    self.failed(.connect)
                    return
                }
                self.handler = h
                self.write(h)
            case .failure:
                self.failed(.connect)
            }
        }
    }

    @inline(__always) func write(_ h: UserHandler) {
        // Whatever came after the last response answered no request.
        responses.reset()
        responses.expectResponse(toHead: run.isHead[targetIndex])
        head = nil
        bodyBytes = 0
        h.write(run.requests[targetIndex])
    }

    func read(_ data: ByteBuffer) {
        guard inFlight else { return }
        responses.append(data)
        while true {
            let event: MessageFramer.Event
            do {
                event = try responses.next()
            } catch {
                failed(.badResponse)
                return
            }
            switch event {
            case .head:
                let h = responses.head
                // Interim answers (100 Continue) are not the response; the final head follows.
                if h.isInterim { continue }
                head = h
                keepAlive = h.keepAlive && run.keepAliveMode && responses.framing != .untilClose
            case .body(let part):
                bodyBytes += part.readableBytes
            case .end:
                completed()
                return
            case .needMore:
                return
            }
        }
    }

    /// The peer closed: the end of an until-close body, or a failure mid-response.
    func closed(_ h: UserHandler) {
        // Only the current connection matters; one this user closed itself is already forgotten.
        guard handler === h else { return }
        handler = nil
        guard inFlight else { return }
        if responses.endsAtClose {
            completed()
        } else {
            failed(head == nil ? .closed : .cutOff)
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
            if Recorder.siegeFails(status) { live.failures.wrappingIncrement(ordering: .relaxed) }
            live.latencyMicros.wrappingIncrement(by: Int(micros), ordering: .relaxed)
        }
        run.log?.response(minorVersion: head?.minorVersion ?? 1, status: status, micros: micros, bytes: bodyBytes, target: targetIndex)
        if let f = run.failures, Recorder.siegeFails(status) { f.add() }
        if !keepAlive { closeConnection() }
        advance(now)
    }

    func failed(_ reason: SocketFailure) {
        guard inFlight else { return }
        inFlight = false
        let now = NIODeadline.now()
        run.recorder.recordSocketFailure(second: run.second(now))
        run.live?.failures.wrappingIncrement(ordering: .relaxed)
        run.log?.failure(reason, target: targetIndex)
        run.failures?.add()
        closeConnection()
        advance(now)
    }

    private func advance(_ now: NIODeadline) {
        if run.internet {
            targetIndex = Int.random(in: 0..<run.requests.count, using: &run.random)
        } else {
            targetIndex += 1
            if targetIndex == run.requests.count { targetIndex = 0 }
        }
        if let interval = run.rateInterval {
            intended = intended! + interval
            schedule(at: intended!)
        } else if run.delay > 0 {
            let d = Double.random(in: 0...run.delay, using: &run.random)
            schedule(at: now + .nanoseconds(Int64(d * 1e9)))
        } else {
            sendNext(now: now)
        }
    }

    /// From the loop's sweep: the deadline (stop now) and per-request timeouts.
    func check(now: NIODeadline, stopping: Bool) {
        guard !done else { return }
        if stopping && !(run.finishInFlight && inFlight && !run.stop.load(ordering: .relaxed)) {
            // Requests still in flight at the deadline are not counted (siege stops its clock too),
            // unless they are to be finished: then the user stops once its answer is in.
            inFlight = false
            finish()
            return
        }
        if inFlight && now - requestStart > run.timeout { failed(.timeout) }
    }
}

/// One connection of a user. Requests go out through a `DirectWriter` on the socket's descriptor
/// when loadtest connected the socket itself (`DirectSocket.connect`).
final class UserHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let user: User
    let writer: DirectWriter
    var context: ChannelHandlerContext?
    init(user: User, descriptor: CInt) {
        self.user = user
        writer = DirectWriter(descriptor: descriptor)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    @inline(__always) func write(_ request: ByteBuffer) {
        guard let context else { return }
        writer.writeAndFlush(request, context: context)
    }

    func close() { context?.close(promise: nil) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard user.handler === self else { return }
        user.read(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) { user.closed(self) }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}
