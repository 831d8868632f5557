import ArgumentParser
import CLISupport
import Atomics
import Foundation
import LoadTestCore
import NIOCore
import NIOPosix

/// siege's command line. Failed transactions follow siege's manual: responses with status >= 400
/// plus socket failures (connect errors, resets, timeouts, responses cut off).
@main
enum LoadTestMain {
    static func main() async { await CommandRunner.main(LoadTest.self) }
}

struct LoadTest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadtest",
        abstract: "A siege-compatible HTTP load generator with HdrHistogram latencies.",
        discussion: "Counting is siege 4's: Transactions = responses except 408 and 500-509; Failed transactions = socket failures + 408/5xx responses; Successful = status < 400, 401 or 407; Availability = transactions / (transactions + failed).")

    @Option(name: .short, help: "Concurrent users.") var c = 25
    @Option(name: .short, help: "Duration: N, NS, NM or NH.") var t: String?
    @Option(name: .short, help: "Repetitions per user.") var r: Int?
    @Flag(name: .short, help: "Benchmark: no delay between requests.") var b = false
    @Option(name: .short, help: "Random delay up to SEC between a user's requests.") var d: Double?
    @Option(name: .customShort("H"), help: "Extra header \"Name: value\" (repeatable).") var header: [String] = []
    @Option(name: .customShort("T"), help: "Content-Type for bodies.") var contentType = "application/json"
    @Option(name: .short, help: "URL file: lines of URL [POST {json} | POST < file].") var f: String?
    @Flag(name: .short, help: "Quiet: no progress line.") var q = false
    @Flag(help: "Print the summary as one JSON object.") var json = false
    @Option(help: "keep-alive or close.") var connection = "keep-alive"
    @Option(help: "Seconds before a request counts as failed.") var timeout = 30.0
    @Option(name: .customShort("R"), help: "Constant total request rate; latency counted from the intended send time.") var rate: Double?
    @Option(help: "Write an HTML report to FILE.") var html: String?
    @Option(help: "Event loops (default: half the cores with keep-alive, one per core with --connection close).") var threads: Int?
    @Argument(help: "URL (unless -f), or 'URL POST {json}' (also PUT, PATCH, DELETE; 'URL POST < file') as one argument.") var url: String?

    func makeOptions() throws -> LoadOptions {
        var o = LoadOptions()
        guard c >= 1 else { throw OptionError("-c must be >= 1") }
        o.concurrency = c
        if let t { o.duration = try LoadOptions.parseDuration(t) }
        if let r {
            guard r >= 1 else { throw OptionError("-r must be >= 1") }
            o.repetitions = r
        }
        if let d, !b {
            guard d >= 0 else { throw OptionError("-d must be >= 0") }
            o.delay = d
        }
        o.headers = try header.map(LoadOptions.parseHeader)
        o.contentType = contentType
        guard let mode = ConnectionMode(rawValue: connection) else { throw OptionError("--connection must be keep-alive or close") }
        o.connection = mode
        guard timeout > 0 else { throw OptionError("--timeout must be > 0") }
        o.timeout = .nanoseconds(Int64(timeout * 1e9))
        if let rate {
            guard rate > 0 else { throw OptionError("-R must be > 0") }
            o.rate = rate
        }
        if let f { o.targets = try Target.parseFile(f) }
        if let url { o.targets.append(try Target.parseLine(url) ?? Target.parseURL(url)) }
        guard !o.targets.isEmpty else { throw OptionError("give a URL or -f FILE") }
        return o
    }

    func run() async throws {
        let options: LoadOptions
        do {
            options = try makeOptions()
        } catch let e as OptionError {
            FileHandle.standardError.write(Data("loadtest: \(e.description)\n".utf8))
            throw ExitCode(2)
        }
        let loops = threads ?? LoadOptions.defaultEventLoops(options.connection, cores: System.coreCount)
        guard loops >= 1 else {
            FileHandle.standardError.write(Data("loadtest: --threads must be >= 1\n".utf8))
            throw ExitCode(2)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: loops)
        do {
            try await LoadEngine.preflight(options, group: group)
        } catch let e as OptionError {
            FileHandle.standardError.write(Data("loadtest: \(e.description)\n".utf8))
            throw ExitCode(1)
        }
        let stop = ManagedAtomic(false)
        signal(SIGINT, SIG_IGN)
        let sigint = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        sigint.setEventHandler { stop.store(true, ordering: .relaxed) }
        sigint.resume()
        let showTicker = !q && !json && isatty(2) == 1
        let live = showTicker ? LiveCounters() : nil
        let ticker = showTicker ? startTicker(live!) : nil
        let result = try await LoadEngine.run(options, group: group, live: live, stop: stop)
        ticker?.cancel()
        if showTicker { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        let summary = Summary(result.recorder, elapsed: result.elapsed)
        print(json ? Report.json(summary) : Report.text(summary), terminator: json ? "\n" : "")
        if let html {
            let title = "\(options.targets.count == 1 ? "\(options.targets[0].method) http://\(options.targets[0].host):\(options.targets[0].port)\(options.targets[0].path)" : "\(options.targets.count) URLs"), -c \(c)"
            do {
                try Report.html(summary, result.recorder, title: title).write(toFile: html, atomically: true, encoding: .utf8)
            } catch {
                FileHandle.standardError.write(Data("loadtest: cannot write \(html): \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    /// One line on stderr, rewritten twice a second: rate, mean latency, failures.
    func startTicker(_ live: LiveCounters) -> DispatchSourceTimer {
        let timer = DispatchSource.makeTimerSource(queue: .global())
        let started = Date()
        nonisolated(unsafe) var last = (0, 0, started)
        timer.schedule(deadline: .now() + 0.5, repeating: 0.5)
        timer.setEventHandler {
            let n = live.responses.load(ordering: .relaxed)
            let lat = live.latencyMicros.load(ordering: .relaxed)
            let now = Date()
            let dt = now.timeIntervalSince(last.2)
            let rate = dt > 0 ? Double(n - last.0) / dt : 0
            let mean = n > last.0 ? Double(lat - last.1) / Double(n - last.0) / 1000 : 0
            last = (n, lat, now)
            let line = String(format: "\r\u{1B}[K%6.1fs  %9.0f req/s  mean %7.2f ms  responses %d  failed %d",
                              now.timeIntervalSince(started), rate, mean, n, live.failures.load(ordering: .relaxed))
            FileHandle.standardError.write(Data(line.utf8))
        }
        timer.resume()
        return timer
    }
}


