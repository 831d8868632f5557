import Foundation
import NIOCore

/// What the admin endpoints print: Envoy's stat names and formats over the runtime's counters.
struct AdminView {
    let runtime: GatewayRuntime

    typealias Stat = (name: String, value: Int, gauge: Bool)

    /// Every stat, Envoy-named: `cluster.<host>.<stat>`, `http.ingress.<stat>`, `route.<name>.<stat>`.
    func allStats() -> [Stat] {
        var out: [Stat] = []
        for c in runtime.clusters {
            let p = "cluster.\(c.name)."
            for counter in ClusterCounter.allCases { out.append((p + counter.name, c.stats[counter], false)) }
            for (name, value) in clusterGauges(c) { out.append((p + name, value, true)) }
        }
        for (name, value) in runtime.listenerStats.counters {
            out.append(("http.ingress.\(name)", value, name.hasSuffix("_active")))
        }
        for r in runtime.routeStats {
            for (name, value) in r.counters { out.append(("route.\(r.name).\(name)", value, false)) }
        }
        let reloads = runtime.reloadCounts
        out.append(("server.config_version", runtime.snapshot.version, true))
        out.append(("server.reload_success", reloads.success, false))
        out.append(("server.reload_failure", reloads.failure, false))
        out.append(("server.access_log_dropped", runtime.accessLogDropped, false))
        for (name, value) in runtime.spanExportStats { out.append((name, value, false)) }
        return out.sorted { $0.name < $1.name }
    }

    func clusterGauges(_ c: Cluster) -> [(String, Int)] {
        let r = c.resources
        return [
            ("upstream_rq_active", r.requests.current),
            ("upstream_rq_pending_active", r.pendingRequests.current),
            ("upstream_cx_active", r.connections.current),
            ("upstream_rq_retry_active", r.retries.current),
            ("outlier_detection.ejections_active", c.outlier.ejectionsActive),
            ("circuit_breakers.default.cx_open", r.connections.canCreate() ? 0 : 1),
            ("circuit_breakers.default.rq_pending_open", r.pendingRequests.canCreate() ? 0 : 1),
            ("circuit_breakers.default.rq_open", r.requests.canCreate() ? 0 : 1),
            ("circuit_breakers.default.rq_retry_open", r.retries.canCreate() ? 0 : 1),
            ("circuit_breakers.default.remaining_cx", max(0, r.connections.max - r.connections.current)),
            ("circuit_breakers.default.remaining_pending", max(0, r.pendingRequests.max - r.pendingRequests.current)),
            ("circuit_breakers.default.remaining_rq", max(0, r.requests.max - r.requests.current)),
            ("circuit_breakers.default.remaining_retries", max(0, r.retries.max - r.retries.current)),
        ]
    }

    /// A histogram with its `/stats` name and its Prometheus family and labels.
    typealias NamedHistogram = (name: String, family: String, labels: String, snapshot: HistogramSnapshot)

    /// Every histogram, sorted by name: `cluster.<host>.upstream_rq_time`,
    /// `cluster.<host>.upstream_cx_connect_ms`, `http.ingress.downstream_rq_time`,
    /// `route.<name>.upstream_rq_time`.
    func allHistograms() -> [NamedHistogram] {
        var out: [NamedHistogram] = []
        for c in runtime.clusters {
            let label = "envoy_cluster_name=\(jsonString(c.name))"
            for (name, h) in c.stats.histograms {
                out.append(("cluster.\(c.name).\(name)", "envoy_cluster_" + name, label, h.snapshot()))
            }
        }
        out.append(("http.ingress.downstream_rq_time", "envoy_http_downstream_rq_time",
                    "envoy_http_conn_manager_prefix=\"ingress\"", runtime.listenerStats.downstreamRqTime.snapshot()))
        for r in runtime.routeStats {
            for (name, h) in r.histograms {
                out.append(("route.\(r.name).\(name)", "envoy_route_" + name, "envoy_route_name=\(jsonString(r.name))",
                            h.snapshot()))
            }
        }
        return out.sorted { $0.name < $1.name }
    }

