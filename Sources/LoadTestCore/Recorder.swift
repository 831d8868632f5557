import Histogram

/// What one event loop's users saw; merged at the end (no sharing while running).
public struct Recorder: Sendable {
    /// Latency in microseconds.
    public var histogram = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    public var transactions = 0
    public var successful = 0
    /// Responses with status >= 400.
    public var httpFailures = 0
    /// Connect errors, resets, timeouts, responses cut off.
    public var socketFailures = 0
    public var bodyBytes = 0
    public var totalResponseTimeMicros: UInt64 = 0
    public var longestMicros: UInt64 = 0
    public var shortestMicros: UInt64 = .max
    /// Responses per status code, indexed by the code (updated in place: no hashing per response).
    var statusTable = [Int](repeating: 0, count: 600)
    /// Per elapsed second: responses, failures, and counts per status class.
    public var perSecond: [SecondBucket] = []

    public struct SecondBucket: Sendable, Equatable {
        public var responses = 0
        public var failures = 0
        /// 1xx...5xx in slots 1...5 (slot 0: codes outside 100...599).
        public var byClass: (Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0)

        public static func == (a: Self, b: Self) -> Bool {
            a.responses == b.responses && a.failures == b.failures && a.classCount(1) == b.classCount(1)
                && a.classCount(2) == b.classCount(2) && a.classCount(3) == b.classCount(3)
                && a.classCount(4) == b.classCount(4) && a.classCount(5) == b.classCount(5)
        }

        public func classCount(_ c: Int) -> Int {
            switch c {
            case 1: return byClass.1
            case 2: return byClass.2
            case 3: return byClass.3
            case 4: return byClass.4
            case 5: return byClass.5
            default: return byClass.0
            }
        }

        mutating func addClass(_ c: Int, _ n: Int = 1) {
            switch c {
            case 1: byClass.1 += n
            case 2: byClass.2 += n
            case 3: byClass.3 += n
            case 4: byClass.4 += n
            case 5: byClass.5 += n
            default: byClass.0 += n
            }
        }
    }

    public var statusCounts: [Int: Int] {
        var d: [Int: Int] = [:]
        for (code, n) in statusTable.enumerated() where n > 0 { d[code] = n }
        return d
    }

    @inline(__always) mutating func bucket(_ second: Int) -> Int {
        let i = max(0, second)
        while perSecond.count <= i { perSecond.append(SecondBucket()) }
        return i
    }

    public init() {}

    public mutating func recordResponse(status: Int, bodyBytes: Int, latencyMicros: UInt64, second: Int) {
        transactions += 1
        if status < 400 { successful += 1 } else { httpFailures += 1 }
        self.bodyBytes += bodyBytes
        statusTable[min(599, max(0, status))] += 1
        recordLatency(latencyMicros)
        let i = bucket(second)
        perSecond[i].responses += 1
        if status >= 400 { perSecond[i].failures += 1 }
        perSecond[i].addClass(status / 100)
    }

    public mutating func recordSocketFailure(second: Int) {
        socketFailures += 1
        perSecond[bucket(second)].failures += 1
    }

    mutating func recordLatency(_ micros: UInt64) {
        _ = histogram.record(max(1, micros))
        totalResponseTimeMicros += micros
        longestMicros = max(longestMicros, micros)
        shortestMicros = min(shortestMicros, micros)
    }

    public mutating func merge(_ o: Recorder) {
        histogram.add(o.histogram)
        transactions += o.transactions
        successful += o.successful
        httpFailures += o.httpFailures
        socketFailures += o.socketFailures
        bodyBytes += o.bodyBytes
        totalResponseTimeMicros += o.totalResponseTimeMicros
        longestMicros = max(longestMicros, o.longestMicros)
        shortestMicros = min(shortestMicros, o.shortestMicros)
        for (code, n) in o.statusTable.enumerated() { statusTable[code] += n }
        for (k, v) in o.perSecond.enumerated() {
            let i = bucket(k)
            perSecond[i].responses += v.responses
            perSecond[i].failures += v.failures
            for c in 0...5 { perSecond[i].addClass(c, v.classCount(c)) }
        }
    }
}

/// siege's summary, computed from a recorder and the elapsed time.
///
/// Definitions (siege's, made exact here):
/// - Transactions: HTTP responses received, any status.
/// - Successful transactions: responses with status < 400.
/// - Failed transactions: responses with status >= 400 plus socket failures (connect errors,
///   resets, timeouts, responses cut off), as siege's manual defines them.
/// - Availability: successful / (transactions + socket failures) × 100.
/// - Response time: mean seconds per transaction. Transaction rate: transactions / elapsed.
/// - Throughput: body megabytes (2^20) per second. Concurrency: total transaction time / elapsed.
public struct Summary: Sendable {
    public var transactions: Int
    public var availability: Double
    public var elapsed: Double
    public var megabytes: Double
    public var responseTime: Double
    public var transactionRate: Double
    public var throughput: Double
    public var concurrency: Double
    public var successful: Int
    public var failed: Int
    public var longest: Double
    public var shortest: Double
    public var statusCounts: [Int: Int]
    public var percentiles: [(String, Double)]

    public init(_ r: Recorder, elapsed: Double) {
        transactions = r.transactions
        let attempts = r.transactions + r.socketFailures
        availability = attempts == 0 ? 0 : 100 * Double(r.successful) / Double(attempts)
        self.elapsed = elapsed
        megabytes = Double(r.bodyBytes) / 1_048_576
        responseTime = r.transactions == 0 ? 0 : Double(r.totalResponseTimeMicros) / 1e6 / Double(r.transactions)
        transactionRate = elapsed > 0 ? Double(r.transactions) / elapsed : 0
        throughput = elapsed > 0 ? megabytes / elapsed : 0
        concurrency = elapsed > 0 ? Double(r.totalResponseTimeMicros) / 1e6 / elapsed : 0
        successful = r.successful
        failed = r.httpFailures + r.socketFailures
        longest = Double(r.longestMicros) / 1e6
        shortest = r.transactions == 0 ? 0 : Double(r.shortestMicros) / 1e6
        statusCounts = r.statusCounts
        let h = r.histogram
        percentiles = h.totalCount == 0 ? [] : [
            ("p50", Double(h.valueAtPercentile(50)) / 1000), ("p90", Double(h.valueAtPercentile(90)) / 1000),
            ("p99", Double(h.valueAtPercentile(99)) / 1000), ("p99.9", Double(h.valueAtPercentile(99.9)) / 1000),
            ("max", Double(h.max) / 1000),
        ]
    }
}
