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

    final class Flusher: RoundEndFlush {
        let name: String
        let log: Log
        var onFlush: (() -> Void)?
        init(_ name: String, _ log: Log) {
            self.name = name
            self.log = log
        }
        func flushAtRoundEnd() {
            log.entries.append("flush \(name)")
            onFlush?()
        }
    }

    final class Continuer: RoundEndContinuation {
        let name: String
        let log: Log
        var onContinue: (() -> Void)?
        init(_ name: String, _ log: Log) {
            self.name = name
            self.log = log
        }
        func continueAtRoundEnd() {
            log.entries.append("continue \(name)")
            onContinue?()
        }
    }

    func testWorkWaitsForTheRoundsEndAndContinuationsComeBeforeFlushes() {
        let loop = EmbeddedEventLoop()
        let queue = RoundEndQueue(eventLoop: loop)
        let log = Log()
        let a = Flusher("a", log), b = Flusher("b", log), started = Flusher("started", log)
        let c = Continuer("c", log)
        // The continuation starts a request, whose flush joins this round's run.
        c.onContinue = { queue.flush(started) }
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
        let c = Continuer("c", log)
        var flushers: [Flusher] = []
        c.onContinue = {
            // Each pass starts a request, then yields with requests left.
            let f = Flusher("f\(flushers.count + 1)", log)
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
        let first = Flusher("first", log), next = Flusher("next", log)
        // A client that becomes writable in a flush takes its next request.
        first.onFlush = { queue.flush(next) }
        queue.flush(first)
        loop.run()
        XCTAssertEqual(log.entries, ["flush first", "flush next"])
    }
}
