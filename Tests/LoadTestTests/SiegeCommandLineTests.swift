import Foundation
import XCTest
@testable import LoadTestCore

/// siege's command line as people type it, normalised to one spelling for the option parser.
final class ArgvNormaliserTests: XCTestCase {
    func n(_ args: String...) throws -> [String] { try SiegeArgv.normalize(args) }

    func testAttachedShortValues() throws {
        XCTAssertEqual(try n("-c2", "-r5", "-t10S", "-d1"), ["--concurrent", "2", "--reps", "5", "--time", "10S", "--delay", "1"])
        XCTAssertEqual(try n("-c", "2", "-t", "10S"), ["--concurrent", "2", "--time", "10S"])
        XCTAssertEqual(try n("-HAccept: text/plain", "-T", "text/plain"), ["--header", "Accept: text/plain", "--content-type", "text/plain"])
        XCTAssertEqual(try n("-Rmy.siegerc", "-f", "urls.txt", "-mstart", "-AUA/1"),
                       ["--rc", "my.siegerc", "--file", "urls.txt", "--mark", "start", "--user-agent", "UA/1"])
    }

    func testGroupedFlags() throws {
        XCTAssertEqual(try n("-bq"), ["--benchmark", "--quiet"])
        XCTAssertEqual(try n("-vbc2"), ["--verbose", "--benchmark", "--concurrent", "2"])
        XCTAssertEqual(try n("-bic", "3"), ["--benchmark", "--internet", "--concurrent", "3"])
        XCTAssertEqual(try n("-g", "-p", "-j", "-V", "-h", "-C"), ["--get", "--print", "--json-output", "--version", "--help", "--config"])
    }

    func testLongOptionsWithEqualsOrSpace() throws {
        XCTAssertEqual(try n("--concurrent=2", "--reps", "5", "--time=1M", "--delay", "0.5", "--benchmark"),
                       ["--concurrent", "2", "--reps", "5", "--time", "1M", "--delay", "0.5", "--benchmark"])
        XCTAssertEqual(try n("--header=X-A: 1", "--user-agent", "ua", "--content-type=text/plain", "--json-output"),
                       ["--header", "X-A: 1", "--user-agent", "ua", "--content-type", "text/plain", "--json-output"])
        XCTAssertEqual(try n("--file=u.txt", "--rc", "rc", "--mark=m", "--internet", "--get", "--print", "--verbose", "--quiet"),
                       ["--file", "u.txt", "--rc", "rc", "--mark", "m", "--internet", "--get", "--print", "--verbose", "--quiet"])
        XCTAssertEqual(try n("--no-parser", "--no-follow", "--version"), ["--no-parser", "--no-follow", "--version"])
        // loadtest's own
        XCTAssertEqual(try n("--json", "--connection=close", "--rate", "100", "--timeout=5", "--html", "r.html", "--threads=2"),
                       ["--json", "--connection", "close", "--rate", "100", "--timeout", "5", "--html", "r.html", "--threads", "2"])
        // unambiguous prefixes, as getopt_long takes them
        XCTAssertEqual(try n("--conc=2", "--bench"), ["--concurrent", "2", "--benchmark"])
    }

    func testLogTakesAValueOnlyWhenAttached() throws {
        XCTAssertEqual(try n("-l"), ["--log"])
        XCTAssertEqual(try n("-l/tmp/s.log"), ["--log-file", "/tmp/s.log"])
        XCTAssertEqual(try n("--log"), ["--log"])
        XCTAssertEqual(try n("--log=/tmp/s.log"), ["--log-file", "/tmp/s.log"])
        // as in siege: a value after a space is not the log's (here it is the URL)
        XCTAssertEqual(try n("-l", "http://x/"), ["--log", "http://x/"])
    }

    func testURLArgumentsAreKeptWhole() throws {
        let post = #"http://127.0.0.1:8080/orders POST {"orderId":1}"#
        XCTAssertEqual(try n("-c2", post), ["--concurrent", "2", post])
        XCTAssertEqual(try n("http://x/ DELETE", "-v"), ["http://x/ DELETE", "--verbose"])
        XCTAssertEqual(try n("-c", "1", "--", "-odd"), ["--concurrent", "1", "--", "-odd"])
    }

