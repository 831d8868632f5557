#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

/// The nice value of the event loop threads (`--loop-nice`), what HAProxy's `nice` and nginx's
/// `worker_priority` set for their whole process; here only the loops take it.
///
/// Why the loops run below nice 0 by default: on cores shared with the upstream and the clients,
/// each request the gateway sends wakes the upstream on the loop's own core, and a woken thread
/// of equal weight preempts the loop there and then, mid-way through the events one `epoll_wait`
/// returned. The loop resumes when the upstream sleeps again, sends the next request, and is
/// preempted again: a context switch per request where HAProxy's one thread, which leaves a core
/// to the others, has almost none. At nice -5 (three times the weight of nice 0) the loop keeps its
/// core until its round is done. Measured on 2 cores with nginx and wrk (README "Benchmarks"):
/// pipelined, 0.42 → 0.16 involuntary switches per request, 9–20 % more throughput and 2–11 % less
/// CPU per request in five A/B runs at nice -5 and -10; `wrk -c64` −1 to +8 %; under hey, where
/// nginx still preempts, no change.
///
/// Lowering a nice value needs CAP_SYS_NICE (or an RLIMIT_NICE that allows it): without it the
/// loops stay where they were. Raising it is always allowed. A loop with nothing to do sleeps in
/// `epoll_wait` whatever its nice value, so the weight only decides who waits on a busy core.
public enum LoopNice {
    /// What the loops take unless `--loop-nice` says otherwise.
    public static let defaultValue: Int32 = -5
    /// The range Linux (and `nice(1)`) accepts.
    public static let range: ClosedRange<Int32> = -20...19

    /// The platform has per-thread nice values (Linux, as for the policy); elsewhere nice is per
    /// process and the loops are left as they are.
    public static var isSupported: Bool { LoopScheduling.isSupported }

    /// The nice value of the calling thread (Linux keeps one per thread).
    public static func current() -> Int32 {
        #if os(Linux)
        return getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        #else
        return 0
        #endif
    }

    /// Sets `nice` on every loop of `group`, each from its own thread (on Linux `setpriority` with
    /// who 0 changes the calling thread only); true when all took it. Blocks until every loop has.
    public static func apply(_ nice: Int32, to group: MultiThreadedEventLoopGroup) -> Bool {
        precondition(range.contains(nice), "nice \(nice) outside \(range)")
        #if os(Linux)
        return group.onEveryLoopThread {
            setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, nice) == 0 && current() == nice
        }
        #else
        return false
        #endif
    }
}
