import Foundation

/// `--sweep`: the same load run at one concurrency after another, to see where a circuit
/// breaker starts to queue and to shed.
public enum SweepPlan {
    /// Bounds against a typo turning into an hour of load: steps and users per step.
    public static let maxSteps = 200
    public static let maxUsers = 10_000

    /// `1..16` (every concurrency from 1 to 16), `1,2,4,8,16`, or both (`1..4,8,16`); the steps
    /// must increase, since the knee is the first step that sheds.
    public static func parse(_ text: String) throws -> [Int] {
        func number(_ s: Substring) throws -> Int {
            let t = s.trimmingCharacters(in: .whitespaces)
            guard let n = Int(t) else { throw OptionError("--sweep: '\(t)' is not a number (use e.g. 1..16 or 1,2,4,8)") }
            guard (1...maxUsers).contains(n) else { throw OptionError("--sweep: concurrency \(n) is outside 1...\(maxUsers)") }
            return n
        }
        guard !text.trimmingCharacters(in: .whitespaces).isEmpty else { throw OptionError("--sweep: no steps (use e.g. 1..16 or 1,2,4,8)") }
        var steps: [Int] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            if let dots = item.range(of: "..") {
                let a = try number(item[..<dots.lowerBound]), b = try number(item[dots.upperBound...])
                guard a <= b else { throw OptionError("--sweep: \(a)..\(b) runs backwards") }
                guard b - a < maxSteps else { throw OptionError("--sweep: at most \(maxSteps) steps") }
                steps += Array(a...b)
            } else {
                steps.append(try number(item))
            }
            guard steps.count <= maxSteps else { throw OptionError("--sweep: at most \(maxSteps) steps") }
        }
        for (a, b) in zip(steps, steps.dropFirst()) where b <= a {
            throw OptionError("--sweep: steps must increase (\(b) after \(a))")
        }
        return steps
    }
}

/// The gateway's cluster counters that explain shedding, as `/stats?format=json` names them
/// (`cluster.<name>.<counter>`).
public enum AdminCounters {
    public static let names = [
        "upstream_rq_pending_overflow", "upstream_cx_overflow", "outlier_detection.ejections_enforced_total",
        "upstream_rq_retry", "upstream_rq_retry_overflow",
    ]
    /// Column titles for the text table, in the order of `names`.
    public static let short = ["pend_ovf", "cx_ovf", "ejected", "retry", "retry_ovf"]

    /// Per cluster, the counters of `names` found in an Envoy-style `{"stats":[{"name":..,"value":..}]}`
    /// document (entries without a numeric value, such as histograms, are skipped).
    public static func parse(_ json: [UInt8]) throws -> [String: [String: Int]] {
        guard let root = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any],
            let stats = root["stats"] as? [[String: Any]]
        else { throw OptionError("the admin's /stats?format=json is not {\"stats\":[...]}") }
        var out: [String: [String: Int]] = [:]
        for entry in stats {
            guard let name = entry["name"] as? String, name.hasPrefix("cluster."), let value = entry["value"] as? Int else { continue }
            for counter in names where name.hasSuffix("." + counter) {
                // Cluster names may hold dots (host names): the counter is matched from the end.
                let cluster = String(name.dropFirst("cluster.".count).dropLast(counter.count + 1))
                guard !cluster.isEmpty else { continue }
                out[cluster, default: [:]][counter] = value
            }
        }
        return out
    }

    /// after − before, per cluster and counter (a counter that went down, as after a reload that
    /// re-created the cluster, counts from zero).
    public static func delta(_ before: [String: [String: Int]], _ after: [String: [String: Int]]) -> [String: [String: Int]] {
        var out: [String: [String: Int]] = [:]
        for (cluster, counters) in after {
            for (name, v) in counters {
                let b = before[cluster]?[name] ?? 0
                out[cluster, default: [:]][name] = v >= b ? v - b : v
            }
        }
        return out
    }

    /// Reads `/stats?format=json` from an admin base URL (`http://127.0.0.1:9901`).
    public static func fetch(admin: String, timeout: Double = 5) throws -> [String: [String: Int]] {
        var o = LoadOptions()
        let base = admin.hasSuffix("/") ? String(admin.dropLast()) : admin
        o.targets = [try Target.parseURL(base + "/stats?format=json")]
        o.timeout = .nanoseconds(Int64(timeout * 1e9))
        let answer = try SingleRequest.perform(o)
        guard answer.status == 200 else { throw OptionError("\(base)/stats?format=json answered \(answer.status)") }
        return try parse(answer.body)
    }
}

