import Foundation
import Histogram

/// The three outputs of a run: siege's text block, one JSON object, a self-contained HTML page.
public enum Report {
    static func f(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }

    static func row(_ name: String, _ value: String, _ unit: String = "") -> String {
        let label = (name + ":").padding(toLength: 26, withPad: " ", startingAt: 0)
        let v = String(repeating: " ", count: max(0, 12 - value.count)) + value
        return label + v + (unit.isEmpty ? "" : " " + unit) + "\n"
    }

    /// siege's summary block, then counts per status code and latency percentiles.
    public static func text(_ s: Summary) -> String {
        var out = ""
        out += row("Transactions", "\(s.transactions)", "hits")
        out += row("Availability", f(s.availability), "%")
        out += row("Elapsed time", f(s.elapsed), "secs")
        out += row("Data transferred", f(s.megabytes), "MB")
        out += row("Response time", f(s.responseTime), "secs")
        out += row("Transaction rate", f(s.transactionRate), "trans/sec")
        out += row("Throughput", f(s.throughput), "MB/sec")
        out += row("Concurrency", f(s.concurrency))
        out += row("Successful transactions", "\(s.successful)")
        out += row("Failed transactions", "\(s.failed)")
        out += row("Longest transaction", f(s.longest))
        out += row("Shortest transaction", f(s.shortest))
        out += "\n"
        for (code, n) in s.statusCounts.sorted(by: { $0.key < $1.key }) {
            out += row("HTTP \(code)", "\(n)", "responses")
        }
        if !s.percentiles.isEmpty {
            out += "\n" + s.percentiles.map { "\($0.0) \(f($0.1, 3)) ms" }.joined(separator: "   ") + "\n"
        }
        return out
    }

