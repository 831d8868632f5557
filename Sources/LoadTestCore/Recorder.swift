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
    public var statusCounts: [Int: Int] = [:]
    /// Per elapsed second: responses, failures, and counts per status class.
    public var perSecond: [Int: SecondBucket] = [:]

    public struct SecondBucket: Sendable, Equatable {
        public var responses = 0
        public var failures = 0
        public var byClass: [Int] = [0, 0, 0, 0, 0, 0]
    }

    public init() {}

    public mutating func recordResponse(status: Int, bodyBytes: Int, latencyMicros: UInt64, second: Int) {
        transactions += 1
        if status < 400 { successful += 1 } else { httpFailures += 1 }
        self.bodyBytes += bodyBytes
        statusCounts[status, default: 0] += 1
        recordLatency(latencyMicros)
        var b = perSecond[second] ?? SecondBucket()
        b.responses += 1
        if status >= 400 { b.failures += 1 }
        b.byClass[min(5, max(0, status / 100))] += 1
        perSecond[second] = b
    }

    public mutating func recordSocketFailure(second: Int) {
        socketFailures += 1
        perSecond[second, default: SecondBucket()].failures += 1
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
        for (k, v) in o.statusCounts { statusCounts[k, default: 0] += v }
        for (k, v) in o.perSecond {
            var b = perSecond[k] ?? SecondBucket()
            b.responses += v.responses
            b.failures += v.failures
            for i in 0..<6 { b.byClass[i] += v.byClass[i] }
            perSecond[k] = b
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