    /// Envoy's quantile labels: `P0`, `P25`, ... `P99.5`, `P99.9`, `P100`.
    static let quantileLabels = LatencyHistogram.envoyQuantiles.map { envoyNumber($0 * 100) }

    /// Envoy's `/stats` histogram line: `P<q>(<interval>,<cumulative>)` for each quantile, or
    /// `No recorded values`. The interval is the last completed stats flush interval
    /// (`HistogramIntervals`); `nan` where it recorded nothing, or before the first flush.
    static func summary(_ s: HistogramSnapshot, interval: HistogramSnapshot?) -> String {
        guard s.count > 0 else { return "No recorded values" }
        let values = s.quantiles(LatencyHistogram.envoyQuantiles)
        let intervals = interval?.quantiles(LatencyHistogram.envoyQuantiles)
            ?? LatencyHistogram.envoyQuantiles.map { _ in .nan }
        return (0..<values.count).map { "P\(quantileLabels[$0])(\(envoyNumber(intervals[$0])),\(envoyNumber(values[$0])))" }
            .joined(separator: " ")
    }

    private func interval(_ h: NamedHistogram) -> HistogramSnapshot? { runtime.histogramIntervals.interval(of: h.name) }

    /// A stats flush: every histogram's values since the last one become its interval.
    func flushHistogramIntervals() {
        runtime.histogramIntervals.flush(allHistograms().map { ($0.name, $0.snapshot) })
    }

    func statsText() -> String {
        allStats().map { "\($0.name): \($0.value)\n" }.joined()
            + allHistograms().map { "\($0.name): \(Self.summary($0.snapshot, interval: interval($0)))\n" }.joined()
    }

    /// Envoy's JSON: counters and gauges as `{name, value}`, then one element
    /// `{"histograms": {"supported_quantiles": [...], "computed_quantiles": [{name, values:
    /// [{interval, cumulative}, ...]}]}}` (a quantile with no value is null).
    ///
    /// `detailedBuckets` (Envoy's `histogram_buckets=detailed`): the histograms element is
    /// `{"histograms": {"supported_percentiles": [...], "details": [{name, totals:
    /// [{lower_bound, width, count}, ...], intervals: [...], percentiles: [{cumulative, interval},
    /// ...]}]}}`, every non-empty bin in ms; `intervals` and each `interval` are the last stats
    /// flush interval's (empty and null before the first). The dashboard subtracts two reads'
    /// totals for its own window (the last minute).
    func statsJSON(detailedBuckets: Bool = false) -> String {
        var items = allStats().map { "{\"name\":\(jsonString($0.name)),\"value\":\($0.value)}" }
        let histograms = allHistograms()
        func number(_ v: Double) -> String { v.isNaN ? "null" : Self.envoyNumber(v) }
        if detailedBuckets {
            let details = histograms.map { h in
                let totals = h.snapshot.detailedBuckets().map {
                    "{\"lower_bound\":\(number($0.lowerBoundMs)),\"width\":\(number($0.widthMs)),\"count\":\($0.count)}"
                }
                let interval = interval(h)
                let intervals = (interval?.detailedBuckets() ?? []).map {
                    "{\"lower_bound\":\(number($0.lowerBoundMs)),\"width\":\(number($0.widthMs)),\"count\":\($0.count)}"
                }
                let intervalValues = interval?.quantiles(LatencyHistogram.envoyQuantiles)
                let percentiles = h.snapshot.quantiles(LatencyHistogram.envoyQuantiles).enumerated().map { i, v in
                    "{\"cumulative\":\(number(v)),\"interval\":\(intervalValues.map { number($0[i]) } ?? "null")}"
                }
                return "{\"name\":\(jsonString(h.name)),\"totals\":[\(totals.joined(separator: ","))],"
                    + "\"intervals\":[\(intervals.joined(separator: ","))],"
                    + "\"percentiles\":[\(percentiles.joined(separator: ","))]}"
            }
            items.append("{\"histograms\":{\"supported_percentiles\":[\(Self.quantileLabels.joined(separator: ","))],"
                             + "\"details\":[\(details.joined(separator: ","))]}}")
        } else {
            let computed = histograms.map { h in
                let intervalValues = interval(h)?.quantiles(LatencyHistogram.envoyQuantiles)
                let values = h.snapshot.quantiles(LatencyHistogram.envoyQuantiles).enumerated().map { i, v in
                    "{\"interval\":\(intervalValues.map { number($0[i]) } ?? "null"),\"cumulative\":\(number(v))}"
                }
                return "{\"name\":\(jsonString(h.name)),\"values\":[\(values.joined(separator: ","))]}"
            }
            items.append("{\"histograms\":{\"supported_quantiles\":[\(Self.quantileLabels.joined(separator: ","))],"
                             + "\"computed_quantiles\":[\(computed.joined(separator: ","))]}}")
        }
        return "{\"stats\":[\(items.joined(separator: ","))]}\n"
    }

