extension ConfigLoader {
    /// An http route's `mirror` (with `mirrorPercentage`) or `mirrors`, as Istio programs Envoy's
    /// request_mirror_policies: each a cluster and a sampled share of requests (default 100 %).
    static func mirrors(_ o: JSONObject, catalog: inout ClusterCatalog) throws -> [MirrorPolicy] {
        if let m = o["mirror"] {
            if let ms = o["mirrors"] { throw ms.fail("mirror and mirrors cannot be used together (Istio refuses both)") }
            var percentage = 100.0
            if let p = o["mirrorPercentage"] { percentage = try mirrorPercent(p) }
            return [MirrorPolicy(host: try destination(m, catalog: &catalog).cluster, percentage: percentage)]
        }
        if let p = o["mirrorPercentage"] {
            throw p.fail("only applies with mirror (each mirrors[] entry has its own percentage)")
        }
        guard let ms = o["mirrors"] else { return [] }
        return try ms.array().map { entry in
            let e = try entry.object(allowed: ["destination", "percentage"])
            return MirrorPolicy(host: try destination(try e.required("destination"), catalog: &catalog).cluster,
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
}
