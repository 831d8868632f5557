import Atomics
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A listening socket on 127.0.0.1 (port from 0) whose accept loop runs on a thread of its own.
///
/// Only that thread closes the descriptor, once `stop()` has shut it down and `accept` fails.
/// Closing it from the test's side would free the number while the loop may still be between two
/// accepts (serving a connection, say): its next `accept` would then take connections from
/// whatever socket reuses the number — a later test's upstream answering with this one's bytes.
final class LoopbackListener: Sendable {
    let port: Int
    private let fd: Int32
    private let stopped = ManagedAtomic(false)

    /// `onConnection` runs on the accept thread and owns the accepted descriptor.
    init(backlog: Int32 = 8, onConnection: @escaping @Sendable (Int32) -> Void) throws {
        (fd, port) = try listenOnLoopback(backlog: backlog)
        let fd = fd
        let stopped = stopped
        Thread {
            while true {
                let c = accept(fd, nil, nil)
                if c >= 0 {
                    onConnection(c)
                } else if stopped.load(ordering: .acquiring) {
                    Glibc.close(fd)
                    return
                } else {
                    usleep(1_000)  // EINTR, EMFILE, an aborted connection: the socket is still ours
                }
            }
        }.start()
    }

    /// Stops accepting; the accept thread closes the descriptor. Only the first call acts, so
    /// a number the thread has already closed (and the process reused) is never shut down.
    func stop() {
        guard stopped.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        shutdown(fd, Int32(SHUT_RDWR))
    }

    deinit { stop() }
}
