import Histogram

/// What one event loop's users saw; merged at the end (no sharing while running).
public struct Recorder: Sendable {
    /// Latency in microseconds.
    public var histogram = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    /// Every HTTP response received, whatever its status.
    public var responses = 0
    /// siege's transactions ("hits"): responses other than those siege counts as failed.
    public var transactions = 0
    /// Responses siege counts as successful: status < 400, 401 and 407.
    public var successful = 0
    /// Responses siege counts as failed transactions: 408 and 500...509.
    public var failedResponses = 0
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
        /// Failed transactions (siege's): socket failures and 408/5xx responses.
        public var failures = 0
        public var socketFailures = 0
        /// 1xx...5xx in slots 1...5 (slot 0: codes outside 100...599).
        public var byClass: (Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0)

        public static func == (a: Self, b: Self) -> Bool {
            a.responses == b.responses && a.failures == b.failures && a.socketFailures == b.socketFailures && a.classCount(1) == b.classCount(1)
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

    /// siege 4 counts a response with one of these statuses as a failed transaction, not a hit.
    @inline(__always) public static func siegeFails(_ status: Int) -> Bool { status == 408 || (500...509).contains(status) }
    /// ... and one of these as a successful transaction.
    @inline(__always) public static func siegeSucceeds(_ status: Int) -> Bool { status < 400 || status == 401 || status == 407 }

    public mutating func recordResponse(status: Int, bodyBytes: Int, latencyMicros: UInt64, second: Int) {
        responses += 1
        let fails = Self.siegeFails(status)
        if fails { failedResponses += 1 } else { transactions += 1 }
        if Self.siegeSucceeds(status) { successful += 1 }
        self.bodyBytes += bodyBytes
        statusTable[min(599, max(0, status))] += 1
        recordLatency(latencyMicros)
        let i = bucket(second)
        perSecond[i].responses += 1
        if fails { perSecond[i].failures += 1 }
        perSecond[i].addClass(status / 100)
    }

    public mutating func recordSocketFailure(second: Int) {
        socketFailures += 1
        let i = bucket(second)
        perSecond[i].failures += 1
        perSecond[i].socketFailures += 1
    }

    mutating func recordLatency(_ micros: UInt64) {
        _ = histogram.record(max(1, micros))
        totalResponseTimeMicros += micros
        longestMicros = max(longestMicros, micros)
        shortestMicros = min(shortestMicros, micros)
    }

    public mutating func merge(_ o: Recorder) {
        histogram.add(o.histogram)
        responses += o.responses
        transactions += o.transactions
        successful += o.successful
        failedResponses += o.failedResponses
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
            perSecond[i].socketFailures += v.socketFailures
            for c in 0...5 { perSecond[i].addClass(c, v.classCount(c)) }
        }
    }
}

/// siege's summary, computed from a recorder and the elapsed time.
///
/// Definitions: siege 4's, as its code counts (checked against the real siege in the tests):
/// - Transactions ("hits"): HTTP responses, except 408 and 500...509.
/// - Successful transactions: responses with status < 400, 401 or 407.
/// - Failed transactions: socket failures (connect errors, resets, timeouts, responses cut off)
///   plus responses with 408 or 500...509. A 404 is a transaction, neither successful nor failed.
/// - Availability: transactions / (transactions + failed) × 100.
/// - Response time: the time of all responses / transactions. Transaction rate: transactions /
///   elapsed. Throughput: body megabytes (2^20) per second. Concurrency: total response time /
///   elapsed.
/// The counts per status code list every response, so they add up to what the server answered.
public struct Summary: Sendable {
    public var transactions: Int
    /// Every HTTP response, and the socket failures (beyond siege's block).
    public var responses: Int
    public var socketFailures: Int
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
        responses = r.responses
        socketFailures = r.socketFailures
        failed = r.failedResponses + r.socketFailures
        availability = r.transactions == 0 ? 0 : 100 * Double(r.transactions) / Double(r.transactions + failed)
        self.elapsed = elapsed
        megabytes = Double(r.bodyBytes) / 1_048_576
        responseTime = r.transactions == 0 ? 0 : Double(r.totalResponseTimeMicros) / 1e6 / Double(r.transactions)
        transactionRate = elapsed > 0 ? Double(r.transactions) / elapsed : 0
        throughput = elapsed > 0 ? megabytes / elapsed : 0
        concurrency = elapsed > 0 ? Double(r.totalResponseTimeMicros) / 1e6 / elapsed : 0
        successful = r.successful
        longest = Double(r.longestMicros) / 1e6
        shortest = r.responses == 0 ? 0 : Double(r.shortestMicros) / 1e6
        statusCounts = r.statusCounts
        let h = r.histogram
        percentiles = h.totalCount == 0 ? [] : [
            ("p50", Double(h.valueAtPercentile(50)) / 1000), ("p90", Double(h.valueAtPercentile(90)) / 1000),
            ("p99", Double(h.valueAtPercentile(99)) / 1000), ("p99.9", Double(h.valueAtPercentile(99.9)) / 1000),
            ("max", Double(h.max) / 1000),
        ]
    }
}