/// What a model of the breaker expects at each step, put beside the measurement. Filled by the
/// caller (loadtest reads it from the gateway's config with the gateway's own model).
public struct SweepPrediction: Sendable {
    public struct Step: Sendable {
        /// "served", "queued" or "shed".
        public var regime: String
        /// Successful requests per second expected (a range when it depends on the gateway's loops).
        public var rate: ClosedRange<Double>
        public init(regime: String, rate: ClosedRange<Double>) {
            self.regime = regime
            self.rate = rate
        }
    }
    public var cluster: String
    public var latencyMs: Double
    /// First concurrency that queues (a range when it depends on the gateway's event loops; nil: never).
    public var queueFrom: ClosedRange<Int>?
    /// First concurrency with 503s.
    public var knee: ClosedRange<Int>
    /// Requests per second at most (Little's law).
    public var ceiling: ClosedRange<Double>
    /// The model's explanation, line by line.
    public var explanation: [String]
    public var step: @Sendable (Int) -> Step

    public init(cluster: String, latencyMs: Double, queueFrom: ClosedRange<Int>?, knee: ClosedRange<Int>, ceiling: ClosedRange<Double>,
                explanation: [String], step: @escaping @Sendable (Int) -> Step) {
        self.cluster = cluster
        self.latencyMs = latencyMs
        self.queueFrom = queueFrom
        self.knee = knee
        self.ceiling = ceiling
        self.explanation = explanation
        self.step = step
    }
}

/// One step of a sweep: the run's summary and, with `--admin`, the counters' deltas.
public struct SweepStep: Sendable {
    public var concurrency: Int
    public var summary: Summary
    /// Per cluster, counter → increase during the step (nil: no admin, or it could not be read).
    public var counters: [String: [String: Int]]?

    public init(concurrency: Int, summary: Summary, counters: [String: [String: Int]]?) {
        self.concurrency = concurrency
        self.summary = summary
        self.counters = counters
    }

    public var shed: Int { summary.statusCounts[503] ?? 0 }

    func percentile(_ name: String) -> Double? { summary.percentiles.first { $0.0 == name }?.1 }

    /// One counter over the clusters shown: `cluster` alone, or the sum over all.
    func counter(_ name: String, cluster: String?) -> Int? {
        guard let counters else { return nil }
        if let cluster { return counters[cluster]?[name] ?? 0 }
        return counters.values.reduce(0) { $0 + ($1[name] ?? 0) }
    }
}

/// The sweep's outputs: a table, one JSON object, a self-contained HTML page.
public struct SweepReport: Sendable {
    public var title: String
    public var stepSeconds: Double?
    public var steps: [SweepStep]
    public var admin: String?
    /// The cluster whose counters are shown (nil: the sum over all clusters).
    public var cluster: String?
    public var prediction: SweepPrediction?

    public init(title: String, stepSeconds: Double?, steps: [SweepStep], admin: String?, cluster: String?, prediction: SweepPrediction?) {
        self.title = title
        self.stepSeconds = stepSeconds
        self.steps = steps
        self.admin = admin
        self.cluster = cluster
        self.prediction = prediction
    }

    /// The measured knee: the concurrency of the first step with a 503.
    public var knee: Int? { steps.first { $0.shed > 0 }?.concurrency }

    var codes: [Int] { Array(Set(steps.flatMap { $0.summary.statusCounts.keys })).sorted() }

    static func range(_ r: ClosedRange<Int>) -> String { r.lowerBound == r.upperBound ? "\(r.lowerBound)" : "\(r.lowerBound)..\(r.upperBound)" }

    static func range(_ r: ClosedRange<Double>) -> String {
        r.lowerBound == r.upperBound ? Report.f(r.lowerBound, 1) : "\(Report.f(r.lowerBound, 1))-\(Report.f(r.upperBound, 1))"
    }

