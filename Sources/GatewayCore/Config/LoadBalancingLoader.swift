import NIOCore

/// The loader's part for DestinationRule `loadBalancer` and `retryBudget`, and the retry and
/// outlier fields that go with them (issue 12 items 4 and 5). Kept apart from `ConfigLoader.swift`
/// so the functions there only call in.
extension ConfigLoader {
    /// Envoy's `maximum_ring_size` default: the ring may not grow past 8M entries.
    static let maxRingSize = 8_388_608
    /// Envoy's upper bound on `maglev.table_size`.
    static let maxMaglevTableSize = 5_000_011

    /// `trafficPolicy.loadBalancer`: `simple` or `consistentHash` (Istio's oneof), slow start,
    /// and `localityLbSetting` refused.
    static func loadBalancer(_ node: JSONNode, into policy: inout TrafficPolicy) throws {
        let l = try node.object(allowed: ["simple", "consistentHash", "localityLbSetting", "warmupDurationSecs", "warmup"])
        if let n = l["localityLbSetting"] {
            throw n.fail("not supported by this gateway: endpoints carry no locality, so there is nothing to distribute or fail over by")
        }
        if let s = l["simple"] {
            let v = try s.string()
            switch v {
            case "ROUND_ROBIN", "UNSPECIFIED": policy.loadBalancer = .roundRobin
            // LEAST_CONN is the deprecated name Istio keeps for LEAST_REQUEST.
            case "LEAST_REQUEST", "LEAST_CONN": policy.loadBalancer = .leastRequest
            case "RANDOM": policy.loadBalancer = .random
            case "PASSTHROUGH": throw s.fail("PASSTHROUGH is not supported by this gateway")
            default: throw s.fail("unknown load balancer '\(v)' (allowed: ROUND_ROBIN, LEAST_REQUEST, LEAST_CONN, RANDOM)")
            }
        }
        if let ch = l["consistentHash"] {
            if l["simple"] != nil { throw ch.fail("simple and consistentHash are exclusive (one load balancer per policy)") }
            policy.consistentHash = try consistentHash(ch)
        }
        var warmup: WarmupSettings? = nil
        // A window of "0s" is no slow start, as Envoy's zero slow_start_window.
        func window(_ n: JSONNode) throws -> TimeAmount? {
            let d = try n.duration(allowZero: true, min: .seconds(1))
            return d.nanoseconds == 0 ? nil : d
        }
        if let d = l["warmupDurationSecs"] {
            warmup = try window(d).map { WarmupSettings(duration: $0) }
        }
        if let w = l["warmup"] {
            if l["warmupDurationSecs"] != nil { throw w.fail("set either warmup or the deprecated warmupDurationSecs, not both") }
            let o = try w.object(allowed: ["duration", "minimumPercent", "aggression"])
            var s = WarmupSettings(duration: try window(o.required("duration")) ?? .zero)
            if let n = o["minimumPercent"] {
                let v = try n.number()
                guard (0...100).contains(v) else { throw n.fail("must be 0...100, found \(v)") }
                s.minimumPercent = v
            }
            if let n = o["aggression"] {
                let v = try n.number()
                guard v >= 1, v <= 1000 else { throw n.fail("must be 1...1000 (Istio's lower bound), found \(v)") }
                s.aggression = v
            }
            warmup = s.duration == .zero ? nil : s
        }
        if let warmup {
            // Envoy's slow start exists only in its round robin and least request balancers.
            let at = l["warmup"] ?? l["warmupDurationSecs"]!
            if policy.consistentHash != nil { throw at.fail("slow start applies to ROUND_ROBIN and LEAST_REQUEST only, not consistentHash") }
            if policy.loadBalancer == .random { throw at.fail("slow start applies to ROUND_ROBIN and LEAST_REQUEST only, not RANDOM") }
            policy.warmup = warmup
        }
    }

