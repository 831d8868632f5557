import NIOCore
import NIOEmbedded
import XCTest
@testable import GatewayCore

/// An HTTP/2 connection's flushes within one event-loop turn leave together after it, and a
/// close never leaves a flushed write behind.
final class FlushCoalescerTests: XCTestCase {
    func outbound(_ channel: EmbeddedChannel) throws -> [String] {
        var out: [String] = []
        while let b = try channel.readOutbound(as: ByteBuffer.self) { out.append(String(buffer: b)) }
        return out
    }

    func testFlushesOfOneTurnLeaveTogetherAfterIt() throws {
        let channel = EmbeddedChannel(handler: FlushCoalescer())
        for frame in ["a", "b", "c"] { channel.writeAndFlush(ByteBuffer(string: frame), promise: nil) }
        XCTAssertEqual(try outbound(channel), [], "nothing is flushed inside the turn")
        channel.embeddedEventLoop.run()
        XCTAssertEqual(try outbound(channel), ["a", "b", "c"], "one flush after the turn sends them all, in order")
        channel.writeAndFlush(ByteBuffer(string: "d"), promise: nil)
        channel.embeddedEventLoop.run()
        XCTAssertEqual(try outbound(channel), ["d"], "the next turn flushes again")
        XCTAssertNoThrow(try channel.finish())
    }

    func testACloseSendsWhatWaitsFirst() throws {
        let channel = EmbeddedChannel(handler: FlushCoalescer())
        var written = false
        let promise = channel.embeddedEventLoop.makePromise(of: Void.self)
        promise.futureResult.whenSuccess { written = true }
        channel.writeAndFlush(ByteBuffer(string: "goaway"), promise: promise)
        XCTAssertFalse(written)
        channel.close(promise: nil)
        XCTAssertTrue(written, "the flushed write went out before the close")
        XCTAssertEqual(try outbound(channel), ["goaway"])
    }
}
