extension ConfigLoader {
    /// An http route's `mirror` (with `mirrorPercentage`) or `mirrors`, as Istio programs Envoy's
    /// request_mirror_policies: each a cluster and a sampled share of requests (default 100 %).
    static func mirrors(_ o: JSONObject, hosts: [String: HostConfig]) throws -> [MirrorPolicy] {
        if let m = o["mirror"] {
            if let ms = o["mirrors"] { throw ms.fail("mirror and mirrors cannot be used together (Istio refuses both)") }
            var percentage = 100.0
            if let p = o["mirrorPercentage"] { percentage = try mirrorPercent(p) }
            return [MirrorPolicy(host: try mirrorDestination(m, hosts: hosts), percentage: percentage)]
        }
        if let p = o["mirrorPercentage"] {
            throw p.fail("only applies with mirror (each mirrors[] entry has its own percentage)")
        }
        guard let ms = o["mirrors"] else { return [] }
        return try ms.array().map { entry in
            let e = try entry.object(allowed: ["destination", "percentage"])
            return MirrorPolicy(host: try mirrorDestination(try e.required("destination"), hosts: hosts),
                                percentage: try e["percentage"].map(mirrorPercent) ?? 100)
        }
    }

    /// Istio's `Percent {value}`: a double in 0...100.
    static func mirrorPercent(_ node: JSONNode) throws -> Double {
        let po = try node.object(allowed: ["value"])
        let v = try po.required("value").number()
        guard (0...100).contains(v) else { throw ConfigError(path: po.node().child("value"), reason: "must be 0...100, found \(v)") }
        return v
    }

    /// A mirror's `Destination {host, port, subset}`, resolved to its cluster like a route's.
    static func mirrorDestination(_ node: JSONNode, hosts: [String: HostConfig]) throws -> String {
        let dest = try node.object(allowed: ["host", "port", "subset"])
        if let s = dest["subset"] { throw s.fail("not supported by this gateway: mirroring to a subset (subsets are not implemented)") }
        let hostNode = try dest.required("host")
        let host = try resolveHost(try hostNode.nonEmptyString(), hosts, at: hostNode)
        if let p = dest["port"] {
            // As for route destinations: a host here is one cluster whatever its port.
            _ = try p.object(allowed: ["number"]).required("number").int(in: 1...65535)
        }
        return host
    }
}
