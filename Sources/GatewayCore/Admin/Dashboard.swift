/// The admin port's live dashboard (`GET /` from a browser), after HAProxy's stats page and
/// Envoy's admin home: one self-contained page (inline CSS and script, no fetch but the admin's
/// own JSON) that reads `/stats?format=json&histogram_buckets=detailed` and
/// `/clusters?format=json` every `?refresh=` seconds (default 1), and `/config_dump` only when
/// the reload counters move. Rates and p50/p99 come from the differences between reads, kept in
/// the browser in a ring bounded to the last minute (at most 601 reads), so the gateway keeps no
/// state for it and the request path pays nothing.
///
/// Every number it prints from a counter or gauge carries `data-stat="<the /stats name>"`
/// (limits `data-limit`, endpoints `data-host`), so a test can read it against `/stats`.
enum Dashboard {
    /// The page may run its inline script and style and fetch from its own origin, nothing else;
    /// no other site may frame it.
    static let headers: [(String, String)] = [
        ("content-security-policy",
         "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
            + "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("vary", "accept"),
    ]

    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <title>gateway admin</title>
        <link rel="icon" href="data:,">
        <style>
        body { font: 13px/1.35 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2430; background: #f3f5f8; }
        header { background: #22303f; color: #e8edf3; padding: 8px 16px; display: flex; flex-wrap: wrap; gap: 6px 22px; align-items: baseline; }
        header h1 { font-size: 16px; margin: 0; }
        header a { color: #9cc3ff; margin-right: 10px; }
        #status.down { color: #ff9b9b; font-weight: 600; }
        #reload-error { background: #fde2e2; color: #8b1111; padding: 6px 16px; border-bottom: 1px solid #f3b2b2; white-space: pre-wrap; }
        main { padding: 10px 16px; display: grid; grid-template-columns: repeat(auto-fill, minmax(600px, 1fr)); gap: 12px; }
        section { background: #fff; border: 1px solid #d5dbe3; border-radius: 4px; padding: 8px 10px; }
        section.wide { grid-column: 1 / -1; }
        h2 { font-size: 14px; margin: 0 0 6px; display: flex; gap: 10px; align-items: baseline; }
        h2 .badge { font-size: 11px; font-weight: 600; padding: 1px 6px; border-radius: 8px; background: #e6ebf1; color: #39475a; }
        h2 .badge.alert { background: #d93025; color: #fff; }
        table { border-collapse: collapse; width: 100%; }
        th { text-align: left; font-weight: 600; color: #5b6878; font-size: 11px; padding: 2px 6px 2px 0; white-space: nowrap; }
        td { padding: 2px 6px 2px 0; white-space: nowrap; vertical-align: middle; }
        td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
        .bar { position: relative; width: 200px; height: 14px; background: #e9edf2; border-radius: 2px; overflow: hidden; }
        .bar .fill { position: absolute; left: 0; top: 0; bottom: 0; background: #3d9a50; }
        .bar .fill.warn { background: #e3a008; }
        .bar .fill.full { background: #d93025; }
        .bar .peak { position: absolute; top: 0; bottom: 0; width: 2px; background: #22303f; opacity: .55; }
        .bar.unlimited { background: repeating-linear-gradient(45deg, #eef1f5, #eef1f5 4px, #e2e7ee 4px, #e2e7ee 8px); }
        svg.spark { display: block; }
        .legend span { margin-right: 8px; font-size: 11px; }
        .c2 { color: #2e8540; } .c4 { color: #c77700; } .c5 { color: #d93025; } .cp50 { color: #2b6cb0; } .cp99 { color: #805ad5; }
        .hot { color: #d93025; font-weight: 600; }
        tr.ejected td { background: #fde2e2; color: #8b1111; font-weight: 600; }
        .muted { color: #8792a2; }
        .grid2 { display: grid; grid-template-columns: auto auto; gap: 4px 16px; align-items: start; }
        </style>
        </head>
        <body>
        <header>
          <h1>gateway admin</h1>
          <span>config version <b data-stat="server.config_version">–</b></span>
          <span>reloads <b data-stat="server.reload_success">–</b> ok,
                <b data-stat="server.reload_failure">–</b> failed</span>
          <span id="status" data-samples="0">loading…</span>
          <span><a href="stats">/stats</a><a href="stats?format=json">json</a><a href="stats/prometheus">prometheus</a><a href="clusters">/clusters</a><a href="config_dump">/config_dump</a><a href="ready">/ready</a></span>
        </header>
        <div id="reload-error" hidden></div>
        <main id="main"></main>
        <script>
        "use strict";
        // Refresh period in seconds (HAProxy's "stats refresh"), from ?refresh=, 0.2 to 60.
        const REFRESH_S = Math.min(60, Math.max(0.2, Number(new URLSearchParams(location.search).get("refresh")) || 1));
        const WINDOW_MS = 60000;
        // The ring: reads spanning at most the last minute, and never more than this many.
        const MAX_SAMPLES = Math.min(601, Math.ceil(60 / REFRESH_S) + 1);
        const UNLIMITED = 4294967295;  // Istio's default for every circuit-breaker limit
        const ring = [];
        let reloadsSeen = null, lastReloadError = null, statusText = "";

        function el(tag, attrs, ...children) {
          const e = document.createElement(tag);
          for (const [k, v] of Object.entries(attrs || {})) {
            if (v === null || v === undefined || v === false) continue;
            if (k === "class") e.className = v; else e.setAttribute(k, v === true ? "" : String(v));
          }
          for (const c of children.flat(Infinity)) {
            if (c === null || c === undefined) continue;
            e.append(c instanceof Node ? c : document.createTextNode(String(c)));
          }
          return e;
        }

        async function getJSON(path) {
          const abort = new AbortController();
          const timer = setTimeout(() => abort.abort(), 5000);
          try {
            const r = await fetch(path, {signal: abort.signal, cache: "no-store"});
            if (!r.ok) throw new Error(path + ": HTTP " + r.status);
            return await r.json();
          } finally { clearTimeout(timer); }
        }

        // One read of the admin: counters and gauges by name, histograms' bins by name.
        function parseStats(json) {
          const values = new Map(), hist = new Map(), sinceStart = new Map();
          for (const item of json.stats) {
            if ("name" in item) { values.set(item.name, item.value); continue; }
            const supported = (item.histograms && item.histograms.supported_percentiles) || [];
            for (const h of (item.histograms && item.histograms.details) || []) {
              hist.set(h.name, h.totals.map(b => [b.lower_bound, b.width, b.count]));
              const at = p => (h.percentiles[supported.indexOf(p)] || {}).cumulative;
              sinceStart.set(h.name, [at(50), at(99)].map(v => typeof v === "number" ? v : null));
            }
          }
          return {values, hist, sinceStart};
        }

        // The bins recorded between two reads (a newer minus an older total).
        function binsBetween(older, newer) {
          if (!newer) return [];
          const before = new Map((older || []).map(b => [b[0], b[2]]));
          return newer.map(b => [b[0], b[1], b[2] - (before.get(b[0]) || 0)]).filter(b => b[2] > 0);
        }

        // Quantiles as the gateway (and libcircllhist's hist_approx_quantile) interpolate them.
        function quantiles(bins, qs) {
          const total = bins.reduce((s, b) => s + b[2], 0);
          if (total === 0) return qs.map(() => null);
          return qs.map(q => {
            const target = total * q;
            let lower = 0;
            for (let i = 0; i < bins.length; i++) {
              const [left, width, n] = bins[i];
              const upper = lower + n;
              if (upper >= target || i === bins.length - 1) {
                if (lower === target) return left;
                if (upper === target) return left + width;
                return left + (target - lower) / (upper - lower) * width;
              }
              lower = upper;
            }
            return null;
          });
        }

        const stat = (s, name) => s.values.get(name);
        // Per second between consecutive reads, for each counter; null before there are two.
        function rateSeries(names) {
          const out = [];
          for (let i = 1; i < ring.length; i++) {
            const dt = (ring[i].t - ring[i - 1].t) / 1000;
            let sum = 0;
            for (const n of names) sum += Math.max(0, (stat(ring[i], n) || 0) - (stat(ring[i - 1], n) || 0));
            out.push(dt > 0 ? sum / dt : null);
          }
          return out;
        }
        const lastOf = series => series.length ? series[series.length - 1] : null;
        function quantileSeries(name) {
          const p50 = [], p99 = [];
          for (let i = 1; i < ring.length; i++) {
            const [a, b] = quantiles(binsBetween(ring[i - 1].hist.get(name), ring[i].hist.get(name)), [0.5, 0.99]);
            p50.push(a); p99.push(b);
          }
          return {p50, p99};
        }
        // p50/p99 over the whole ring (the last minute, or since the page opened); with nothing
        // recorded in it, the gateway's own since its start.
        function windowQuantiles(name) {
          const newest = ring[ring.length - 1];
          const [p50, p99] = ring.length < 2 ? [null, null]
            : quantiles(binsBetween(ring[0].hist.get(name), newest.hist.get(name)), [0.5, 0.99]);
          if (p50 !== null) return {p50, p99, span: "last " + Math.round(Math.min(WINDOW_MS, newest.t - ring[0].t) / 1000) + " s"};
          const [c50, c99] = newest.sinceStart.get(name) || [null, null];
          return {p50: c50, p99: c99, span: c50 === null ? "none recorded" : "since start"};
        }

        function fmtRate(v) {
          if (v === null || v === undefined) return "–";
          return v >= 100 ? Math.round(v).toString() : v.toFixed(1);
        }
        function fmtMs(v) {
          if (v === null || v === undefined) return "–";
          return (v >= 100 ? Math.round(v).toString() : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + " ms";
        }

        const COLORS = {c2: "#2e8540", c4: "#c77700", c5: "#d93025", cp50: "#2b6cb0", cp99: "#805ad5", crq: "#39475a", cov: "#d93025"};
        // A sparkline of one or more series over the ring's intervals (nulls are gaps), oldest at
        // the left, newest at the right; `unit` prints the top of the scale in the corner.
        function spark(seriesByClass, opts) {
          const w = (opts && opts.width) || 150, h = (opts && opts.height) || 16, unit = opts && opts.unit;
          const slots = Math.max(2, ...Object.values(seriesByClass).map(s => s.length));
          let max = 0;
          for (const s of Object.values(seriesByClass)) for (const v of s) if (v !== null && v > max) max = v;
          const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
          svg.setAttribute("class", "spark");
          svg.setAttribute("width", w); svg.setAttribute("height", h);
          svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
          const bg = document.createElementNS(svg.namespaceURI, "rect");
          bg.setAttribute("width", w); bg.setAttribute("height", h); bg.setAttribute("fill", "#f6f8fa");
          svg.append(bg);
          if (unit && max > 0) {
            const label = document.createElementNS(svg.namespaceURI, "text");
            label.setAttribute("x", 3); label.setAttribute("y", 10); label.setAttribute("font-size", "9"); label.setAttribute("fill", "#8792a2");
            label.textContent = (unit === "ms" ? fmtMs(max) : fmtRate(max) + unit);
            svg.append(label);
          }
          for (const [cls, s] of Object.entries(seriesByClass)) {
            const x0 = slots - s.length;
            let pts = [];
            const flush = () => {
              // A lone value is a rate over the interval before it: one step wide.
              if (pts.length === 1) pts.unshift([Math.max(1, pts[0][0] - (w - 2) / (slots - 1)).toFixed(1), pts[0][1]]);
              if (pts.length > 1) {
                const line = document.createElementNS(svg.namespaceURI, "polyline");
                line.setAttribute("points", pts.map(p => p.join(",")).join(" "));
                line.setAttribute("fill", "none"); line.setAttribute("stroke", max > 0 ? COLORS[cls] || "#333" : "#c5ccd6");
                line.setAttribute("stroke-width", "1.5");
                svg.append(line);
              }
              pts = [];
            };
            s.forEach((v, i) => {
              if (v === null) { flush(); return; }
              const x = ((x0 + i) / (slots - 1)) * (w - 2) + 1;
              const y = h - 2 - (max > 0 ? v / max : 0) * (h - 4);
              pts.push([x.toFixed(1), y.toFixed(1)]);
            });
            flush();
            svg.setAttribute("data-" + cls, s.map(v => v === null ? "" : +v.toFixed(3)).join(" "));
          }
          svg.setAttribute("data-points", Math.max(0, ...Object.values(seriesByClass).map(s => s.length)));
          const title = document.createElementNS(svg.namespaceURI, "title");
          title.textContent = "top of the scale " + fmtRate(max) + " over the last " + Math.round(slots * REFRESH_S) + " s";
          svg.append(title);
          return svg;
        }

        function num(name, value, cls) {
          return el("b", {"data-stat": name, class: cls}, value === undefined ? "–" : value);
        }

        // A gauge against its limit, with the highest value the ring saw.
        function limitRow(label, setting, statName, limitKey, current, limit) {
          let peak = 0;
          for (const s of ring) peak = Math.max(peak, stat(s, statName) || 0);
          const unlimited = limit === undefined || limit >= UNLIMITED;
          const bar = el("div", {class: "bar" + (unlimited ? " unlimited" : ""), title: unlimited ? "no limit" : `${current} of ${limit}`});
          if (!unlimited) {
            const share = limit > 0 ? Math.min(1, current / limit) : 1;
            bar.append(el("div", {class: "fill" + (current >= limit ? " full" : share >= 0.7 ? " warn" : ""), style: `width:${(share * 100).toFixed(1)}%`}));
            if (peak > 0) bar.append(el("div", {class: "peak", style: `left:calc(${(Math.min(1, peak / Math.max(1, limit)) * 100).toFixed(1)}% - 2px)`}));
          }
          return el("tr", {},
            el("td", {}, label, " ", el("span", {class: "muted"}, setting)),
            el("td", {class: "num"}, num(statName, current, !unlimited && current >= limit ? "hot" : null)),
            el("td", {class: "num"}, unlimited ? el("span", {class: "muted", "data-limit": limitKey}, "no limit")
                                                : el("span", {"data-limit": limitKey}, "of " + limit)),
            el("td", {}, bar),
            el("td", {class: "num muted"}, "peak " + peak));
        }

        function rateRow(label, names, cls) {
          const series = rateSeries(names);
          const now = lastOf(series);
          return el("tr", {},
            el("td", {}, label),
            el("td", {class: "num"}, el("span", {class: now > 0 && cls === "cov" ? "hot" : null}, fmtRate(now)), el("span", {class: "muted"}, "/s")),
            el("td", {}, spark({[cls]: series})),
            el("td", {class: "num"}, names.map((n, i) => [i ? " + " : "", num(n, stat(ring[ring.length - 1], n))])),
            el("td", {class: "muted"}, "total"));
        }

        function statusBlock(prefix, rqName, histName) {
          const classes = {c2: [prefix + "_2xx"], c4: [prefix + "_4xx"], c5: [prefix + "_5xx"]};
          const series = {};
          for (const [cls, names] of Object.entries(classes)) series[cls] = rateSeries(names);
          const q = quantileSeries(histName);
          const {p50, p99, span} = windowQuantiles(histName);
          const newest = ring[ring.length - 1];
          return el("div", {class: "grid2"},
            el("div", {},
              el("div", {class: "legend"},
                el("span", {class: "c2"}, "2xx ", fmtRate(lastOf(series.c2)), "/s"),
                el("span", {class: "c4"}, "4xx ", fmtRate(lastOf(series.c4)), "/s"),
                el("span", {class: "c5"}, "5xx ", fmtRate(lastOf(series.c5)), "/s")),
              spark(series, {width: 260, height: 40, unit: "/s"}),
              el("div", {class: "legend muted"}, "totals ",
                num(prefix + "_2xx", stat(newest, prefix + "_2xx"), "c2"), " / ",
                num(prefix + "_4xx", stat(newest, prefix + "_4xx"), "c4"), " / ",
                num(prefix + "_5xx", stat(newest, prefix + "_5xx"), "c5"), " of ",
                num(rqName, stat(newest, rqName)))),
            el("div", {},
              el("div", {class: "legend"},
                el("span", {class: "cp50"}, "p50 ", fmtMs(p50)),
                el("span", {class: "cp99"}, "p99 ", fmtMs(p99)),
                el("span", {class: "muted"}, span)),
              spark({cp50: q.p50, cp99: q.p99}, {width: 260, height: 40, unit: "ms"}),
              el("div", {class: "legend muted"}, histName)));
        }

        function clusterSection(c) {
          const p = "cluster." + c.name + ".";
          const s = ring[ring.length - 1];
          const cb = c.circuit_breakers || {};
          const ejected = c.hosts.filter(h => h.ejected).length;
          const open = ["cx_open", "rq_pending_open", "rq_open", "rq_retry_open"].filter(k => stat(s, p + "circuit_breakers.default." + k) === 1);
          const section = el("section", {"data-cluster": c.name},
            el("h2", {}, c.name,
              el("span", {class: "badge" + (ejected ? " alert" : "")}, "ejected ",
                 el("b", {"data-stat": p + "outlier_detection.ejections_active"}, stat(s, p + "outlier_detection.ejections_active")), " of " + c.hosts.length),
              open.length ? el("span", {class: "badge alert"}, "open: " + open.join(", ")) : null),
            el("table", {},
              limitRow("active requests", "http2MaxRequests", p + "upstream_rq_active", "max_requests", stat(s, p + "upstream_rq_active"), cb.max_requests),
              limitRow("pending requests", "http1MaxPendingRequests", p + "upstream_rq_pending_active", "max_pending_requests", stat(s, p + "upstream_rq_pending_active"), cb.max_pending_requests),
              limitRow("active connections", "maxConnections", p + "upstream_cx_active", "max_connections", stat(s, p + "upstream_cx_active"), cb.max_connections),
              limitRow("active retries", "maxRetries", p + "upstream_rq_retry_active", "max_retries", stat(s, p + "upstream_rq_retry_active"), cb.max_retries)),
            el("table", {},
              rateRow("requests", [p + "upstream_rq_total"], "crq"),
              rateRow("pending overflow (503 UO)", [p + "upstream_rq_pending_overflow"], "cov"),
              rateRow("connection overflow", [p + "upstream_cx_overflow"], "cov"),
              rateRow("retries", [p + "upstream_rq_retry"], "crq"),
              rateRow("retry overflow", [p + "upstream_rq_retry_overflow"], "cov"),
              rateRow("ejections", [p + "outlier_detection.ejections_enforced_total"], "cov"),
              rateRow("timeouts", [p + "upstream_rq_timeout"], "cov")),
            statusBlock(p + "upstream_rq", p + "upstream_rq_total", p + "upstream_rq_time"),
            hostTable(c));
          return section;
        }

        function hostTable(c) {
          const rows = c.hosts.map(h => {
            const id = h.address + ":" + h.port;
            let rate = null;
            const prev = ring.length > 1 ? ring[ring.length - 2].hosts.get(c.name + "/" + id) : undefined;
            if (prev !== undefined) {
              const dt = (ring[ring.length - 1].t - ring[ring.length - 2].t) / 1000;
              rate = dt > 0 ? Math.max(0, h.rq_total - prev) / dt : null;
            }
            return el("tr", {class: h.ejected ? "ejected" : null, "data-host": id},
              el("td", {}, id), el("td", {}, h.ejected ? "EJECTED" : h.health),
              el("td", {class: "num"}, h.cx_active), el("td", {class: "num"}, h.rq_active),
              el("td", {class: "num"}, fmtRate(rate)), el("td", {class: "num", "data-host-stat": "rq_total"}, h.rq_total),
              el("td", {class: "num"}, h.rq_error), el("td", {class: "num"}, h.times_ejected), el("td", {class: "num"}, h.weight));
          });
          return el("table", {class: "hosts"},
            el("tr", {}, ["endpoint", "health", "cx", "rq active", "rq/s", "rq total", "errors", "times ejected", "weight"]
              .map((t, i) => el("th", {class: i > 1 ? "num" : null}, t))),
            rows);
        }

        function ingressSection() {
          const p = "http.ingress.";
          const s = ring[ring.length - 1];
          return el("section", {class: "wide", "data-listener": "ingress"},
            el("h2", {}, "listener (ingress)",
              el("span", {class: "badge"}, "connections ", num(p + "downstream_cx_active", stat(s, p + "downstream_cx_active"))),
              el("span", {class: "badge"}, "requests in flight ", num(p + "downstream_rq_active", stat(s, p + "downstream_rq_active"))),
              el("span", {class: "badge"}, "requests/s ", fmtRate(lastOf(rateSeries([p + "downstream_rq_total"]))))),
            statusBlock(p + "downstream_rq", p + "downstream_rq_total", p + "downstream_rq_time"),
            routeTable());
        }

        function routeTable() {
          const s = ring[ring.length - 1];
          const names = [...s.values.keys()].filter(n => n.startsWith("route.") && n.endsWith(".upstream_rq_total"))
            .map(n => n.slice("route.".length, -".upstream_rq_total".length)).sort();
          if (!names.length) return null;
          return el("table", {},
            el("tr", {}, ["route", "rq/s", "2xx/s", "4xx/s", "5xx/s", "rate limited/s", "p50", "p99", "requests"]
              .map((t, i) => el("th", {class: i ? "num" : null}, t))),
            names.map(r => {
              const p = "route." + r + ".";
              const {p50, p99} = windowQuantiles(p + "upstream_rq_time");
              const perSec = counters => fmtRate(lastOf(rateSeries(counters)));
              return el("tr", {"data-route": r},
                el("td", {}, r), el("td", {class: "num"}, perSec([p + "upstream_rq_total"])),
                el("td", {class: "num c2"}, perSec([p + "upstream_rq_2xx"])), el("td", {class: "num c4"}, perSec([p + "upstream_rq_4xx"])),
                el("td", {class: "num c5"}, perSec([p + "upstream_rq_5xx"])), el("td", {class: "num"}, perSec([p + "local_rate_limit.rate_limited"])),
                el("td", {class: "num"}, fmtMs(p50)), el("td", {class: "num"}, fmtMs(p99)),
                el("td", {class: "num"}, num(p + "upstream_rq_total", stat(s, p + "upstream_rq_total"))));
            }));
        }

        function render(clusters) {
          const s = ring[ring.length - 1];
          for (const b of document.querySelectorAll("header [data-stat]")) {
            const v = stat(s, b.getAttribute("data-stat"));
            b.textContent = v === undefined ? "–" : v;
          }
          const err = document.getElementById("reload-error");
          err.hidden = lastReloadError === null;
          err.textContent = lastReloadError === null ? "" : "last reload refused (the previous config keeps serving): " + lastReloadError;
          const main = document.getElementById("main");
          main.replaceChildren(ingressSection(), ...clusters.map(clusterSection));
        }

        async function refresh() {
          try {
            const [statsJSON, clustersJSON] = await Promise.all([
              getJSON("stats?format=json&histogram_buckets=detailed"), getJSON("clusters?format=json")]);
            const sample = parseStats(statsJSON);
            sample.t = Date.now();
            sample.hosts = new Map();
            for (const c of clustersJSON.clusters) for (const h of c.hosts) sample.hosts.set(c.name + "/" + h.address + ":" + h.port, h.rq_total);
            // A counter that went down: the gateway restarted (or a reload rebuilt what counted); the
            // older reads no longer subtract from these.
            const prev = ring[ring.length - 1];
            if (prev && [...prev.values].some(([n, v]) => sample.values.has(n) && sample.values.get(n) < v && !/_active$|_open$|remaining|config_version/.test(n))) ring.length = 0;
            ring.push(sample);
            while (ring.length > MAX_SAMPLES || (ring.length > 2 && sample.t - ring[1].t >= WINDOW_MS)) ring.shift();
            const reloads = (stat(sample, "server.reload_success") || 0) + "/" + (stat(sample, "server.reload_failure") || 0);
            if (reloads !== reloadsSeen) {
              // The config dump can be large: read it only when a reload happened.
              const dump = await getJSON("config_dump");
              lastReloadError = dump.last_reload_error;
              reloadsSeen = reloads;
            }
            statusText = "updated " + new Date(sample.t).toLocaleTimeString() + " · every " + REFRESH_S + " s";
            const status = document.getElementById("status");
            status.className = ""; status.textContent = statusText;
            status.setAttribute("data-samples", ring.length);
            render(clustersJSON.clusters);
          } catch (e) {
            const status = document.getElementById("status");
            status.className = "down";
            status.textContent = "admin unreachable: " + e.message + (statusText ? " (last " + statusText + ")" : "");
          }
          setTimeout(refresh, REFRESH_S * 1000);
        }
        refresh();
        </script>
        </body>
        </html>

        """#
}
