import DirectIO
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOPosix
import XCTest

/// `DirectWriter` over a real TCP connection: whatever mix of direct sends and NIO writes it uses,
/// the peer receives every byte once and in order.
final class DirectWriterTests: XCTestCase {
    /// Collects what the server side of the connection receives.
    final class Sink: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let received = NIOLockedValueBox<[UInt8]>([])
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let b = unwrapInboundIn(data)
            received.withLockedValue { $0.append(contentsOf: b.readableBytesView) }
        }

        /// What arrived once `count` bytes have, or after `seconds`.
        func bytes(atLeast count: Int, within seconds: Double) -> [UInt8] {
            let deadline = Date().addingTimeInterval(seconds)
            while received.withLockedValue({ $0.count }) < count && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
            return received.withLockedValue { $0 }
        }
    }

    /// Gives the test the client channel's context.
    final class Client: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        var context: ChannelHandlerContext?
        func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    }

    /// A TCP connection over loopback: the server side collects into `Sink`, the client side's
    /// context is the test's to write with.
    func connectedPair() throws -> (server: Channel, client: Channel, handler: Client, sink: Sink) {
        let group = MultiThreadedEventLoopGroup.singleton
        let sink = Sink()
        let server = try ServerBootstrap(group: group)
            .childChannelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(sink) } }
            .bind(host: "127.0.0.1", port: 0).wait()
        let handler = Client()
        let channel = try ClientBootstrap(group: group)
            .channelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(handler) } }
            .connect(to: server.localAddress!).wait()
        return (server, channel, handler, sink)
    }

    func testBytesArriveOnceAndInOrderWhateverPathTheyTake() throws {
        let (server, channel, client, sink) = try connectedPair()
        defer {
            try? channel.close().wait()
            try? server.close().wait()
        }

        let (usedDescriptor, expected) = try channel.eventLoop.submit { () -> (Bool, [UInt8]) in
            var expected: [UInt8] = []
            let writer = DirectWriter()
            writer.attach(channel, after: 0)
            let context = client.context!
            func bytes(_ n: Int, _ seed: UInt8) -> ByteBuffer {
                let b = (0..<n).map { UInt8(truncatingIfNeeded: Int(seed) &+ $0 &* 7) }
                expected += b
                return ByteBuffer(bytes: b)
            }
            writer.writeAndFlush(bytes(100, 1), context: context)  // direct
            writer.write(bytes(50, 2), context: context)  // held ...
            writer.write(bytes(60, 3), context: context)  // ... both through NIO
            writer.flush(context: context)
            writer.writeAndFlush(bytes(24 << 20, 4), context: context)  // more than the socket takes at once
            writer.writeAndFlush(bytes(10, 5), context: context)  // must queue behind the rest of it
            writer.write(bytes(70, 6), context: context)
            writer.flush(context: context)
            return (writer.descriptor >= 0, expected)
        }.wait()
        #if os(Linux)
        XCTAssertTrue(usedDescriptor, "the descriptor of a NIO-connected socket is found")
        #endif

        let received = sink.bytes(atLeast: expected.count, within: 20)
        XCTAssertEqual(received.count, expected.count)
        XCTAssertTrue(received == expected, "every byte once, in order")
    }

    /// The descriptor lookup waits for the connection to have flushed `lookupAfterFlushes` times,
    /// so a one-request connection never pays for it.
    func testTheDescriptorIsLookedUpOnlyForAConnectionThatKeepsGoing() throws {
        let (server, channel, client, sink) = try connectedPair()
        defer {
            try? channel.close().wait()
            try? server.close().wait()
        }
        let descriptors = try channel.eventLoop.submit { () -> [CInt] in
            let writer = DirectWriter()
            writer.attach(channel)
            return (0..<DirectWriter.lookupAfterFlushes).map { _ in
                writer.writeAndFlush(ByteBuffer(string: "x"), context: client.context!)
                return writer.descriptor
            }
        }.wait()
        XCTAssertTrue(descriptors.dropLast().allSatisfy { $0 < 0 }, "no lookup before the last of those flushes")
        #if os(Linux)
        XCTAssertGreaterThanOrEqual(descriptors.last!, 0)
        #endif
        XCTAssertEqual(sink.bytes(atLeast: descriptors.count, within: 5).count, descriptors.count)
    }

    /// The lookup comes due while NIO still holds most of a large write: it waits until NIO is
    /// done, or the next small write would be sent directly ahead of those bytes.
    func testTheLookupWaitsForWhatNIOStillHolds() throws {
        let (server, channel, client, sink) = try connectedPair()
        defer {
            try? channel.close().wait()
            try? server.close().wait()
        }
        let expected = try channel.eventLoop.submit { () -> [UInt8] in
            var expected: [UInt8] = []
            let writer = DirectWriter()
            writer.attach(channel, after: 2)
            for (i, size) in [24 << 20, 10, 10, 10].enumerated() {
                let b = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ i) }
                expected += b
                writer.writeAndFlush(ByteBuffer(bytes: b), context: client.context!)
            }
            return expected
        }.wait()
        let received = sink.bytes(atLeast: expected.count, within: 20)
        XCTAssertEqual(received.count, expected.count)
        XCTAssertTrue(received == expected, "every byte once, in order")
    }

    func testAnAcceptedChannelsDescriptorIsFoundAndAnEmbeddedOneIsNot() throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let accepted = NIOLockedValueBox<CInt?>(nil)
        let server = try ServerBootstrap(group: group)
            .childChannelInitializer { ch in
                accepted.withLockedValue { $0 = DirectSocket.descriptor(of: ch) ?? -1 }
                return ch.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? server.close().wait() }
        let channel = try ClientBootstrap(group: group).connect(to: server.localAddress!).wait()
        defer { try? channel.close().wait() }
        let deadline = Date().addingTimeInterval(5)
        while accepted.withLockedValue({ $0 }) == nil && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #if os(Linux)
        XCTAssertGreaterThanOrEqual(accepted.withLockedValue { $0 } ?? -1, 0)
        #endif
        XCTAssertNil(DirectSocket.descriptor(of: EmbeddedChannel()))
    }
}
