#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

/// One event loop per core, each held on its own core (HAProxy's `cpu-map`, nginx's
/// `worker_cpu_affinity auto`). Measured on two cores shared with the upstream and the load
/// generator: unpinned loops are preempted and moved mid-batch, doubling the p99; pinned, the
/// p99 matches HAProxy's at the same throughput.
public enum CPUAffinity {
    #if os(Linux)
    // glibc declares these only under _GNU_SOURCE, which the Glibc module does not set.
    private typealias AffinityCall = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> Int32
    private static let getAffinity: AffinityCall? = dlsym(nil, "sched_getaffinity").map { unsafeBitCast($0, to: AffinityCall.self) }
    private static let setAffinity: AffinityCall? = dlsym(nil, "sched_setaffinity").map { unsafeBitCast($0, to: AffinityCall.self) }
    #endif

    /// The CPUs the calling thread may run on (at start, the process's).
    public static func allowedCPUs() -> [Int] {
        #if os(Linux)
        var set = cpu_set_t()
        guard let getAffinity, getAffinity(0, MemoryLayout<cpu_set_t>.size, &set) == 0 else { return [] }
        return withUnsafeBytes(of: &set) { bytes in
            (0..<(bytes.count * 8)).filter { bytes[$0 / 8] & (1 << UInt8($0 % 8)) != 0 }
        }
        #else
        return []
        #endif
    }

    /// Pins loop i to the i-th allowed CPU when there is exactly one loop per allowed CPU, and
    /// returns the CPUs used (empty when it did not pin: more or fewer loops than CPUs, or no
    /// affinity support). Blocks until every loop has pinned itself.
    public static func pinOneLoopPerCPU(_ group: MultiThreadedEventLoopGroup) -> [Int] {
        #if os(Linux)
        let cpus = allowedCPUs()
        let loops = Array(group.makeIterator())
        guard cpus.count > 1, loops.count == cpus.count else { return [] }
        for (loop, cpu) in zip(loops, cpus) {
            let pinned = try? loop.submit { () -> Bool in
                var set = cpu_set_t()
                withUnsafeMutableBytes(of: &set) { $0[cpu / 8] |= 1 << UInt8(cpu % 8) }
                return setAffinity?(0, MemoryLayout<cpu_set_t>.size, &set) == 0
            }.wait()
            guard pinned == true else { return [] }
        }
        return cpus
        #else
        return []
        #endif
    }
}
