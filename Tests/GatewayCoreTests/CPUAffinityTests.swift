#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import XCTest

@testable import GatewayCore

final class CPUAffinityTests: XCTestCase {
    func testOneLoopPerCPUIsPinnedEachToItsOwnCPU() throws {
        let cpus = CPUAffinity.allowedCPUs()
        try XCTSkipIf(cpus.count < 2, "needs two CPUs")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: cpus.count)
        defer { try? group.syncShutdownGracefully() }
        XCTAssertEqual(CPUAffinity.pinOneLoopPerCPU(group), cpus)
        let seen = try group.makeIterator().map { loop in try loop.submit { CPUAffinity.allowedCPUs() }.wait() }
        XCTAssertEqual(seen, cpus.map { [$0] }, "each loop runs on exactly its own CPU")
        XCTAssertEqual(CPUAffinity.allowedCPUs(), cpus, "the calling thread is not pinned")
    }

    func testMoreLoopsThanCPUsAreLeftToTheScheduler() throws {
        let cpus = CPUAffinity.allowedCPUs()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: cpus.count + 1)
        defer { try? group.syncShutdownGracefully() }
        XCTAssertEqual(CPUAffinity.pinOneLoopPerCPU(group), [])
        let seen = try group.makeIterator().map { loop in try loop.submit { CPUAffinity.allowedCPUs() }.wait() }
        XCTAssertEqual(seen, Array(repeating: cpus, count: cpus.count + 1))
    }
}

final class LoopSchedulingPolicyTests: XCTestCase {
    func testBatchIsSetOnEveryLoopAndNormalTakesItBack() throws {
        try XCTSkipUnless(LoopScheduling.isSupported, "Linux's scheduling policies")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let caller = LoopScheduling.currentPolicy()
        XCTAssertTrue(LoopScheduling.batch.apply(to: group))
        let batch = try group.makeIterator().map { loop in try loop.submit { LoopScheduling.currentPolicy() }.wait() }
        XCTAssertEqual(batch, [3, 3], "SCHED_BATCH on each loop's own thread")
        XCTAssertEqual(LoopScheduling.currentPolicy(), caller, "the calling thread keeps its policy")
        XCTAssertTrue(LoopScheduling.normal.apply(to: group))
        let normal = try group.makeIterator().map { loop in try loop.submit { LoopScheduling.currentPolicy() }.wait() }
        XCTAssertEqual(normal, [0, 0])
    }

    /// Raising a nice value needs no privilege, so this half runs everywhere; lowering it below
    /// the start needs CAP_SYS_NICE, which root has.
    func testNiceIsSetOnEveryLoopOnly() throws {
        try XCTSkipUnless(LoopNice.isSupported, "per-thread nice values")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let caller = LoopNice.current()
        let started = try group.makeIterator().map { loop in try loop.submit { LoopNice.current() }.wait() }
        XCTAssertEqual(started, [caller, caller])
        let raised = min(caller + 3, 19)
        XCTAssertTrue(LoopNice.apply(raised, to: group))
        let niced = try group.makeIterator().map { loop in try loop.submit { LoopNice.current() }.wait() }
        XCTAssertEqual(niced, [raised, raised], "each loop's own thread")
        XCTAssertEqual(LoopNice.current(), caller, "the calling thread keeps its nice value")
        // Back down below where the loops started: only with the privilege, and then exactly.
        XCTAssertEqual(LoopNice.apply(-5, to: group), geteuid() == 0)
        let lowered = try group.makeIterator().map { loop in try loop.submit { LoopNice.current() }.wait() }
        XCTAssertEqual(lowered, geteuid() == 0 ? [-5, -5] : [raised, raised])
    }
}
