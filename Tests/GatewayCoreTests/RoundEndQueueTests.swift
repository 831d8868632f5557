import NIOCore
import NIOEmbedded
import XCTest
@testable import GatewayCore

/// The loop's round-end work: nothing runs before the round's events are handled, one task
/// serves the round, the requests continuations start are flushed in the same run, and a
/// continuation that yields again waits for the next round.
final class RoundEndQueueTests: XCTestCase {
    /// Records what ran, in order, into a log the test reads.
    final class Log {
        var entries: [String] = []
    }

    /// A connection as the queue sees it: what it is asked to do goes in the log, then `then` runs.
    final class Party: RoundEndFlush, RoundEndContinuation {
        let name: String
        let log: Log
        var then: (() -> Void)?
        init(_ name: String, _ log: Log) {
            self.name = name
            self.log = log
        }
        func flushAtRoundEnd() {
            log.entries.append("flush \(name)")
            then?()
        }
        func continueAtRoundEnd() {
            log.entries.append("continue \(name)")
            then?()
        }
    }

    func testWorkWaitsForTheRoundsEndAndContinuationsComeBeforeFlushes() {
        let loop = EmbeddedEventLoop()
        let queue = RoundEndQueue(eventLoop: loop)
        let log = Log()
        let a = Party("a", log), b = Party("b", log), started = Party("started", log)
        let c = Party("c", log)
        // The continuation starts a request, whose flush joins this round's run.
        c.then = { queue.flush(started) }
        queue.flush(a)
        queue.continueInput(c)
        queue.flush(b)
        XCTAssertEqual(log.entries, [], "nothing runs inside the round")
        loop.run()
        XCTAssertEqual(log.entries, ["continue c", "flush a", "flush b", "flush started"])
        log.entries.removeAll()
        loop.run()
        XCTAssertEqual(log.entries, [], "one run per round: nothing is left for another task")
    }

    func testAContinuationThatYieldsAgainWaitsForTheNextRound() {
        let loop = EmbeddedEventLoop()
        let queue = RoundEndQueue(eventLoop: loop)
        let log = Log()
        let c = Party("c", log)
        var flushers: [Party] = []
        c.then = {
            // Each pass starts a request, then yields with requests left.
            let f = Party("f\(flushers.count + 1)", log)
            flushers.append(f)
            queue.flush(f)
            if flushers.count < 3 { queue.continueInput(c) }
        }
        queue.continueInput(c)
        // The embedded loop also runs the tasks scheduled while it runs: each pass's request is
        // flushed before the next pass, so the passes were separate runs, not one loop that
        // would keep the event loop from its I/O.
        loop.run()
        XCTAssertEqual(log.entries, ["continue c", "flush f1", "continue c", "flush f2", "continue c", "flush f3"])
    }

    func testAFlushThatStartsAnotherRequestIsFlushedInTheSameRun() {
        let loop = EmbeddedEventLoop()
        let queue = RoundEndQueue(eventLoop: loop)
        let log = Log()
        let first = Party("first", log), next = Party("next", log)
        // A client that becomes writable in a flush takes its next request.
        first.then = { queue.flush(next) }
        queue.flush(first)
        loop.run()
        XCTAssertEqual(log.entries, ["flush first", "flush next"])
    }
}
