/// `/config_dump` for the load-balancing and retry fields of issue 12 items 4 and 5.
extension ConfigJSON {
    static func loadBalancer(_ p: TrafficPolicy) -> String {
        var pairs: [(String, String)] = []
        if let ch = p.consistentHash {
            var c: [(String, String)] = []
            switch ch.key {
            case .header(let name): c.append(("httpHeaderName", jsonString(name)))
            case .cookie(let name, let path, let ttl):
                c.append(("httpCookie", object([("name", jsonString(name))] + (path.map { [("path", jsonString($0))] } ?? [])
                    + (ttl.map { [("ttl", duration($0))] } ?? []))))
            case .sourceIP: c.append(("useSourceIp", "true"))
            case .queryParameter(let name): c.append(("httpQueryParameterName", jsonString(name)))
            }
            switch ch.algorithm {
            case .ringHash(let size): c.append(("ringHash", object([("minimumRingSize", "\(size)")])))
            case .maglev(let size): c.append(("maglev", object([("tableSize", "\(size)")])))
            }
            pairs.append(("consistentHash", object(c)))
        } else {
            pairs.append(("simple", jsonString(p.loadBalancer.rawValue)))
        }
        if let w = p.warmup {
            pairs.append(("warmup", object([("duration", duration(w.duration)), ("minimumPercent", "\(w.minimumPercent)"),
                                            ("aggression", "\(w.aggression)")])))
        }
        return object(pairs)
    }

    static func retryBudget(_ p: TrafficPolicy) -> [(String, String)] {
        guard let b = p.retryBudget else { return [] }
        return [("retryBudget", object([("percent", "\(b.percent)"), ("minRetryConcurrency", "\(b.minRetryConcurrency)")]))]
    }

    static func localOriginSplit(_ o: OutlierDetectionSettings) -> [(String, String)] {
        [("splitExternalLocalOriginErrors", "\(o.splitExternalLocalOriginErrors)"),
         ("consecutiveLocalOriginFailures", "\(o.consecutiveLocalOriginFailures)")]
    }

    static func retryExtras(_ r: RetryPolicyConfig) -> [(String, String)] {
        [("backoff", duration(r.backoffBase)), ("retryIgnorePreviousHosts", "\(r.ignorePreviousHosts)")]
    }
}
