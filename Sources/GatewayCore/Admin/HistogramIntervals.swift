import NIOConcurrencyHelpers
import NIOCore

/// Envoy's interval histograms: at every stats flush (`flushInterval`, Envoy's default
/// `stats_flush_interval`) each histogram's values since the previous flush become its interval,
/// shown beside the cumulative values (`P50(interval,cumulative)`). Only histograms that exist now
/// are kept, so a reload that drops clusters or routes drops theirs.
final class HistogramIntervals: Sendable {
    static let flushInterval = TimeAmount.seconds(5)

    private struct State {
        var previous: [String: HistogramSnapshot] = [:]
        var interval: [String: HistogramSnapshot] = [:]
    }
    private let state = NIOLockedValueBox(State())

    /// A flush: `current` is every histogram now, by its `/stats` name.
    func flush(_ current: [(name: String, snapshot: HistogramSnapshot)]) {
        state.withLockedValue { s in
            var previous: [String: HistogramSnapshot] = [:]
            var interval: [String: HistogramSnapshot] = [:]
            for (name, snapshot) in current {
                // A histogram new since the last flush: everything it holds is this interval's.
                interval[name] = s.previous[name].map { snapshot.subtracting($0) } ?? snapshot
                previous[name] = snapshot
            }
            s = State(previous: previous, interval: interval)
        }
    }

    /// The last completed interval of `name`; nil before the first flush.
    func interval(of name: String) -> HistogramSnapshot? {
        state.withLockedValue { $0.interval[name] }
    }
}
