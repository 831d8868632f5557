import ArgumentParser
import Atomics
import CLISupport
import Foundation
import LoadTestCore
import NIOCore
import NIOPosix

/// siege 4's command line (see `SiegeArgv` for the spellings it takes), with siege's counting
/// (see `Summary`) and a few additions of our own.
@main
enum LoadTestMain {
    static func main() async {
        let arguments: [String]
        do {
            arguments = try SiegeArgv.normalize(Array(CommandLine.arguments.dropFirst()))
        } catch {
            FileHandle.standardError.write(Data("loadtest: \(error)\n".utf8))
            exit(2)
        }
        await CommandRunner.main(LoadTest.self, arguments: arguments)
    }
}

let loadtestVersion = "1.1"

struct LoadTest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadtest",
        abstract: "A siege-compatible HTTP load generator with HdrHistogram latencies.",
        usage: """
            loadtest [options] URL
              loadtest [options] 'URL POST {json}'      (also PUT, PATCH, DELETE, OPTIONS; 'URL POST < file')
              loadtest [options] -f urls.txt
              loadtest -g URL
            """,
        discussion: """
            siege 4's command line with siege's meanings: values attached or not (-c2 -t10S -r5 -d1, \
            -c 2), long options with '=' or a space (--concurrent=2, --time 10S), grouped letters (-bq). \
            A URL argument or URL-file line is 'URL', 'URL POST {json}', 'URL PUT {json}', \
            'URL PATCH data', 'URL DELETE' or 'URL POST < file'; spaces and other characters a request \
            line cannot carry are percent-encoded. Several URLs go in a file (-f), used in order, or at \
            random with -i.

            Counting is siege 4's: Transactions = responses except 408 and 500-509; Failed \
            transactions = socket failures (connect errors, resets, timeouts, answers cut off) + \
            408/5xx responses; Successful = status < 400, 401 or 407; Availability = transactions / \
            (transactions + failed). The counts per status code list every response.

            Resource file (-R/--rc FILE, siege's .siegerc format 'key = value'): concurrent, time, \
            reps, delay, benchmark, internet, verbose, quiet, json_output, color, connection, timeout, \
            failures, header (repeatable), user-agent, content-type, logging, logfile, file, url. The \
            command line overrides it; without -R no file is read. 'failures = N' stops the run when N \
            transactions have failed; loadtest's default is never (siege's shipped siegerc says 1024).

            Not siege's: --json, --connection, --rate (the constant-rate mode with coordinated-omission \
            correction, as wrk2; it was -R before -R became siege's --rc), --timeout, --html, --threads, \
            and --sweep: the run at each concurrency of a plan in turn ('1..8', '1,2,4,8'), -t or -r per \
            step, requests in flight at a step's deadline finished and counted; one row per step (rate, \
            availability, p50/p99, counts per status), the first step with 503s as the knee; --admin URL \
            adds the gateway's per-step increases of upstream_rq_pending_overflow, upstream_cx_overflow, \
            outlier_detection.ejections_enforced_total, upstream_rq_retry and upstream_rq_retry_overflow \
            (--cluster NAME, else summed); --explain-config FILE --latency 50ms [--cluster NAME] \
            [--gateway-threads N] puts the gateway's breaker model (gateway validate --explain) beside \
            each step and the predicted knee beside the measured one. \
            POST/PUT/PATCH bodies default to Content-Type application/json (siege: \
            application/x-www-form-urlencoded; -T sets it). loadtest never parses HTML nor follows \
            redirects, so --no-parser and --no-follow change nothing. The summary goes to standard \
            output (siege writes it to standard error).
            """,
        version: "loadtest \(loadtestVersion) (siege 4 command line)")

    @Option(name: [.customShort("c"), .customLong("concurrent")], help: "CONCURRENT users (default 25).") var concurrent: Int?
    @Option(name: [.customShort("r"), .customLong("reps")], help: "REPS: requests per user; 'once': each URL once per user.") var reps: String?
    @Option(name: [.customShort("t"), .customLong("time")], help: "TIMED run: N, NS, NM or NH (e.g. 10S, 1H).") var time: String?
    @Option(name: [.customShort("d"), .customLong("delay")], help: "DELAY: random wait up to SEC before each request.") var delay: Double?
    @Flag(name: [.customShort("b"), .customLong("benchmark")], help: "BENCHMARK: no delay between requests.") var benchmark = false
    @Flag(name: [.customShort("i"), .customLong("internet")], help: "INTERNET: each user picks URLs of the file at random.") var internet = false
    @Option(name: [.customShort("f"), .customLong("file")], help: "FILE of URLs, one per line (siege's forms).") var file: String?
    @Option(name: [.customShort("R"), .customLong("rc")], help: "RC: a siege resource file (.siegerc) to read first.") var rc: String?
    @Flag(name: [.customShort("l"), .customLong("log")], help: "LOG a line per run to ./loadtest.log (or -lFILE / --log=FILE).") var log = false
    @Option(name: .customLong("log-file"), help: .hidden) var logFile: String?
    @Option(name: [.customShort("m"), .customLong("mark")], help: "MARK the log file with a line of text (implies -l).") var mark: String?
    @Option(name: [.customShort("H"), .customLong("header")], help: "HEADER \"Name: value\" (repeatable).") var header: [String] = []
    @Option(name: [.customShort("A"), .customLong("user-agent")], help: "User-Agent of the requests.") var userAgent: String?
    @Option(name: [.customShort("T"), .customLong("content-type")], help: "Content-Type of request bodies (default application/json).") var contentType: String?
    @Flag(name: [.customShort("j"), .customLong("json-output")], help: "JSON output (as --json).") var jsonOutput = false
    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "QUIET: no summary (JSON is still printed when asked for), no -v lines.") var quiet = false
    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "VERBOSE: a line per transaction, coloured on a terminal.") var verbose = false
    @Flag(name: [.customShort("g"), .customLong("get")], help: "GET: one request; print its request and response heads.") var get = false
    @Flag(name: [.customShort("p"), .customLong("print")], help: "PRINT: as -g, and the response body too.") var printPage = false
    @Flag(name: [.customShort("C"), .customLong("config")], help: "CONFIGURATION: print the settings in force and exit.") var showConfig = false
    @Flag(name: .customLong("no-parser"), help: "Accepted for siege's command lines (loadtest never parses pages).") var noParser = false
    @Flag(name: .customLong("no-follow"), help: "Accepted for siege's command lines (loadtest never follows redirects).") var noFollow = false
    @Flag(help: "Print the summary as one JSON object.") var json = false
    @Option(help: "keep-alive (default) or close.") var connection: String?
    @Option(help: "Seconds before a request counts as failed (default 30).") var timeout: Double?
    @Option(help: "Constant total request RATE per second; latency counted from each request's intended send time (wrk2).") var rate: Double?
    @Option(help: "Write an HTML report to FILE.") var html: String?
    @Option(help: "Event loops (default: half the cores with keep-alive, one per core with --connection close).") var threads: Int?
    @Option(help: "SWEEP: run each concurrency in turn, '1..16' or '1,2,4,8,16' (or both: '1..4,8'); -t or -r is per step.") var sweep: String?
    @Option(help: "With --sweep: the gateway's admin URL (e.g. http://127.0.0.1:9901); its overflow, ejection and retry counters are read before and after each step.") var admin: String?
    @Option(help: "With --sweep: the gateway cluster whose counters and prediction are shown (default: counters summed over all clusters).") var cluster: String?
    @Option(name: .customLong("explain-config"), help: "With --sweep: a gateway config; its breaker model (gateway validate --explain) is put beside each step.") var explainConfig: String?
    @Option(help: "With --explain-config: the upstream's latency per request (e.g. 50ms).") var latency: String?
    @Option(name: .customLong("gateway-threads"), help: "With --explain-config: the gateway's event loops (default: this machine's cores, as gateway serve).") var gatewayThreads: Int?
    @Argument(help: "URL, or 'URL POST {json}' quoted as one argument.") var urls: [String] = []

    /// Defaults, then the resource file, then the command line.
    func settings() throws -> (RunSettings, [String]) {
        var s = RunSettings()
        if let rc { try s.apply(rc: try SiegeRC.read(rc), file: rc) }
        if let concurrent { s.load.concurrency = concurrent }
        if let reps {
            if reps.lowercased() == "once" {
                s.load.onceEach = true
                s.load.repetitions = nil
            } else {
                guard let n = Int(reps) else { throw OptionError("-r wants a number or 'once', got '\(reps)'") }
                s.load.repetitions = n
                s.load.onceEach = false
            }
        }
        if let time { s.load.duration = try LoadOptions.parseDuration(time) }
        if let delay { s.load.delay = delay }
        if benchmark { s.benchmark = true }
        if internet { s.load.internet = true }
        if let file { s.file = file }
        if log { s.logging = true }
        if let logFile {
            s.logging = true
            s.logFile = logFile
        }
        if mark != nil { s.logging = true }
        s.load.headers += try header.map(LoadOptions.parseHeader)
        if let userAgent { s.load.userAgent = userAgent }
        if let contentType { s.load.contentType = contentType }
        if json || jsonOutput { s.json = true }
        if quiet { s.quiet = true }
        if verbose { s.verbose = true }
        if let connection {
            guard let mode = ConnectionMode(rawValue: connection) else { throw OptionError("--connection must be keep-alive or close") }
            s.load.connection = mode
        }
        if let timeout {
            guard timeout > 0 else { throw OptionError("--timeout must be > 0") }
            s.load.timeout = .nanoseconds(Int64(timeout * 1e9))
        }
        if let rate {
            guard rate > 0 else { throw OptionError("--rate must be > 0") }
            s.load.rate = rate
        }
        if get || printPage {
            // siege's GET mode: one user, one request, no delay.
            s.load.concurrency = 1
            s.load.repetitions = 1
            s.load.duration = nil
            s.benchmark = true
        }
        let warnings = s.settle()
        guard s.load.concurrency >= 1 else { throw OptionError("-c must be >= 1") }
        if let r = s.load.repetitions, r < 1 { throw OptionError("-r must be >= 1") }
        guard s.load.delay >= 0 else { throw OptionError("-d must be >= 0") }

        // The URL: the argument wins over a file, as in siege; a URL and its method and body
        // typed as separate words are taken together.
        if urls.count > 1 {
            guard Target.methods.contains(urls[1].uppercased()) else {
                throw OptionError("one URL on the command line (siege takes one): quote 'URL POST {json}' as one argument, or put several URLs in a file for -f")
            }
        }
        if !urls.isEmpty { s.url = urls.joined(separator: " ") }
        if let url = s.url {
            s.load.targets = [try Target.parseLine(url) ?? Target.parseURL(url)]
        } else if let file = s.file {
            s.load.targets = try Target.parseFile(file)
        } else if !showConfig {
            throw OptionError("give a URL or -f FILE")
        }
        if (get || printPage) && urls.isEmpty { throw OptionError("-g/--get requires a URL on the command line") }
        try checkSweepOptions(s)
        return (s, warnings)
    }

    func run() async throws {
        let s: RunSettings
        do {
            let (settings, warnings) = try settings()
            s = settings
            for w in warnings { FileHandle.standardError.write(Data("loadtest: \(w)\n".utf8)) }
        } catch let e as OptionError {
            FileHandle.standardError.write(Data("loadtest: \(e.description)\n".utf8))
            throw ExitCode(2)
        }
        if showConfig {
            print(s.describe(), terminator: "")
            return
        }
        if sweep != nil {
            try await runSweep(s)
            return
        }
        if get || printPage {
            try getMode(s)
            return
        }
        let options = s.load
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
        let log = s.verbose ? TransactionLog(targets: options.targets, color: s.color && isatty(1) == 1) : nil
        let showTicker = !s.quiet && !s.json && !s.verbose && isatty(2) == 1
        let live = showTicker ? LiveCounters() : nil
        let ticker = showTicker ? startTicker(live!) : nil
        let result = try await LoadEngine.run(options, group: group, live: live, stop: stop, log: log)
        ticker?.cancel()
        if showTicker { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        let summary = Summary(result.recorder, elapsed: result.elapsed)
        if result.aborted && !s.quiet {
            FileHandle.standardError.write(Data("loadtest aborted due to excessive socket failure; you\ncan change the failure threshold (failures) in the resource file\n".utf8))
        }
        report(summary, result.recorder, s)
    }

    func report(_ summary: Summary, _ recorder: Recorder, _ s: RunSettings) {
        if s.json {
            print(Report.json(summary))
        } else if !s.quiet {
            print(Report.text(summary), terminator: "")
        }
        fflush(nil)
        if s.logging { writeLog(summary, s) }
        if let html {
            let t = s.load.targets
            let title = "\(t.count == 1 ? "\(t[0].method) \(t[0].url)" : "\(t.count) URLs"), -c \(s.load.concurrency)"
            do {
                try Report.html(summary, recorder, title: title).write(toFile: html, atomically: true, encoding: .utf8)
            } catch {
                FileHandle.standardError.write(Data("loadtest: cannot write \(html): \(error)\n".utf8))
            }
        }
    }

    /// siege's log: a header when the file is new, `**** mark ****` lines, one line per run.
    func writeLog(_ summary: Summary, _ s: RunSettings) {
        let path = s.logFile
        var text = ""
        if !FileManager.default.fileExists(atPath: path) {
            text += "      Date & Time,  Trans,  Elap Time,  Data Trans,  Resp Time,  Trans Rate,  Throughput,  Concurrent,    OKAY,   Failed\n"
        }
        if let mark { text += "**** \(mark) ****\n" }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        text += String(format: "%@,%7d,%11.2f,%12d,%11.2f,%12.2f,%12.2f,%12.2f,%8d,%8d\n", f.string(from: Date()) as NSString,
                       summary.transactions, summary.elapsed, Int(summary.megabytes * 1_048_576), summary.responseTime,
                       summary.transactionRate, summary.throughput, summary.concurrency, summary.successful, summary.failed)
        if let handle = FileHandle(forWritingAtPath: path) ?? (FileManager.default.createFile(atPath: path, contents: nil) ? FileHandle(forWritingAtPath: path) : nil) {
            handle.seekToEndOfFile()
            handle.write(Data(text.utf8))
            handle.closeFile()
        } else {
            FileHandle.standardError.write(Data("loadtest: cannot write the log file \(path)\n".utf8))
        }
    }

    /// `-g`/`-p`: the request as sent and the response head (and with -p the body), then the
    /// summary of that one transaction.
    func getMode(_ s: RunSettings) throws {
        let exchange: SingleRequest.Exchange
        do {
            exchange = try SingleRequest.perform(s.load)
        } catch let e as OptionError {
            FileHandle.standardError.write(Data("loadtest: \(e.description)\n".utf8))
            throw ExitCode(1)
        }
        var out = String(decoding: exchange.request, as: UTF8.self)
        if !out.hasSuffix("\n") { out += "\n" }
        out += "\n" + exchange.responseHead.replacingOccurrences(of: "\r\n", with: "\n") + "\n\n"
        if printPage { out += String(decoding: exchange.body, as: UTF8.self) + "\n" }
        FileHandle.standardOutput.write(Data(out.utf8))
        var r = Recorder()
        r.recordResponse(status: exchange.status, bodyBytes: exchange.body.count, latencyMicros: UInt64(exchange.seconds * 1e6), second: 0)
        report(Summary(r, elapsed: exchange.seconds), r, s)
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