    /// A number as Envoy's fmt prints a double: integers without a decimal point, others in
    /// their shortest form, NaN as `nan`.
    static func envoyNumber(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d == d.rounded(), abs(d) < 1e15 { return String(Int(d)) }
        return "\(d)"
    }

    /// Envoy's Prometheus mapping: `envoy_cluster_<stat>{envoy_cluster_name="<host>"}`.
    func prometheus() -> String {
        var families: [String: (type: String, lines: [String])] = [:]
        func add(_ family: String, _ labels: String, _ value: Int, gauge: Bool) {
            let f = family.replacingOccurrences(of: ".", with: "_").replacingOccurrences(of: "-", with: "_")
            families[f, default: (gauge ? "gauge" : "counter", [])].lines.append("\(f){\(labels)} \(value)")
        }
        for c in runtime.clusters {
            let label = "envoy_cluster_name=\(jsonString(c.name))"
            for counter in ClusterCounter.allCases { add("envoy_cluster_" + counter.name, label, c.stats[counter], gauge: false) }
            for (name, value) in clusterGauges(c) { add("envoy_cluster_" + name, label, value, gauge: true) }
        }
        for (name, value) in runtime.listenerStats.counters {
            add("envoy_http_" + name, "envoy_http_conn_manager_prefix=\"ingress\"", value, gauge: name.hasSuffix("_active"))
        }
        for r in runtime.routeStats {
            for (name, value) in r.counters { add("envoy_route_" + name, "envoy_route_name=\(jsonString(r.name))", value, gauge: false) }
        }
        for h in allHistograms() {
            // Envoy's exposition: cumulative `_bucket{le}` over its default bounds (printed as
            // `%g`, so `1.8e+06`), then `+Inf`, `_sum` (ms) and `_count`.
            let counts = h.snapshot.cumulativeCounts(boundsMs: LatencyHistogram.envoyBucketsMs)
            let total = h.snapshot.count
            var lines: [String] = []
            for (bound, n) in zip(LatencyHistogram.envoyBucketsMs, counts) {
                lines.append("\(h.family)_bucket{\(h.labels),le=\"\(String(format: "%g", bound))\"} \(n)")
            }
            lines.append("\(h.family)_bucket{\(h.labels),le=\"+Inf\"} \(total)")
            lines.append("\(h.family)_sum{\(h.labels)} \(Self.envoyNumber(h.snapshot.sumMs))")
            lines.append("\(h.family)_count{\(h.labels)} \(total)")
            families[h.family, default: ("histogram", [])].lines += lines
        }
        add("envoy_server_config_version", "", runtime.snapshot.version, gauge: true)
        add("envoy_server_access_log_dropped", "", runtime.accessLogDropped, gauge: false)
        var out = ""
        for (family, entry) in families.sorted(by: { $0.key < $1.key }) {
            out += "# TYPE \(family) \(entry.type)\n"
            for line in entry.lines { out += line.replacingOccurrences(of: "{}", with: "") + "\n" }
        }
        return out
    }