    public static func json(_ s: Summary) -> String {
        var o: [String: Any] = [
            "transactions": s.transactions, "availability": round2(s.availability), "elapsed_time": round2(s.elapsed),
            "data_transferred_mb": round2(s.megabytes), "data_transferred": round2(s.megabytes), "response_time": s.responseTime,
            "transaction_rate": round2(s.transactionRate), "throughput_mb_per_sec": s.throughput, "throughput": s.throughput,
            "responses": s.responses, "socket_failures": s.socketFailures,
            "concurrency": round2(s.concurrency), "successful_transactions": s.successful,
            "failed_transactions": s.failed, "longest_transaction": s.longest, "shortest_transaction": s.shortest,
        ]
        o["status_codes"] = Dictionary(uniqueKeysWithValues: s.statusCounts.map { (String($0.key), $0.value) })
        o["latency_ms"] = Dictionary(uniqueKeysWithValues: s.percentiles.map { ($0.0, $0.1) })
        let data = try! JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    static func round2(_ v: Double) -> Double { (v * 100).rounded() / 100 }

    /// A page with no external fetches: inline SVG charts of the latency histogram and of
    /// responses per second by status class.
    public static func html(_ s: Summary, _ r: Recorder, title: String) -> String {
        // Latency histogram: logarithmic buckets from 50 µs, doubling.
        var bars: [(String, Int)] = []
        if r.histogram.totalCount > 0 {
            for b in r.histogram.logarithmicBucketValues(valueUnitsInFirstBucket: 50, logBase: 2) {
                bars.append((latencyLabel(b.value), Int(b.countAddedInThisIterationStep)))
            }
            while let last = bars.last, last.1 == 0 { bars.removeLast() }
        }
        let series = r.perSecond
        let rows = Report.text(s).split(separator: "\n").map { "<tr><td><pre>\(escape(String($0)))</pre></td></tr>" }.joined()
        return """
            <!doctype html><html><head><meta charset="utf-8"><title>\(escape(title))</title>
            <style>body{font-family:sans-serif;margin:2em;color:#222}pre{margin:0}svg{background:#fafafa;border:1px solid #ddd}
            .legend span{display:inline-block;margin-right:1em}</style></head><body>
            <h1>loadtest report</h1><p>\(escape(title))</p>
            <h2>Summary</h2><table id="summary">\(rows)</table>
            <h2>Latency histogram</h2>\(barChart(bars, id: "latency", xLabel: "latency (upper bound)", yLabel: "responses"))
            <h2>Throughput and status codes per second</h2>\(stackedChart(series))
            <p class="legend"><span style="color:#2a9d8f">■ 2xx</span><span style="color:#457b9d">■ 3xx</span>
            <span style="color:#e9c46a">■ 4xx</span><span style="color:#e63946">■ 5xx</span><span style="color:#555">■ socket failures</span></p>
            </body></html>
            """
    }

    static func latencyLabel(_ micros: UInt64) -> String {
        micros < 1000 ? "\(micros)µs" : micros < 1_000_000 ? "\(f(Double(micros) / 1000, 1))ms" : "\(f(Double(micros) / 1e6, 1))s"
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    static func barChart(_ bars: [(String, Int)], id: String, xLabel: String, yLabel: String) -> String {
        let w = 900.0, h = 300.0, pad = 50.0
        let maxV = Double(bars.map(\.1).max() ?? 1)
        let bw = bars.isEmpty ? 0 : (w - 2 * pad) / Double(bars.count)
        var svg = "<svg id=\"\(id)\" width=\"\(Int(w))\" height=\"\(Int(h + 60))\" xmlns=\"http://www.w3.org/2000/svg\">"
        for (i, b) in bars.enumerated() {
            let bh = maxV > 0 ? (h - pad) * Double(b.1) / maxV : 0
            let x = pad + Double(i) * bw
            svg += "<rect x=\"\(f(x))\" y=\"\(f(h - bh))\" width=\"\(f(max(1, bw - 2)))\" height=\"\(f(bh))\" fill=\"#457b9d\"><title>≤ \(b.0): \(b.1)</title></rect>"
            svg += "<text x=\"\(f(x + bw / 2))\" y=\"\(f(h + 14))\" font-size=\"10\" text-anchor=\"end\" transform=\"rotate(-45 \(f(x + bw / 2)) \(f(h + 14)))\">\(escape(b.0))</text>"
        }
        svg += "<text x=\"\(f(w / 2))\" y=\"\(f(h + 55))\" font-size=\"12\" text-anchor=\"middle\">\(xLabel)</text>"
        svg += "<text x=\"12\" y=\"\(f(h / 2))\" font-size=\"12\" transform=\"rotate(-90 12 \(f(h / 2)))\" text-anchor=\"middle\">\(yLabel) (max \(Int(maxV)))</text></svg>"
        return svg
    }

    static func stackedChart(_ series: [Recorder.SecondBucket]) -> String {
        let w = 900.0, h = 300.0, pad = 50.0
        let totals = series.map { $0.responses + $0.socketFailures }
        let maxV = Double(max(1, totals.max() ?? 1))
        let bw = series.isEmpty ? 0 : (w - 2 * pad) / Double(series.count)
        let colors = [(2, "#2a9d8f"), (3, "#457b9d"), (4, "#e9c46a"), (5, "#e63946")]
        var svg = "<svg id=\"throughput\" width=\"\(Int(w))\" height=\"\(Int(h + 40))\" xmlns=\"http://www.w3.org/2000/svg\">"
        for (i, b) in series.enumerated() {
            var y = h
            let x = pad + Double(i) * bw
            var parts = colors.map { ($0.1, b.classCount($0.0)) }
            parts.append(("#555", b.socketFailures))
            for (color, n) in parts where n > 0 {
                let bh = (h - pad) * Double(n) / maxV
                y -= bh
                svg += "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(max(1, bw - 1)))\" height=\"\(f(bh))\" fill=\"\(color)\"><title>second \(i + 1): \(n)</title></rect>"
            }
        }
        svg += "<text x=\"\(f(w / 2))\" y=\"\(f(h + 30))\" font-size=\"12\" text-anchor=\"middle\">elapsed seconds (\(series.count)); peak \(Int(maxV)) responses/s</text></svg>"
        return svg
    }
}
