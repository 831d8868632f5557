import ArgumentParser
import Atomics
import Foundation
import LoadTestCore
import NIOCore
import NIOPosix

/// `--sweep`: the run repeated at each concurrency of the plan, with the gateway's counters read
/// around each step and, with `--explain-config`, the breaker model's prediction beside it.
extension LoadTest {
    /// The options that only make sense with --sweep, and those that make none with it.
    func checkSweepOptions(_ s: RunSettings) throws {
        guard let sweep else {
            for (name, value) in [("--admin", admin), ("--cluster", cluster), ("--explain-config", explainConfig), ("--latency", latency)]
            where value != nil {
                throw OptionError("\(name) needs --sweep")
            }
            if gatewayThreads != nil { throw OptionError("--gateway-threads needs --sweep") }
            return
        }
        _ = try SweepPlan.parse(sweep)
        if concurrent != nil { throw OptionError("--sweep sets each step's concurrency: drop -c") }
        if get || printPage { throw OptionError("--sweep does not go with -g/-p") }
        if rate != nil { throw OptionError("--sweep runs closed-loop users (each sends when answered); it does not go with --rate") }
        if s.load.duration == nil && s.load.repetitions == nil && !s.load.onceEach {
            throw OptionError("--sweep needs -t (time per step, e.g. -t 5S) or -r (requests per user per step)")
        }
        if explainConfig != nil && latency == nil { throw OptionError("--explain-config needs --latency (the upstream's, e.g. 50ms)") }
        if latency != nil && explainConfig == nil { throw OptionError("--latency needs --explain-config") }
        if gatewayThreads != nil && explainConfig == nil { throw OptionError("--gateway-threads needs --explain-config") }
        if let g = gatewayThreads, g < 1 { throw OptionError("--gateway-threads must be >= 1") }
        if let admin {
            let t = try Target.parseURL(admin)
            guard t.path == "/" else { throw OptionError("--admin takes the admin's base URL (e.g. http://127.0.0.1:9901), not a path") }
        }
    }

    func oneLine(_ message: String, exit code: Int32) -> ExitCode {
        FileHandle.standardError.write(Data("loadtest: \(message)\n".utf8))
        return ExitCode(code)
    }

    func runSweep(_ s: RunSettings) async throws {
        let plan = try SweepPlan.parse(sweep!)
        var prediction: SweepPrediction?
        if let explainConfig, let latency {
            do {
                prediction = try SweepModel.prediction(config: explainConfig, cluster: cluster, latency: latency,
                                                       gatewayThreads: gatewayThreads ?? System.coreCount)
            } catch let e as OptionError {
                throw oneLine(e.description, exit: 2)
            }
        }
        let shownCluster = cluster ?? prediction?.cluster
        if let admin {
            do {
                let first = try AdminCounters.fetch(admin: admin)
                if let shownCluster, first[shownCluster] == nil {
                    throw OptionError("\(admin) has no cluster '\(shownCluster)' (it has: \(first.keys.sorted().joined(separator: ", ")))")
                }
            } catch let e as OptionError {
                throw oneLine("--admin: \(e.description)", exit: 1)
            }
        }
        let loops = threads ?? LoadOptions.defaultEventLoops(s.load.connection, cores: System.coreCount)
        guard loops >= 1 else { throw oneLine("--threads must be >= 1", exit: 2) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: loops)
        do {
            try await LoadEngine.preflight(s.load, group: group)
        } catch let e as OptionError {
            throw oneLine(e.description, exit: 1)
        }
        let stop = ManagedAtomic(false)
        signal(SIGINT, SIG_IGN)
        let sigint = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        sigint.setEventHandler { stop.store(true, ordering: .relaxed) }
        sigint.resume()
        let progress = !s.quiet && !s.json
        var steps: [SweepStep] = []
        for n in plan {
            if stop.load(ordering: .relaxed) { break }
            var options = s.load
            options.concurrency = n
            options.finishInFlight = true
            let before = admin.flatMap { try? AdminCounters.fetch(admin: $0) }
            let result = try await LoadEngine.run(options, group: group, live: nil, stop: stop)
            // The step waited for its requests in flight; closes and connection
            // hand-overs they set off in the gateway settle before its counters are read.
            try? await Task.sleep(nanoseconds: 100_000_000)
            let after = admin.flatMap { try? AdminCounters.fetch(admin: $0) }
            var counters: [String: [String: Int]]?
            if let before, let after { counters = AdminCounters.delta(before, after) }
            if admin != nil && counters == nil {
                FileHandle.standardError.write(Data("loadtest: step \(n): the admin's counters could not be read\n".utf8))
            }
            let step = SweepStep(concurrency: n, summary: Summary(result.recorder, elapsed: result.elapsed), counters: counters)
            steps.append(step)
            if progress {
                let m = step.summary
                FileHandle.standardError.write(Data(String(format: "loadtest: %d users: %.1f trans/s, availability %.2f%%, %d responses 503\n",
                                                           n, m.transactionRate, m.availability, step.shed).utf8))
            }
        }
        let t = s.load.targets
        let title = t.count == 1 ? "\(t[0].method) http://\(t[0].host):\(t[0].port)\(t[0].path)" : "\(t.count) URLs"
        let stepSeconds = s.load.duration.map { Double($0.nanoseconds) / 1e9 }
        let report = SweepReport(title: title, stepSeconds: stepSeconds, steps: steps, admin: admin, cluster: shownCluster, prediction: prediction)
        if s.json {
            print(report.json())
        } else if !s.quiet {
            print(report.text(), terminator: "")
        }
        fflush(nil)
        if let html {
            do {
                try report.html().write(toFile: html, atomically: true, encoding: .utf8)
            } catch {
                FileHandle.standardError.write(Data("loadtest: cannot write \(html): \(error)\n".utf8))
            }
        }
        try? await group.shutdownGracefully()
    }
}