    private func limitLines(_ c: ClusterSnapshot) -> [(String, Int)] {
        let r = c.cluster.resources
        return [
            ("max_connections", r.connections.max), ("max_pending_requests", r.pendingRequests.max),
            ("max_requests", r.requests.max), ("max_retries", r.retries.max),
        ]
    }

    private func healthFlags(_ h: Host) -> String { h.isEjected ? "/failed_outlier_check" : "healthy" }

    /// Envoy's `/clusters` text: `<cluster>::<host>::<stat>::<value>`.
    func clustersText() -> String {
        var out = ""
        for (name, c) in runtime.snapshot.clusters.sorted(by: { $0.key < $1.key }) {
            for (limit, value) in limitLines(c) { out += "\(name)::default_priority::\(limit)::\(value)\n" }
            out += "\(name)::default_priority::active_connections::\(c.cluster.resources.connections.current)\n"
            out += "\(name)::default_priority::active_requests::\(c.cluster.resources.requests.current)\n"
            out += "\(name)::default_priority::pending_requests::\(c.cluster.resources.pendingRequests.current)\n"
            out += "\(name)::outlier::ejections_active::\(c.cluster.outlier.ejectionsActive)\n"
            for h in c.hosts {
                let p = "\(name)::\(h.endpoint)::"
                out += p + "cx_active::\(h.connectionsActive)\n"
                out += p + "rq_active::\(h.requestsActive)\n"
                out += p + "rq_total::\(h.requestsTotal)\n"
                out += p + "rq_success::\(h.requestsSuccess)\n"
                out += p + "rq_error::\(h.requestsError)\n"
                out += p + "health_flags::\(healthFlags(h))\n"
                out += p + "times_ejected::\(c.cluster.outlier.timesEjected(h))\n"
                out += p + "weight::\(h.endpoint.weight)\n"
            }
        }
        return out
    }

    func clustersJSON() -> String {
        var items: [String] = []
        for (name, c) in runtime.snapshot.clusters.sorted(by: { $0.key < $1.key }) {
            let limits = limitLines(c).map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",")
            let r = c.cluster.resources
            let hosts = c.hosts.map { h in
                "{\"address\":\(jsonString(h.endpoint.address)),\"port\":\(h.endpoint.port),"
                    + "\"health\":\(jsonString(h.isEjected ? "ejected" : "healthy")),\"ejected\":\(h.isEjected),"
                    + "\"times_ejected\":\(c.cluster.outlier.timesEjected(h)),"
                    + "\"cx_active\":\(h.connectionsActive),\"rq_active\":\(h.requestsActive),"
                    + "\"rq_total\":\(h.requestsTotal),\"rq_success\":\(h.requestsSuccess),\"rq_error\":\(h.requestsError),"
                    + "\"weight\":\(h.endpoint.weight)}"
            }
            items.append(
                "{\"name\":\(jsonString(name)),\"circuit_breakers\":{\(limits)},"
                    + "\"active_connections\":\(r.connections.current),\"active_requests\":\(r.requests.current),"
                    + "\"pending_requests\":\(r.pendingRequests.current),"
                    + "\"ejections_active\":\(c.cluster.outlier.ejectionsActive),"
                    + "\"hosts\":[\(hosts.joined(separator: ","))]}")
        }
        return "{\"clusters\":[\(items.joined(separator: ","))]}\n"
    }

    func configDump() -> String {
        let snap = runtime.snapshot
        let error = runtime.lastReloadError.map(jsonString) ?? "null"
        return "{\"version\":\(snap.version),\"config_path\":\(runtime.configPath.map(jsonString) ?? "null"),"
            + "\"last_reload_error\":\(error),\"config\":\(ConfigJSON.encode(snap.config))}\n"
    }
}
