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

    /// A TCP connection over loopback: the server side collects into `Sink`; the client socket is
    /// connected here (as loadtest does) and handed to NIO, so its descriptor is known (-1 where
    /// the platform declines), and the client side's context is the test's to write with.
    func connectedPair() throws -> (server: Channel, client: Channel, handler: Client, sink: Sink, descriptor: CInt) {
        let group = MultiThreadedEventLoopGroup.singleton
        let sink = Sink()
        let server = try ServerBootstrap(group: group)
            .childChannelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(sink) } }
            .bind(host: "127.0.0.1", port: 0).wait()
        let handler = Client()
        let bootstrap = ClientBootstrap(group: group)
            .channelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(handler) } }
        switch DirectSocket.connect(to: server.localAddress!) {
        case .connected(let fd):
            return (server, try bootstrap.withConnectedSocket(fd).wait(), handler, sink, fd)
        case .failed, .notImmediate:
            return (server, try bootstrap.connect(to: server.localAddress!).wait(), handler, sink, -1)
        }
    }

    func testBytesArriveOnceAndInOrderWhateverPathTheyTake() throws {
        try exercise(direct: true)
    }

    /// Without a descriptor the held write goes down NIO's pipeline with its flush.
    func testWithoutADescriptorEverythingGoesThroughNIOInOrder() throws {
        try exercise(direct: false)
    }

    func testLoopbackAddresses() throws {
        XCTAssertTrue(DirectSocket.isLoopback(try SocketAddress(ipAddress: "127.0.0.1", port: 80)))
        XCTAssertTrue(DirectSocket.isLoopback(try SocketAddress(ipAddress: "127.8.9.10", port: 80)))
        XCTAssertTrue(DirectSocket.isLoopback(try SocketAddress(ipAddress: "::1", port: 80)))
        XCTAssertFalse(DirectSocket.isLoopback(try SocketAddress(ipAddress: "10.0.0.1", port: 80)))
        XCTAssertFalse(DirectSocket.isLoopback(try SocketAddress(ipAddress: "128.0.0.1", port: 80)))
        XCTAssertFalse(DirectSocket.isLoopback(try SocketAddress(ipAddress: "::2", port: 80)))
        XCTAssertFalse(DirectSocket.isLoopback(try SocketAddress(ipAddress: "::ffff:10.0.0.1", port: 80)))
    }

    private func exercise(direct: Bool) throws {
        let (server, channel, client, sink, connectedFD) = try connectedPair()
        let fd = direct ? connectedFD : -1
        defer {
            try? channel.close().wait()
            try? server.close().wait()
        }

        let (usedDescriptor, expected) = try channel.eventLoop.submit { () -> (Bool, [UInt8]) in
            var expected: [UInt8] = []
            let writer = DirectWriter(descriptor: fd)
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
        XCTAssertEqual(usedDescriptor, direct, "a loopback socket connects at once and its descriptor is used")
        #endif

        let received = sink.bytes(atLeast: expected.count, within: 20)
        XCTAssertEqual(received.count, expected.count)
        XCTAssertTrue(received == expected, "every byte once, in order")
    }
}