    static func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }

    public func text() -> String {
        var out = "sweep \(title)"
        if let s = stepSeconds { out += ", \(Report.f(s, s == s.rounded() ? 0 : 2)) s per step" }
        if let admin { out += ", counters from \(admin)" + (cluster.map { " (cluster \($0))" } ?? " (all clusters)") }
        out += "\n\n"
        let codes = self.codes
        var header = ["users", "trans/s", "avail%", "p50_ms", "p99_ms"].enumerated().map { Self.pad($0.1, [5, 9, 7, 8, 8][$0.0]) }
        header += codes.map { Self.pad(String($0), 6) }
        let failures = steps.contains { $0.summary.socketFailures > 0 }
        if failures { header.append(Self.pad("sockfail", 8)) }
        if admin != nil { header += AdminCounters.short.map { Self.pad($0, $0.count + 1) } }
        if prediction != nil { header.append("  predicted") }
        out += header.joined(separator: " ") + "\n"
        for s in steps {
            let m = s.summary
            var row = [Self.pad("\(s.concurrency)", 5), Self.pad(Report.f(m.transactionRate, 1), 9), Self.pad(Report.f(m.availability), 7),
                       Self.pad(s.percentile("p50").map { Report.f($0) } ?? "-", 8), Self.pad(s.percentile("p99").map { Report.f($0) } ?? "-", 8)]
            row += codes.map { Self.pad(String(m.statusCounts[$0] ?? 0), 6) }
            if failures { row.append(Self.pad(String(m.socketFailures), 8)) }
            if admin != nil {
                for (name, short) in zip(AdminCounters.names, AdminCounters.short) {
                    row.append(Self.pad(s.counter(name, cluster: cluster).map(String.init) ?? "?", short.count + 1))
                }
            }
            if let p = prediction {
                let e = p.step(s.concurrency)
                row.append("  \(e.regime) \(Self.range(e.rate))/s")
            }
            out += row.joined(separator: " ") + "\n"
        }
        out += "\nknee (first step with 503s): " + (knee.map { "\($0) users" } ?? "none")
        if let p = prediction {
            out += "; predicted \(Self.range(p.knee)) for cluster \(p.cluster) at \(Report.f(p.latencyMs, 0)) ms"
            if let k = knee { out += p.knee.contains(k) ? " (agrees)" : " (DIFFERS)" }
            out += "\n"
            for line in p.explanation { out += "  \(line)\n" }
        } else {
            out += "\n"
        }
        return out
    }

    public func json() -> String {
        var o: [String: Any] = ["title": title, "knee": knee.map { $0 as Any } ?? NSNull()]
        if let s = stepSeconds { o["step_seconds"] = s }
        if let admin { o["admin"] = admin }
        if let cluster { o["cluster"] = cluster }
        o["steps"] = steps.map { s -> [String: Any] in
            let m = s.summary
            var d: [String: Any] = [
                "concurrency": s.concurrency, "transactions": m.transactions, "responses": m.responses,
                "transaction_rate": Report.round2(m.transactionRate), "availability": Report.round2(m.availability),
                "elapsed_time": Report.round2(m.elapsed), "failed_transactions": m.failed, "socket_failures": m.socketFailures,
                "status_codes": Dictionary(uniqueKeysWithValues: m.statusCounts.map { (String($0.key), $0.value) }),
                "latency_ms": Dictionary(uniqueKeysWithValues: m.percentiles.map { ($0.0, $0.1) }),
            ]
            if let c = s.counters { d["counters"] = c }
            if let p = prediction {
                let e = p.step(s.concurrency)
                d["predicted"] = ["regime": e.regime, "rate": [Report.round2(e.rate.lowerBound), Report.round2(e.rate.upperBound)]] as [String: Any]
            }
            return d
        }
        if let p = prediction {
            var d: [String: Any] = [
                "cluster": p.cluster, "latency_ms": p.latencyMs, "knee": [p.knee.lowerBound, p.knee.upperBound],
                "ceiling_rps": [Report.round2(p.ceiling.lowerBound), Report.round2(p.ceiling.upperBound)], "explanation": p.explanation,
            ]
            d["queue_from"] = p.queueFrom.map { [$0.lowerBound, $0.upperBound] } ?? NSNull()
            o["prediction"] = d
        }
        let data = try! JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    // MARK: HTML

    /// A page with no external fetches: line charts against concurrency (rate, availability,
    /// latency), stacked bars of status codes and of the gateway's counters per step, with the
    /// predicted queue point and knee and the measured knee marked.
    public func html() -> String {
        let xs = steps.map(\.concurrency)
        var markers: [(Int, String, String)] = []
        if let p = prediction {
            if let q = p.queueFrom { markers.append((q.lowerBound, "#e9c46a", "predicted queue")) }
            markers.append((p.knee.lowerBound, "#e76f51", "predicted knee"))
        }
        if let k = knee { markers.append((k, "#e63946", "measured knee")) }
        var rateSeries: [(String, String, [Double])] = [("transactions/s", "#2a9d8f", steps.map(\.summary.transactionRate))]
        if let p = prediction {
            rateSeries.append(("predicted 2xx/s", "#999", xs.map { p.step($0).rate.lowerBound }))
            if xs.contains(where: { p.step($0).rate.upperBound != p.step($0).rate.lowerBound }) {
                rateSeries.append(("predicted 2xx/s, every loop's first connection", "#ccc", xs.map { p.step($0).rate.upperBound }))
            }
        }
        let codes = self.codes
        let palette = ["#2a9d8f", "#457b9d", "#e9c46a", "#e63946", "#8d5a97", "#f4a261", "#264653", "#a8dadc"]
        let statusBars = codes.enumerated().map { i, code -> (String, String, [Double]) in
            let color = code == 503 ? "#e63946" : code / 100 == 2 ? "#2a9d8f" : palette[(i + 2) % palette.count]
            return ("HTTP \(code)", color, steps.map { Double($0.summary.statusCounts[code] ?? 0) })
        } + (steps.contains { $0.summary.socketFailures > 0 } ? [("socket failures", "#555", steps.map { Double($0.summary.socketFailures) })] : [])
        var counterSection = ""
        if admin != nil {
            let bars = AdminCounters.names.enumerated().map { i, name in
                (name, palette[(i + 3) % palette.count], steps.map { Double($0.counter(name, cluster: cluster) ?? 0) })
            }
            counterSection = "<h2>Gateway counters per step\(cluster.map { " (cluster \(Report.escape($0)))" } ?? "")</h2>"
                + Self.barChart(id: "counters", xs: xs, series: bars, markers: markers, yLabel: "increase during the step") + Self.legend(bars)
        }
        var predictionSection = ""
        if let p = prediction {
            predictionSection = "<h2>Prediction (cluster \(Report.escape(p.cluster)), \(Report.f(p.latencyMs, 0)) ms)</h2><ul id=\"prediction\">"
                + p.explanation.map { "<li>\(Report.escape($0))</li>" }.joined() + "</ul>"
        }
        let latency = [("p50 ms", "#457b9d", steps.map { $0.percentile("p50") ?? 0 }), ("p99 ms", "#e76f51", steps.map { $0.percentile("p99") ?? 0 })]
        return """
            <!doctype html><html><head><meta charset="utf-8"><title>\(Report.escape("sweep " + title))</title>
            <style>body{font-family:sans-serif;margin:2em;color:#222}pre{margin:0}svg{background:#fafafa;border:1px solid #ddd}
            .legend span{display:inline-block;margin-right:1em}</style></head><body>
            <h1>loadtest sweep</h1><p>\(Report.escape(title))</p>
            <p id="knee">knee (first step with 503s): \(knee.map { "\($0) users" } ?? "none")\(prediction.map { "; predicted \(Self.range($0.knee))" } ?? "")</p>
            <h2>Table</h2><pre id="table" style="white-space:pre-wrap">\(Report.escape(text()))</pre>
            \(predictionSection)
            <h2>Rate against concurrency</h2>\(Self.lineChart(id: "rate", xs: xs, series: rateSeries, markers: markers, yLabel: "per second"))\(Self.legend(rateSeries))
            <h2>Availability against concurrency</h2>\(Self.lineChart(id: "availability", xs: xs, series: [("availability %", "#2a9d8f", steps.map(\.summary.availability))], markers: markers, yLabel: "%", fixedMax: 100))
            <h2>Latency against concurrency</h2>\(Self.lineChart(id: "latency", xs: xs, series: latency, markers: markers, yLabel: "ms"))\(Self.legend(latency))
            <h2>Responses per status code</h2>\(Self.barChart(id: "status", xs: xs, series: statusBars, markers: markers, yLabel: "responses"))\(Self.legend(statusBars))
            \(counterSection)
            <p class="legend">\(markers.map { "<span style=\"color:\($0.1)\">┊ \($0.2) (\($0.0))</span>" }.joined())</p>
            </body></html>
            """
    }

    static func legend(_ series: [(String, String, [Double])]) -> String {
        "<p class=\"legend\">" + series.map { "<span style=\"color:\($0.1)\">■ \(Report.escape($0.0))</span>" }.joined() + "</p>"
    }

    static let w = 900.0, h = 300.0, pad = 60.0

    /// The x position of step `i` of `n` (steps are evenly spaced, whatever their concurrency).
    static func x(_ i: Int, _ n: Int) -> Double { n <= 1 ? w / 2 : pad + (w - 2 * pad) * Double(i) / Double(n - 1) }

    static func axes(_ id: String, xs: [Int], maxV: Double, yLabel: String, markers: [(Int, String, String)]) -> String {
        let f = Report.f
        var svg = "<svg id=\"\(id)\" width=\"\(Int(w))\" height=\"\(Int(h + 50))\" xmlns=\"http://www.w3.org/2000/svg\">"
        svg += "<line x1=\"\(f(pad, 2))\" y1=\"\(f(h, 2))\" x2=\"\(f(w - pad / 2, 2))\" y2=\"\(f(h, 2))\" stroke=\"#888\"/>"
        for (i, c) in xs.enumerated() {
            svg += "<text x=\"\(f(x(i, xs.count), 2))\" y=\"\(f(h + 16, 2))\" font-size=\"11\" text-anchor=\"middle\">\(c)</text>"
        }
        for (c, color, label) in markers {
            guard let i = xs.firstIndex(of: c) else { continue }
            let mx = x(i, xs.count)
            svg += "<line x1=\"\(f(mx, 2))\" y1=\"20\" x2=\"\(f(mx, 2))\" y2=\"\(f(h, 2))\" stroke=\"\(color)\" stroke-dasharray=\"4 3\"><title>\(label) \(c)</title></line>"
        }
        svg += "<text x=\"\(f(w / 2, 2))\" y=\"\(f(h + 40, 2))\" font-size=\"12\" text-anchor=\"middle\">concurrent users</text>"
        svg += "<text x=\"14\" y=\"\(f(h / 2, 2))\" font-size=\"12\" transform=\"rotate(-90 14 \(f(h / 2, 2)))\" text-anchor=\"middle\">\(Report.escape(yLabel)) (max \(f(maxV, 1)))</text>"
        return svg
    }

    static func lineChart(id: String, xs: [Int], series: [(String, String, [Double])], markers: [(Int, String, String)], yLabel: String,
                          fixedMax: Double? = nil) -> String {
        let f = Report.f
        let maxV = fixedMax ?? max(1, series.flatMap(\.2).max() ?? 1)
        var svg = axes(id, xs: xs, maxV: maxV, yLabel: yLabel, markers: markers)
        for (name, color, values) in series {
            let points = values.enumerated().map { "\(f(x($0.0, values.count), 2)),\(f(h - (h - 30) * min($0.1, maxV) / maxV, 2))" }
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points.joined(separator: " "))\"/>"
            for (i, v) in values.enumerated() {
                svg += "<circle cx=\"\(f(x(i, values.count), 2))\" cy=\"\(f(h - (h - 30) * min(v, maxV) / maxV, 2))\" r=\"3\" fill=\"\(color)\"><title>\(Report.escape(name)) at \(xs[i]): \(f(v, 2))</title></circle>"
            }
        }
        return svg + "</svg>"
    }

    static func barChart(id: String, xs: [Int], series: [(String, String, [Double])], markers: [(Int, String, String)], yLabel: String) -> String {
        let f = Report.f
        let totals = xs.indices.map { i in series.reduce(0) { $0 + $1.2[i] } }
        let maxV = max(1, totals.max() ?? 1)
        var svg = axes(id, xs: xs, maxV: maxV, yLabel: yLabel, markers: markers)
        let bw = min(40, (w - 2 * pad) / Double(max(1, xs.count)) * 0.6)
        for i in xs.indices {
            var y = h
            for (name, color, values) in series where values[i] > 0 {
                let bh = (h - 30) * values[i] / maxV
                y -= bh
                svg += "<rect x=\"\(f(x(i, xs.count) - bw / 2, 2))\" y=\"\(f(y, 2))\" width=\"\(f(bw, 2))\" height=\"\(f(bh, 2))\" fill=\"\(color)\"><title>\(Report.escape(name)) at \(xs[i]): \(Int(values[i]))</title></rect>"
            }
        }
        return svg + "</svg>"
    }
}
