import NIOCore

/// Bytes a connection wrote and will flush at the end of the loop's round.
protocol RoundEndFlush: AnyObject {
    func flushAtRoundEnd()
}

/// A client connection with requests left to take at the end of the loop's round.
protocol RoundEndContinuation: AnyObject {
    func continueAtRoundEnd()
}

/// What one event loop does once it has handled every event of the current round (what one
/// `epoll_wait` returned), as one task for all of it rather than one per connection.
///
/// Flushes wait for the round's end so that each peer gets its bytes in one run of sends: sent
/// at once, a request to the upstream and an answer to a client alternate, and each send more
/// often finds its peer asleep and pays for waking it (on 2 cores shared with nginx and the
/// client, sending upstream requests at the round's end took 7 % less CPU per keep-alive request
/// and gave 8 % more throughput). The wait is the rest of the round: what is already read, not a
/// timer. Continuations (pipelined requests behind an answer, a pass that yielded) run first, so
/// the requests they start are flushed in the same run; one that yields again waits for the next
/// round, so I/O is never starved. The lists hold what one round registered: a continuation per
/// client connection at most (`DownstreamHandler.continuationScheduled`), a flush per request.
///
/// Answers to HTTP/1.1 clients go at once (see `DownstreamHandler.endStream`). `FlushCoalescer`
/// does the same as this for the streams of one HTTP/2 connection, with a task of its own; moved
/// onto this queue it cost 3 % and 8 % more CPU per request in two `bench-ab.sh CLIENT=h2` runs.
final class RoundEndQueue {
    let eventLoop: EventLoop
    private var continuations: [RoundEndContinuation] = []
    private var flushes: [RoundEndFlush] = []
    private var scheduled = false

    init(eventLoop: EventLoop) { self.eventLoop = eventLoop }

    /// `connection` flushes at the round's end (a connection that asks twice flushes once more, with nothing).
    func flush(_ connection: RoundEndFlush) {
        flushes.append(connection)
        schedule()
    }

    /// `connection` takes its remaining requests at the round's end; callers ask once per wait.
    func continueInput(_ connection: RoundEndContinuation) {
        continuations.append(connection)
        schedule()
    }

    private func schedule() {
        eventLoop.assertInEventLoop()
        guard !scheduled else { return }
        scheduled = true
        eventLoop.assumeIsolatedUnsafeUnchecked().execute { self.run() }
    }

    private func run() {
        // `scheduled` stays true while this runs: what is added meanwhile is taken below, or by
        // the task scheduled at the end.
        if !continuations.isEmpty {
            let ready = continuations
            continuations.removeAll(keepingCapacity: true)
            for connection in ready { connection.continueAtRoundEnd() }
        }
        // The requests the continuations started go out in this run too. (A flush can add one: a
        // client that becomes writable takes its next request.)
        while !flushes.isEmpty {
            let ready = flushes
            flushes.removeAll(keepingCapacity: true)
            for connection in ready { connection.flushAtRoundEnd() }
        }
        scheduled = false
        // Continuations that yielded again, or were added by a flush: the next round.
        if !continuations.isEmpty { schedule() }
    }
}
