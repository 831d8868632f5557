import Foundation
import XCTest

/// `--loop-scheduling` and `--loop-nice` on the real gateway process: the kernel's own view of each
/// thread (`/proc/<pid>/task/<tid>/stat`: field 19 the nice value, field 41 the policy, 0
/// SCHED_OTHER, 3 SCHED_BATCH).
final class LoopSchedulingTests: XCTestCase {
    /// Thread name → policy and nice value, for the gateway's threads.
    private func policies(of pid: Int32) throws -> [(name: String, policy: Int, nice: Int)] {
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
        // A thread that ends between the listing and the reads (a pool thread) is left out.
        return tasks.compactMap { tid in
            guard let comm = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/comm", encoding: .utf8),
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/stat", encoding: .utf8)
            else { return nil }
            let name = comm.trimmingCharacters(in: .whitespacesAndNewlines)
            // Fields after the parenthesised name, which may itself hold spaces: state is field 3.
            let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
            return (name, Int(fields[41 - 3])!, Int(fields[19 - 3])!)
        }
    }

    private func config() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sched-\(UUID().uuidString).json")
        try #"{"serviceEntries":[],"virtualServices":[],"destinationRules":[]}"#.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// By default the event loops are SCHED_BATCH, and only they: the process's other threads
    /// (its main thread, Swift's cooperative pool) keep the normal policy.
    func testTheEventLoopsRunAsBatchThreadsByDefault() throws {
        let gw = try OneLoopGateway(config: try config(), threads: 2)
        let threads = try policies(of: gw.process.processIdentifier)
        // NIO names its loop threads NIO-ELT-<group>-#<n>; the gateway's only group is the data plane's.
        let loops = threads.filter { $0.name.hasPrefix("NIO-ELT-") }
        XCTAssertEqual(loops.count, 2, "\(threads)")
        XCTAssertEqual(loops.map(\.policy), [3, 3], "\(threads)")
        let others = threads.filter { !$0.name.hasPrefix("NIO-ELT-") }
        XCTAssertFalse(others.isEmpty)
        XCTAssertTrue(others.allSatisfy { $0.policy == 0 }, "\(others)")
        // And it serves: the admin port answers.
        let ready = try String(contentsOf: URL(string: "http://127.0.0.1:\(gw.adminPort)/ready")!, encoding: .utf8)
        XCTAssertFalse(ready.isEmpty)
    }

    /// The loops take nice -5 by default when the process may lower it (root; otherwise they
    /// stay as started and the gateway says so at info level), and only the loops do.
    func testTheEventLoopsRunBelowNiceZeroByDefaultWhenAllowed() throws {
        let gw = try OneLoopGateway(config: try config(), threads: 2)
        let threads = try policies(of: gw.process.processIdentifier)
        let loops = threads.filter { $0.name.hasPrefix("NIO-ELT-") }
        let started = startingNice()
        XCTAssertEqual(loops.map(\.nice), geteuid() == 0 ? [-5, -5] : [started, started], "\(threads)")
        // The main thread keeps the nice value it started with. (Dispatch's pool threads set their
        // own from their quality of service, which is none of the gateway's doing.)
        XCTAssertEqual(threads.first { $0.name == "gateway" }?.nice, started, "\(threads)")
    }

    /// A value given on the command line is what the loops get (raising needs no privilege), and
    /// 0 leaves the loops as started.
    func testLoopNiceSetsTheLoopsValue() throws {
        let raised = try OneLoopGateway(config: try config(), threads: 2, arguments: ["--loop-nice", "4"])
        XCTAssertEqual(try policies(of: raised.process.processIdentifier).filter { $0.name.hasPrefix("NIO-ELT-") }.map(\.nice), [4, 4])
        let plain = try OneLoopGateway(config: try config(), threads: 2, arguments: ["--loop-nice", "0"])
        let started = startingNice()
        let plainThreads = try policies(of: plain.process.processIdentifier)
        XCTAssertEqual(plainThreads.filter { $0.name.hasPrefix("NIO-ELT-") || $0.name == "gateway" }.map(\.nice), [started, started, started], "\(plainThreads)")
    }

    /// The nice value a process started from this thread begins with (Linux keeps one per thread).
    private func startingNice() -> Int { Int(getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)) }

    func testNormalLeavesTheLoopsAlone() throws {
        let gw = try OneLoopGateway(config: try config(), threads: 2, arguments: ["--loop-scheduling", "normal"])
        let threads = try policies(of: gw.process.processIdentifier)
        XCTAssertTrue(threads.allSatisfy { $0.policy == 0 }, "\(threads)")
        XCTAssertEqual(threads.filter { $0.name.hasPrefix("NIO-ELT-") }.count, 2, "\(threads)")
    }
}