    static func consistentHash(_ node: JSONNode) throws -> ConsistentHashSettings {
        let keys = ["httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"]
        let o = try node.object(allowed: keys + ["ringHash", "maglev", "minimumRingSize"])
        var found: [(String, ConsistentHashSettings.Key)] = []
        if let n = o["httpHeaderName"] {
            let name = try n.nonEmptyString()
            guard name.utf8.allSatisfy(isHeaderNameByte) else { throw n.fail("'\(name)' is not a valid header name") }
            found.append(("httpHeaderName", .header(name.lowercased())))
        }
        if let c = o["httpCookie"] {
            let co = try c.object(allowed: ["name", "path", "ttl", "attributes"])
            try notSupported(co, ["attributes"])
            let nameNode = try co.required("name")
            let name = try nameNode.nonEmptyString()
            guard name.utf8.allSatisfy(isHeaderNameByte) else { throw nameNode.fail("'\(name)' is not a valid cookie name") }
            var path: String? = nil
            if let p = co["path"] {
                let v = try p.string()
                // It goes into a Set-Cookie line: no control characters, no ';' to start an attribute.
                guard v.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ";") }) else {
                    throw p.fail("a cookie path may not hold control characters or ';'")
                }
                path = v.isEmpty ? nil : v
            }
            found.append(("httpCookie", .cookie(name: name, path: path, ttl: try co["ttl"]?.duration(allowZero: true))))
        }
        if let n = o["useSourceIp"], try n.bool() { found.append(("useSourceIp", .sourceIP)) }
        if let n = o["httpQueryParameterName"] { found.append(("httpQueryParameterName", .queryParameter(try n.nonEmptyString()))) }
        guard let key = found.first else {
            throw node.fail("needs one of httpHeaderName, httpCookie, useSourceIp: true, httpQueryParameterName")
        }
        guard found.count == 1 else {
            throw node.fail("\(found.map(\.0).joined(separator: " and ")) are exclusive: the hash has one source")
        }
        var algorithm = ConsistentHashSettings.Algorithm.ringHash(minimumRingSize: RingHashTable.defaultMinimumRingSize)
        func ringSize(_ n: JSONNode) throws -> Int { try n.int(in: 1...maxRingSize) }
        if let n = o["minimumRingSize"] { algorithm = .ringHash(minimumRingSize: try ringSize(n)) }
        if let r = o["ringHash"] {
            if o["minimumRingSize"] != nil { throw r.fail("set either ringHash.minimumRingSize or the deprecated minimumRingSize, not both") }
            let ro = try r.object(allowed: ["minimumRingSize"])
            algorithm = .ringHash(minimumRingSize: try ro["minimumRingSize"].map(ringSize) ?? RingHashTable.defaultMinimumRingSize)
        }
        if let m = o["maglev"] {
            if o["ringHash"] != nil || o["minimumRingSize"] != nil { throw m.fail("ringHash and maglev are exclusive") }
            let mo = try m.object(allowed: ["tableSize"])
            var size = MaglevTable.defaultTableSize
            if let t = mo["tableSize"] {
                size = try t.int(in: 2...maxMaglevTableSize)
                guard MaglevTable.isPrime(size) else { throw t.fail("must be a prime number (Maglev's table walk needs it), found \(size)") }
            }
            algorithm = .maglev(tableSize: size)
        }
        return ConsistentHashSettings(key: key.1, algorithm: algorithm)
    }

    private static func isHeaderNameByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(b)
        }
    }

    /// `trafficPolicy.retryBudget`.
    static func retryBudget(_ node: JSONNode) throws -> RetryBudgetSettings {
        let o = try node.object(allowed: ["percent", "minRetryConcurrency"])
        var b = RetryBudgetSettings()
        if let n = o["percent"] {
            let v = try n.number()
            guard (0...100).contains(v) else { throw n.fail("must be 0...100, found \(v)") }
            b.percent = v
        }
        if let n = o["minRetryConcurrency"] { b.minRetryConcurrency = try n.int(in: 0...maxUInt32) }
        return b
    }

    /// `outlierDetection.splitExternalLocalOriginErrors` and `consecutiveLocalOriginFailures`.
    static func localOriginSplit(_ o: JSONObject, into s: inout OutlierDetectionSettings) throws {
        if let n = o["splitExternalLocalOriginErrors"] { s.splitExternalLocalOriginErrors = try n.bool() }
        if let n = o["consecutiveLocalOriginFailures"] {
            s.consecutiveLocalOriginFailures = try n.int(in: 0...maxUInt32)
            guard s.splitExternalLocalOriginErrors else {
                throw n.fail("only counted with splitExternalLocalOriginErrors: true (without it local-origin failures count as 5xx)")
            }
        }
    }

    /// VirtualService `retries.backoff` and `retryIgnorePreviousHosts`.
    static func retryExtras(_ o: JSONObject, into p: inout RetryPolicyConfig) throws {
        if let n = o["backoff"] { p.backoffBase = try n.duration(min: .milliseconds(1)) }
        if let n = o["retryIgnorePreviousHosts"] { p.ignorePreviousHosts = try n.bool() }
    }
}