    func testBadOptionsSayWhich() {
        XCTAssertThrowsError(try n("-x")) { XCTAssertTrue("\($0)".contains("'-x'"), "\($0)") }
        XCTAssertThrowsError(try n("-bx")) { XCTAssertTrue("\($0)".contains("'-x'"), "\($0)") }
        XCTAssertThrowsError(try n("--bogus")) { XCTAssertTrue("\($0)".contains("'--bogus'"), "\($0)") }
        XCTAssertThrowsError(try n("-c")) { XCTAssertTrue("\($0)".contains("needs a value"), "\($0)") }
        XCTAssertThrowsError(try n("--reps")) { XCTAssertTrue("\($0)".contains("needs a value"), "\($0)") }
        XCTAssertThrowsError(try n("--benchmark=yes")) { XCTAssertTrue("\($0)".contains("takes no value"), "\($0)") }
        XCTAssertThrowsError(try n("--co=2")) { XCTAssertTrue("\($0)".contains("ambiguous"), "\($0)") }
    }
}

/// siege's resource file, read as siege reads it, and applied under the command line.
final class SiegeRCTests: XCTestCase {
    let text = """
        # a siegerc
        verbose = true
        color = off
        concurrent = 4
        reps: 7
        delay 0.5
        benchmark = true   # no delays
        internet = true
        connection = keep-alive
        timeout = 12
        failures = 3
        json_output = true
        header = X-One: 1
        header = X-Two: ${ONE}-2
        user-agent = siege-like/1
        content-type = text/plain
        logfile = $(HOME)/var/log/siege.log
        gmethod = HEAD
        limit = 255
        file = /tmp/urls.txt
        """

    func testParse() {
        let pairs = SiegeRC.parse(text, environment: ["HOME": "/home/u", "ONE": "one"])
        XCTAssertEqual(pairs.first?.0, "verbose")
        XCTAssertEqual(pairs.first?.1, "true")
        let map = Dictionary(pairs.map { ($0.0, $0.1) }, uniquingKeysWith: { a, b in a + "|" + b })
        XCTAssertEqual(map["reps"], "7", "key: value")
        XCTAssertEqual(map["delay"], "0.5", "key value")
        XCTAssertEqual(map["benchmark"], "true", "a comment after the value")
        XCTAssertEqual(map["header"], "X-One: 1|X-Two: one-2", "repeatable, with a variable")
        XCTAssertEqual(map["logfile"], "/home/u/var/log/siege.log")
        XCTAssertEqual(SiegeRC.parse("a = 1\nb = $(a)/x\n", environment: [:]).last?.1, "1/x", "an earlier key as a variable")
    }

    func testApply() throws {
        var s = RunSettings()
        try s.apply(rc: SiegeRC.parse(text, environment: ["HOME": "/h", "ONE": "1"]))
        XCTAssertTrue(s.verbose)
        XCTAssertFalse(s.color)
        XCTAssertEqual(s.load.concurrency, 4)
        XCTAssertEqual(s.load.repetitions, 7)
        XCTAssertTrue(s.benchmark)
        XCTAssertTrue(s.load.internet)
        XCTAssertEqual(s.load.connection, .keepAlive)
        XCTAssertEqual(s.load.timeout, .seconds(12))
        XCTAssertEqual(s.load.failureLimit, 3)
        XCTAssertTrue(s.json)
        XCTAssertEqual(s.load.headers.map { "\($0.0): \($0.1)" }, ["X-One: 1", "X-Two: 1-2"])
        XCTAssertEqual(s.load.userAgent, "siege-like/1")
        XCTAssertEqual(s.load.contentType, "text/plain")
        XCTAssertEqual(s.logFile, "/h/var/log/siege.log")
        XCTAssertEqual(s.file, "/tmp/urls.txt")
        XCTAssertEqual(s.load.delay, 0.5)
        _ = s.settle()
        XCTAssertEqual(s.load.delay, 0, "benchmark means no delay")

        var t = RunSettings()
        try t.apply(rc: SiegeRC.parse("time = 10S\nreps = 5\nquiet = true\nverbose = true\nconnection = close\n", environment: [:]))
        let warnings = t.settle()
        XCTAssertEqual(t.load.duration, .seconds(10))
        XCTAssertNil(t.load.repetitions, "time wins over reps, as in siege")
        XCTAssertEqual(warnings.count, 1)
        XCTAssertFalse(t.verbose, "quiet turns verbose off")
        XCTAssertEqual(t.load.connection, .close)

        var bad = RunSettings()
        XCTAssertThrowsError(try bad.apply(rc: [("concurrent", "lots")], file: "my.siegerc")) {
            XCTAssertTrue("\($0)".contains("my.siegerc: concurrent = lots"), "\($0)")
        }
    }
}
