#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

/// The Linux scheduling policy of the event loop threads (`--loop-scheduling`).
///
/// `batch` (SCHED_BATCH, what `chrt -b` sets): a loop woken by bytes from a peer does not preempt
/// the thread running on its core (a client or an upstream sharing the machine, mid-way through
/// its own batch); it runs when that thread sleeps or its slice ends, and then finds more events
/// waiting. Measured on two cores shared with nginx and the load generator, loops pinned one per
/// core (`bench-ab.sh`, README "Benchmarks"): under hey 5–12 % more throughput and 6–10 % less CPU
/// per request in three runs, and 11–17 % fewer context switches on the machine per request; `wrk
/// -c64` and pipelined within this machine's noise (−5 to +5 %); p99 alike in `wrk --latency`
/// runs. A loop that has its core to itself runs as before: the policy only decides who waits on
/// a shared core.
/// `normal` leaves the threads SCHED_OTHER. Unprivileged: Linux lets any thread move between
/// SCHED_OTHER and SCHED_BATCH.
public enum LoopScheduling: String, Sendable {
    case batch
    case normal

    /// Linux's policy numbers: SCHED_OTHER 0, SCHED_BATCH 3 (glibc declares the latter only under
    /// _GNU_SOURCE, which the Glibc module does not set).
    var policy: Int32 {
        switch self {
        case .batch: return 3
        case .normal: return 0
        }
    }

    /// The platform has these policies (Linux); elsewhere the loops run as the system schedules them.
    public static var isSupported: Bool {
        #if os(Linux)
        return true
        #else
        return false
        #endif
    }

    /// The policy of the calling thread, as the kernel reports it (-1 if it cannot be read).
    public static func currentPolicy() -> Int32 {
        #if os(Linux)
        return sched_getscheduler(0)
        #else
        return -1
        #endif
    }

    /// Sets the policy on every loop of `group`, each from its own thread; true when all took it
    /// (a loop the kernel refuses does not keep the others from it). Blocks until every loop has.
    public func apply(to group: MultiThreadedEventLoopGroup) -> Bool {
        #if os(Linux)
        let policy = self.policy
        return group.onEveryLoopThread {
            var param = sched_param()
            param.sched_priority = 0  // the only priority SCHED_OTHER and SCHED_BATCH have
            return sched_setscheduler(0, policy, &param) == 0
        }
        #else
        return false
        #endif
    }
}

extension MultiThreadedEventLoopGroup {
    /// Runs `body` once on each loop's own thread, for what Linux keeps per thread (the scheduling
    /// policy, the nice value): true when it returned true on every one. Every loop runs it, even
    /// after one returned false; blocks until all have.
    func onEveryLoopThread(_ body: @escaping @Sendable () -> Bool) -> Bool {
        var all = true
        for loop in makeIterator() where (try? loop.submit(body).wait()) != true {
            all = false
        }
        return all
    }
}
