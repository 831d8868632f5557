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

    func statsText() -> String {
        allStats().map { "\($0.name): \($0.value)\n" }.joined()
    }

    func statsJSON() -> String {
        let items = allStats().map { "{\"name\":\(jsonString($0.name)),\"value\":\($0.value)}" }
        return "{\"stats\":[\(items.joined(separator: ","))]}\n"
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
