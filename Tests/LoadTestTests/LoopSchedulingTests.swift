import Foundation
import XCTest

/// `--loop-scheduling` on the real gateway process: the kernel's own view of each thread's
/// policy (`/proc/<pid>/task/<tid>/stat`, field 41: 0 SCHED_OTHER, 3 SCHED_BATCH).
final class LoopSchedulingTests: XCTestCase {
    /// Thread name → policy, for the gateway's threads.
    private func policies(of pid: Int32) throws -> [(name: String, policy: Int)] {
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
        // A thread that ends between the listing and the reads (a pool thread) is left out.
        return tasks.compactMap { tid in
            guard let comm = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/comm", encoding: .utf8),
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/stat", encoding: .utf8)
            else { return nil }
            let name = comm.trimmingCharacters(in: .whitespacesAndNewlines)
            // Fields after the parenthesised name, which may itself hold spaces: state is field 3.
            let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
            return (name, Int(fields[41 - 3])!)
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

    func testNormalLeavesTheLoopsAlone() throws {
        let gw = try OneLoopGateway(config: try config(), threads: 2, arguments: ["--loop-scheduling", "normal"])
        let threads = try policies(of: gw.process.processIdentifier)
        XCTAssertTrue(threads.allSatisfy { $0.policy == 0 }, "\(threads)")
        XCTAssertEqual(threads.filter { $0.name.hasPrefix("NIO-ELT-") }.count, 2, "\(threads)")
    }
}
