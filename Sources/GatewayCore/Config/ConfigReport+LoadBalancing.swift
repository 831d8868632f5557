/// `gateway validate` in words for the load-balancing and retry fields of issue 12 items 4 and 5.
extension ConfigReport {
    static func loadBalancerText(_ p: TrafficPolicy) -> String {
        guard let ch = p.consistentHash else {
            var text = p.loadBalancer.rawValue
            if let w = p.warmup {
                text += "; slow start: a new host's weight ramps from \(w.minimumPercent)% to full over \(duration(w.duration))"
                    + (w.aggression == 1 ? " (linearly)" : " (aggression \(w.aggression))")
            }
            return text
        }
        let key: String
        switch ch.key {
        case .header(let name): key = "the \(name) header"
        case .cookie(let name, let path, let ttl):
            key = "cookie \(name)"
                + (ttl.map { t in
                    ", set when missing (" + (t.nanoseconds == 0 ? "session cookie" : "Max-Age \(t.nanoseconds / 1_000_000_000)s")
                        + (path.map { ", Path \($0)" } ?? "") + ")"
                } ?? " (never set by the gateway)")
        case .sourceIP: key = "the client address"
        case .queryParameter(let name): key = "query parameter \(name)"
        }
        let table: String
        switch ch.algorithm {
        case .ringHash(let size): table = "ring hash (at least \(size) entries)"
        case .maglev(let size): table = "Maglev (\(size) slots)"
        }
        return "consistent hash on \(key), \(table); requests without it go to a random host; "
            + "an ejected host's keys move to the next host and come back with it"
    }

    static func retryLimitText(_ p: TrafficPolicy) -> String {
        guard let b = p.retryBudget else { return limit(p.connectionPool.maxRetries) }
        let points = [0, 10, 100, 1000].map { "\($0) → \(b.maxRetries(activeAndPending: $0))" }.joined(separator: ", ")
        return "retry budget: \(b.percent)% of active + pending requests, at least \(b.minRetryConcurrency) "
            + "(replaces maxRetries; retries at once by active count: \(points))"
    }

    static func localOriginText(_ od: OutlierDetectionSettings) -> String {
        guard od.splitExternalLocalOriginErrors else { return "" }
        return ", local-origin failures apart: consecutiveLocalOriginFailures "
            + (od.consecutiveLocalOriginFailures == 0 ? "off" : "\(od.consecutiveLocalOriginFailures)")
    }

    static func retryExtrasText(_ r: RetryPolicyConfig) -> String {
        ", backoff \(duration(r.backoffBase)) (at most \(duration(.nanoseconds(r.backoffBase.nanoseconds * 10))))"
            + (r.ignorePreviousHosts ? "" : ", may retry on the same host")
    }
}
