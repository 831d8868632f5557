import Foundation
import NIOCore

/// Everything a run is told by `.siegerc` and the command line: the load itself and how it is
/// reported. Built from the defaults, then the resource file (`--rc`/`-R`), then the command line,
/// each overriding the one before, as in siege.
public struct RunSettings: Sendable {
    public var load = LoadOptions()
    public var verbose = false
    public var quiet = false
    public var json = false
    /// siege's `color`: colour `-v` lines (only ever on a terminal).
    public var color = true
    public var benchmark = false
    /// `-l`: append a line per run to `logFile`.
    public var logging = false
    public var logFile = "loadtest.log"
    /// A URL file (`-f`, `file`) and a URL (the argument, `url`).
    public var file: String?
    public var url: String?

    public init() {}

    /// Applies a resource file's keys (siege's names). Keys siege has that change nothing here
    /// (`parser`, `gmethod`, `limit`, ...) and siege's variables are accepted and left alone.
    public mutating func apply(rc pairs: [(String, String)], file path: String = ".siegerc") throws {
        func number<T: LosslessStringConvertible>(_ key: String, _ value: String, _: T.Type) throws -> T {
            guard let n = T(value.trimmingCharacters(in: .whitespaces)) else {
                throw OptionError("\(path): \(key) = \(value): not a number")
            }
            return n
        }
        for (key, value) in pairs {
            switch key {
            case "concurrent": load.concurrency = try number(key, value, Int.self)
            case "reps":
                if value.lowercased() == "once" { load.onceEach = true } else { load.repetitions = try number(key, value, Int.self) }
            case "time": load.duration = try LoadOptions.parseDuration(value)
            case "delay": load.delay = try number(key, value, Double.self)
            case "timeout": load.timeout = .nanoseconds(Int64(try number(key, value, Double.self) * 1e9))
            case "failures":
                let n = try number(key, value, Int.self)
                load.failureLimit = n > 0 ? n : nil
            case "benchmark": benchmark = SiegeRC.isTrue(value)
            case "internet": load.internet = SiegeRC.isTrue(value)
            case "verbose": verbose = SiegeRC.isTrue(value)
            case "quiet": quiet = SiegeRC.isTrue(value)
            case "json_output": json = SiegeRC.isTrue(value)
            case "color": color = !(value.lowercased() == "false" || value.lowercased() == "off")
            case "connection":
                load.connection = value.lowercased().hasPrefix("keep-alive") ? .keepAlive : .close
            case "header": load.headers.append(try LoadOptions.parseHeader(value))
            case "user-agent": load.userAgent = value
            case "content-type": load.contentType = value
            case "logging": logging = SiegeRC.isTrue(value)
            case "logfile": logFile = value
            case "file": file = value
            case "url": url = value
            default: continue
            }
        }
    }

    /// Settles what the sources left in conflict, as siege does: `-t` wins over `-r` (with a
    /// warning), `-b` means no delay, quiet turns verbose off.
    public mutating func settle() -> [String] {
        var warnings: [String] = []
        if load.duration != nil && (load.repetitions != nil || load.onceEach) {
            warnings.append("both a time (-t) and repetitions (-r) are set: running for the time, as siege does")
            load.repetitions = nil
            load.onceEach = false
        }
        if benchmark { load.delay = 0 }
        if quiet { verbose = false }
        return warnings
    }

    /// `-C`: the settings in force, one per line.
    public func describe() -> String {
        let o = load
        var rows: [(String, String)] = [
            ("concurrent users", "\(o.concurrency)"),
            ("time to run", o.duration.map { "\(Double($0.nanoseconds) / 1e9) s" } ?? "n/a"),
            ("repetitions", o.onceEach ? "once" : o.repetitions.map(String.init) ?? "n/a"),
            ("delay", String(format: "%.3f sec", o.delay)),
            ("benchmark mode", "\(benchmark)"),
            ("internet simulation", "\(o.internet)"),
            ("connection", o.connection.rawValue),
            ("socket timeout", "\(Double(o.timeout.nanoseconds) / 1e9)"),
            ("failures until abort", o.failureLimit.map(String.init) ?? "never"),
            ("verbose", "\(verbose)"), ("quiet", "\(quiet)"), ("json output", "\(json)"),
            ("user-agent", o.userAgent), ("content-type", o.contentType),
            ("logging", logging ? logFile : "false"),
            ("URLs file", file ?? "none"), ("URL", url ?? "none"),
        ]
        rows += o.headers.map { ("header", "\($0.0): \($0.1)") }
        if let rate = o.rate { rows.append(("rate", "\(rate) req/s")) }
        return rows.map { ($0.0 + ":").padding(toLength: 32, withPad: " ", startingAt: 0) + $0.1 }.joined(separator: "\n") + "\n"
    }
}
