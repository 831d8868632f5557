import Atomics
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The test upstreams' listener: stopping one while it serves must not let its accept loop take
/// the connections of the next one (the descriptor number is reused at once by the kernel).
final class LoopbackListenerTests: XCTestCase {
    func testAStoppedListenerNeverAcceptsForTheNextOne() throws {
        let servedByFirst = ManagedAtomic(0)
        let first = try LoopbackListener { c in
            servedByFirst.wrappingIncrement(ordering: .relaxed)
            usleep(300_000)  // stopped while it serves
            close(c)
        }
        let busy = try RawConnection(port: first.port, timeout: 2)
        usleep(50_000)
        first.stop()

        let servedBySecond = ManagedAtomic(0)
        let second = try LoopbackListener { c in
            servedBySecond.wrappingIncrement(ordering: .relaxed)
            close(c)
        }
        defer { second.stop() }
        usleep(400_000)  // the first loop is back in accept by now
        for _ in 0..<5 {
            let c = try RawConnection(port: second.port, timeout: 2)
            _ = c.readResponse()
        }
        usleep(100_000)
        XCTAssertEqual(servedBySecond.load(ordering: .relaxed), 5)
        XCTAssertEqual(servedByFirst.load(ordering: .relaxed), 1)
        _ = busy
    }
}
