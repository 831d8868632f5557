import Foundation
import NIOPosix
import XCTest

/// VirtualService match kinds and per-route transforms (headers, rewrite, redirect,
/// directResponse, CORS) through the real `gateway` process, a real upstream, curl and a browser.
final class RouteTransformTests: XCTestCase {
    var up: TestUpstream!

    override func setUp() async throws {
        up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
    }

    override func tearDown() async throws {
        up.close()
    }

    /// A config with the upstream as host `svc` and these `http` routes.
    func config(_ http: String) -> String {
        #"{"serviceEntries":[{"host":"svc","endpoints":[{"address":"127.0.0.1","port":\#(up.port)}]}],"virtualServices":[{"http":[\#(http)]}]}"#
    }

    /// Which route answered: each route of the match tests names itself in `x-route`.
    func routed(_ gw: GatewayProcess, _ request: String) throws -> String? {
        let c = try RawConnection(port: gw.port, timeout: 5)
        c.send(request)
        let r = try XCTUnwrap(c.readResponse(), request)
        XCTAssertEqual(r.status, 200, request)
        return r.header("x-route")
    }

    func get(_ path: String, host: String = "gw", extra: String = "") -> String {
        "GET \(path) HTTP/1.1\r\nHost: \(host)\r\n\(extra)\r\n"
    }

    func named(_ name: String, _ match: String) -> String {
        #"{"name":"\#(name)",\#(match.isEmpty ? "" : #""match":[\#(match)],"#)"headers":{"response":{"set":{"x-route":"\#(name)"}}},"route":[{"destination":{"host":"svc"}}]}"#
    }

    // MARK: match

    func testMatchKinds() throws {
        let gw = try GatewayProcess(config: config([
            named("q-exact", #"{"uri":{"prefix":"/q"},"queryParams":{"v":{"exact":"1"}}}"#),
            named("q-present", #"{"uri":{"prefix":"/q"},"queryParams":{"flag":{"exact":""}}}"#),
            named("q-prefix", #"{"uri":{"prefix":"/q"},"queryParams":{"p":{"prefix":"ab"}}}"#),
            named("q-regex", #"{"uri":{"prefix":"/q"},"queryParams":{"r":{"regex":"[0-9]+"}}}"#),
            named("authority", #"{"uri":{"prefix":"/a"},"authority":{"exact":"shop.example:8080"}}"#),
            named("authority-prefix", #"{"uri":{"prefix":"/a"},"authority":{"prefix":"api."}}"#),
            named("https", #"{"uri":{"prefix":"/s"},"scheme":{"exact":"https"}}"#),
            named("http", #"{"uri":{"prefix":"/s"},"scheme":{"exact":"http"}}"#),
            named("without", #"{"uri":{"prefix":"/w"},"withoutHeaders":{"X-Debug":{"exact":"1"}}}"#),
            named("nocase", #"{"uri":{"prefix":"/CaSe"},"ignoreUriCase":true}"#),
            named("nocase-exact", #"{"uri":{"exact":"/Exact"},"ignoreUriCase":true}"#),
            named("or", #"{"name":"first","uri":{"exact":"/or1"}},{"name":"second","uri":{"prefix":"/or"},"method":{"exact":"DELETE"}}"#),
            named("fallback", ""),
        ].joined(separator: ",")))

        // queryParams: exact (percent-decoded, any position), presence, prefix, regex.
        XCTAssertEqual(try routed(gw, get("/q?v=1")), "q-exact")
        XCTAssertEqual(try routed(gw, get("/q?x=2&v=%31")), "q-exact")
        XCTAssertEqual(try routed(gw, get("/q?v=11")), "fallback")
        XCTAssertEqual(try routed(gw, get("/q?flag")), "q-present")
        XCTAssertEqual(try routed(gw, get("/q?flag=anything")), "q-present")
        XCTAssertEqual(try routed(gw, get("/q?flags=1")), "fallback")
        XCTAssertEqual(try routed(gw, get("/q?p=abc")), "q-prefix")
        XCTAssertEqual(try routed(gw, get("/q?p=xab")), "fallback")
        XCTAssertEqual(try routed(gw, get("/q?r=123")), "q-regex")
        XCTAssertEqual(try routed(gw, get("/q?r=12a")), "fallback", "a regex matches the whole value")
        // authority: the Host as sent, port included.
        XCTAssertEqual(try routed(gw, get("/a", host: "shop.example:8080")), "authority")
        XCTAssertEqual(try routed(gw, get("/a", host: "shop.example")), "fallback")
        XCTAssertEqual(try routed(gw, get("/a", host: "api.shop")), "authority-prefix")
        // scheme: the plaintext listener's requests are http.
        XCTAssertEqual(try routed(gw, get("/s")), "http")
        // withoutHeaders: an absent header or another value passes; the named value does not.
        XCTAssertEqual(try routed(gw, get("/w")), "without")
        XCTAssertEqual(try routed(gw, get("/w", extra: "x-debug: 2\r\n")), "without")
        XCTAssertEqual(try routed(gw, get("/w", extra: "X-Debug: 1\r\n")), "fallback")
        // ignoreUriCase, prefix and exact.
        XCTAssertEqual(try routed(gw, get("/case/x")), "nocase")
        XCTAssertEqual(try routed(gw, get("/CASE")), "nocase")
        XCTAssertEqual(try routed(gw, get("/EXACT?z=1")), "nocase-exact")
        XCTAssertEqual(try routed(gw, get("/exactly")), "fallback")
        // Several match entries are OR-ed; the conditions inside one are AND-ed.
        XCTAssertEqual(try routed(gw, get("/or1")), "or")
        XCTAssertEqual(try routed(gw, "DELETE /or2 HTTP/1.1\r\nHost: gw\r\n\r\n"), "or")
        XCTAssertEqual(try routed(gw, get("/or2")), "fallback")
    }

    /// `port` is the port the request came in on: known once the gateway has bound, so the
    /// route is installed by a reload.
    func testPortMatch() throws {
        let gw = try GatewayProcess(config: config(named("port", #"{"port":1}"#) + "," + named("fallback", "")))
        XCTAssertEqual(try routed(gw, get("/x")), "fallback")
        try gw.writeConfig(config(named("port", #"{"port":\#(gw.port)}"#) + "," + named("fallback", "")))
        XCTAssertEqual(gw.admin("/reload", method: "POST")?.status, 200)
        XCTAssertEqual(try routed(gw, get("/x")), "port")
    }

    /// A match's `name` shows in the access log as "<route>.<match>", the name Istio gives the Envoy route.
    func testMatchNameInTheAccessLog() throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("access-\(UUID().uuidString).log")
        defer { try? FileManager.default.removeItem(at: log) }
        let gw = try GatewayProcess(
            config: config(named("or", #"{"name":"first","uri":{"exact":"/or1"}},{"uri":{"prefix":"/or"},"method":{"exact":"DELETE"}}"#)
                + "," + named("plain", "")),
            extraArguments: ["--access-log", log.path])
        XCTAssertEqual(try routed(gw, get("/or1")), "or")
        XCTAssertEqual(try routed(gw, "DELETE /or2 HTTP/1.1\r\nHost: gw\r\n\r\n"), "or")
        XCTAssertEqual(try routed(gw, get("/x")), "plain")
        var lines: [String] = []
        for _ in 0..<40 where lines.count < 3 {
            usleep(100_000)
            lines = (try? String(contentsOf: log, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? []
        }
        XCTAssertEqual(lines.count, 3, lines.joined(separator: "\n"))
        // Each event loop writes its own lines: their order across connections is not kept.
        XCTAssertEqual(lines.map { AccessLogTests.fields(Substring($0))[10] }.sorted(),
                       [#""or""#, #""or.first""#, #""plain""#])
    }

    // MARK: headers

    func testHeaderSetAddRemoveBothWaysAndPerDestination() throws {
        let gw = try GatewayProcess(config: config(#"""
        {"match":[{"uri":{"prefix":"/h"}}],
         "headers":{"request":{"set":{"x-set":"route","X-Client":"replaced"},"add":{"x-add":"a2"},"remove":["x-remove-me"]},
                    "response":{"set":{"content-type":"text/x-gateway"},"add":{"x-resp-add":"r"}}},
         "route":[{"destination":{"host":"svc"},
                   "headers":{"request":{"set":{"x-dest":"d","x-set":"dest"}},"response":{"add":{"x-dest-resp":"dr"}}}}]},
        {"match":[{"uri":{"prefix":"/strip"}}],"headers":{"response":{"remove":["content-type"]}},
         "route":[{"destination":{"host":"svc"},"headers":{"request":{"set":{"Host":"dest.svc"}}}}]}
        """#))
        let c = try RawConnection(port: gw.port)
        c.send("GET /h HTTP/1.1\r\nHost: gw\r\nx-client: original\r\nx-remove-me: 1\r\nX-Add: a1\r\nx-keep: k\r\n\r\n")
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.status, 200)
        let seen = try XCTUnwrap(up.seenRequests.last)
        func values(_ name: String) -> [String] { seen.headers.filter { $0.0.lowercased() == name }.map(\.1) }
        XCTAssertEqual(values("x-set"), ["route"], "the route's set is applied after the destination's")
        XCTAssertEqual(values("x-client"), ["replaced"])
        XCTAssertEqual(values("x-add"), ["a1", "a2"], "add appends to the client's")
        XCTAssertEqual(values("x-remove-me"), [])
        XCTAssertEqual(values("x-dest"), ["d"])
        XCTAssertEqual(values("x-keep"), ["k"])
        XCTAssertEqual(values("host"), ["gw"])
        XCTAssertEqual(values("x-forwarded-for"), ["127.0.0.1"])
        XCTAssertEqual(values("x-request-id").count, 1)
        XCTAssertEqual(r.headers.filter { $0.0.lowercased() == "content-type" }.map(\.1), ["text/x-gateway"])
        XCTAssertEqual(r.header("x-resp-add"), "r")
        XCTAssertEqual(r.header("x-dest-resp"), "dr")
        XCTAssertEqual(r.body, #"{"ok":true}"#)
        // The same connection goes on: the edited head framed the body right.
        c.send("GET /strip HTTP/1.1\r\nHost: gw\r\n\r\n")
        let stripped = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(stripped.status, 200)
        XCTAssertNil(stripped.header("content-type"))
        XCTAssertEqual(stripped.body, #"{"ok":true}"#)
        XCTAssertEqual(up.seenRequests.last?.headers.filter { $0.0.lowercased() == "host" }.map(\.1), ["dest.svc"],
                       "a destination's Host set is its authority: one Host line")
    }

    // MARK: rewrite

    func testRewriteIsSeenByTheUpstream() throws {
        let gw = try GatewayProcess(config: config(#"""
        {"match":[{"uri":{"prefix":"/api/v1"}}],"rewrite":{"uri":"/v2"},"route":[{"destination":{"host":"svc"}}]},
        {"match":[{"uri":{"exact":"/old"}}],"rewrite":{"uri":"/new","authority":"internal.svc:9000"},"route":[{"destination":{"host":"svc"}}]},
        {"match":[{"uri":{"prefix":"/users"}}],"rewrite":{"uriRegexRewrite":{"match":"^/users/([0-9]+)/profile$","rewrite":"/profiles/\\1"}},
         "route":[{"destination":{"host":"svc"}}]},
        {"match":[{"headers":{"x-v":{"exact":"3"}}}],"rewrite":{"uri":"/v3/"},"headers":{"request":{"set":{"host":"v3.svc"}}},
         "route":[{"destination":{"host":"svc"}}]},
        {"route":[{"destination":{"host":"svc"}}]}
        """#))
        func upstreamSaw(_ request: String) throws -> (uri: String, host: String?, original: [String]) {
            let c = try RawConnection(port: gw.port, timeout: 5)
            c.send(request)
            XCTAssertEqual(c.readResponse()?.status, 200, request)
            let seen = try XCTUnwrap(up.seenRequests.last)
            return (seen.uri, seen.headers.first { $0.0.lowercased() == "host" }?.1,
                    seen.headers.filter { $0.0.lowercased() == "x-envoy-original-path" }.map(\.1))
        }
        let items = try upstreamSaw(get("/api/v1/items?x=1", extra: "x-envoy-original-path: /forged\r\n"))
        XCTAssertEqual(items.uri, "/v2/items?x=1", "the matched prefix is replaced")
        XCTAssertEqual(items.original, ["/api/v1/items?x=1"], "Envoy's x-envoy-original-path, the client's replaced")
        XCTAssertEqual(try upstreamSaw(get("/api/v1")).uri, "/v2")
        let old = try upstreamSaw(get("/old?q=1", host: "public.example"))
        XCTAssertEqual(old.uri, "/new?q=1", "an exact match's whole path is replaced, the query kept")
        XCTAssertEqual(old.host, "internal.svc:9000")
        XCTAssertEqual(try upstreamSaw(get("/users/42/profile?a=b")).uri, "/profiles/42?a=b")
        XCTAssertEqual(try upstreamSaw(get("/users/42")).uri, "/users/42", "no regex match: the path stays")
        // A match without uri is Istio's "/" prefix: "/x" becomes "/v3/x"; `host` in set is the authority.
        let v3 = try upstreamSaw(get("/x", extra: "x-v: 3\r\n"))
        XCTAssertEqual(v3.uri, "/v3/x")
        XCTAssertEqual(v3.host, "v3.svc")
        // HTTP/1.0 client: the rewritten request still goes upstream as HTTP/1.1 with a Host.
        XCTAssertEqual(try upstreamSaw("GET /api/v1/z HTTP/1.0\r\n\r\n").uri, "/v2/z")
        let plain = try upstreamSaw(get("/plain?k=v"))
        XCTAssertEqual(plain.uri, "/plain?k=v")
        XCTAssertEqual(plain.original, [], "no rewrite, no x-envoy-original-path")
    }

    // MARK: redirect and direct response

    func curl(_ args: [String]) throws -> String {
        String(decoding: try outputOf(URL(fileURLWithPath: "/usr/bin/env"), ["curl", "-s", "--max-time", "10"] + args),
               as: UTF8.self)
    }

    func testRedirectLocationAndCodeWithCurl() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else { throw XCTSkip("curl is not installed") }
        let gw = try GatewayProcess(config: config(#"""
        {"match":[{"uri":{"prefix":"/r1"}}],"redirect":{"uri":"/new","authority":"example.com"}},
        {"match":[{"uri":{"prefix":"/r2"}}],"redirect":{"scheme":"https","redirectCode":308}},
        {"match":[{"uri":{"prefix":"/r3"}}],"redirect":{"port":8443,"redirectCode":302}},
        {"match":[{"uri":{"prefix":"/r4"}}],"redirect":{"derivePort":"FROM_REQUEST_PORT","uri":"/four?fixed=1","redirectCode":307}},
        {"match":[{"uri":{"prefix":"/r5"}}],"redirect":{"uri":"/landing"},"headers":{"response":{"add":{"x-why":"moved"}}}},
        {"match":[{"uri":{"prefix":"/landing"}}],"route":[{"destination":{"host":"svc"}}]}
        """#))
        let base = "http://127.0.0.1:\(gw.port)"
        let format = "%{http_code} %{redirect_url}"
        XCTAssertEqual(try curl(["-o", "/dev/null", "-w", format, "\(base)/r1?q=1"]), "301 http://example.com/new?q=1")
        XCTAssertEqual(try curl(["-o", "/dev/null", "-w", format, "-H", "Host: shop.example:80", "\(base)/r2/x"]),
                       "308 https://shop.example/r2/x", "the http default port goes with the scheme change")
        XCTAssertEqual(try curl(["-o", "/dev/null", "-w", format, "-H", "Host: shop.example:1234", "\(base)/r3"]),
                       "302 http://shop.example:8443/r3")
        XCTAssertEqual(try curl(["-o", "/dev/null", "-w", format, "\(base)/r4?dropped=1"]),
                       "307 http://127.0.0.1:\(gw.port)/four?fixed=1", "the redirect's own query replaces the request's")
        let head = try curl(["-D", "-", "-o", "/dev/null", "\(base)/r5"])
        XCTAssertTrue(head.lowercased().contains("x-why: moved"), head)
        XCTAssertTrue(head.lowercased().contains("content-length: 0"), head)
        // curl follows it to a route the upstream serves.
        XCTAssertEqual(try curl(["-L", "-w", " %{http_code} %{num_redirects}", "\(base)/r5"]), #"{"ok":true} 200 1"#)
        XCTAssertEqual(up.seenRequests.map(\.uri), ["/landing"], "only the followed request reached the upstream")
    }

    func testDirectResponse() throws {
        let gw = try GatewayProcess(config: config(#"""
        {"match":[{"uri":{"exact":"/teapot"}}],"directResponse":{"status":418,"body":{"string":"short and stout"}}},
        {"match":[{"uri":{"exact":"/json"}}],"directResponse":{"status":200,"body":{"bytes":"eyJhIjoxfQ=="}},
         "headers":{"response":{"set":{"content-type":"application/json"}}}},
        {"match":[{"uri":{"exact":"/empty"}}],"directResponse":{"status":204}}
        """#))
        // A short receive timeout: the last check waits it out to see the connection stay open.
        let c = try RawConnection(port: gw.port, timeout: 1)
        c.send(get("/teapot"))
        let teapot = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(teapot.status, 418)
        XCTAssertEqual(teapot.body, "short and stout")
        XCTAssertEqual(teapot.header("content-type"), "text/plain")
        c.send(get("/json"))
        let json = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(json.body, #"{"a":1}"#)
        XCTAssertEqual(json.headers.filter { $0.0.lowercased() == "content-type" }.map(\.1), ["application/json"])
        c.send("HEAD /teapot HTTP/1.1\r\nHost: gw\r\n\r\n")
        let head = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(head.status, 418)
        XCTAssertEqual(head.body, "", "a HEAD answer has no body")
        c.send(get("/empty"))
        XCTAssertEqual(c.readResponse()?.status, 204)
        XCTAssertFalse(c.isClosedByPeer(), "keep-alive holds across the gateway's own answers")
        XCTAssertEqual(up.requests.load(ordering: .relaxed), 0)
    }

    // MARK: CORS

    func corsConfig(allowedOrigin: String, unmatched: String = "FORWARD") -> String {
        config(#"""
        {"match":[{"uri":{"prefix":"/cors"}}],
         "corsPolicy":{"allowOrigins":[{"exact":"\#(allowedOrigin)"},{"prefix":"http://pre."},{"regex":"http://re[0-9]+\\.example"}],
                       "allowMethods":["GET","POST"],"allowHeaders":["x-custom","content-type"],"exposeHeaders":["x-exposed"],
                       "maxAge":"1h","allowCredentials":true,"unmatchedPreflights":"\#(unmatched)"},
         "headers":{"response":{"add":{"x-exposed":"yes","x-hidden":"no"}}},
         "route":[{"destination":{"host":"svc"}}]}
        """#)
    }

    func testCORSPreflightAndActualResponses() throws {
        let gw = try GatewayProcess(config: corsConfig(allowedOrigin: "http://allowed.example"))
        func send(_ request: String) throws -> RawResponse {
            let c = try RawConnection(port: gw.port, timeout: 5)
            c.send(request)
            return try XCTUnwrap(c.readResponse(), request)
        }
        func preflight(_ origin: String) -> String {
            "OPTIONS /cors/data HTTP/1.1\r\nHost: gw\r\nOrigin: \(origin)\r\nAccess-Control-Request-Method: POST\r\n"
                + "Access-Control-Request-Headers: x-custom\r\n\r\n"
        }
        for origin in ["http://allowed.example", "http://pre.anything", "http://re42.example"] {
            let r = try send(preflight(origin))
            XCTAssertEqual(r.status, 200, origin)
            XCTAssertEqual(r.header("access-control-allow-origin"), origin)
            XCTAssertEqual(r.header("access-control-allow-methods"), "GET,POST")
            XCTAssertEqual(r.header("access-control-allow-headers"), "x-custom,content-type")
            XCTAssertEqual(r.header("access-control-max-age"), "3600")
            XCTAssertEqual(r.header("access-control-allow-credentials"), "true")
            XCTAssertNil(r.header("x-exposed"), "the CORS filter's answer carries no route headers")
        }
        XCTAssertEqual(up.requests.load(ordering: .relaxed), 0, "allowed preflights are answered by the gateway")

        // An origin that does not match: the preflight goes upstream (FORWARD), no CORS headers.
        let forwarded = try send(preflight("http://evil.example"))
        XCTAssertEqual(forwarded.status, 200)
        XCTAssertNil(forwarded.header("access-control-allow-origin"))
        XCTAssertEqual(up.seenRequests.last?.method, "OPTIONS")

        // Actual requests.
        let allowed = try send(get("/cors/data", extra: "Origin: http://allowed.example\r\n"))
        XCTAssertEqual(allowed.header("access-control-allow-origin"), "http://allowed.example")
        XCTAssertEqual(allowed.header("access-control-allow-credentials"), "true")
        XCTAssertEqual(allowed.header("access-control-expose-headers"), "x-exposed")
        XCTAssertEqual(allowed.body, #"{"ok":true}"#)
        for request in [get("/cors/data", extra: "Origin: http://evil.example\r\n"), get("/cors/data"),
                        get("/cors/data", extra: "Origin: http://allowed.example.evil\r\n")] {
            let r = try send(request)
            XCTAssertEqual(r.status, 200)
            XCTAssertNil(r.header("access-control-allow-origin"), request)
            XCTAssertNil(r.header("access-control-allow-credentials"), request)
            XCTAssertEqual(r.header("x-exposed"), "yes")
        }
        // OPTIONS without Access-Control-Request-Method is no preflight: it goes upstream.
        let before = up.requests.load(ordering: .relaxed)
        _ = try send("OPTIONS /cors/data HTTP/1.1\r\nHost: gw\r\nOrigin: http://allowed.example\r\n\r\n")
        XCTAssertEqual(up.requests.load(ordering: .relaxed), before + 1)
    }

    func testCORSUnmatchedPreflightIgnored() throws {
        let gw = try GatewayProcess(config: corsConfig(allowedOrigin: "http://allowed.example", unmatched: "IGNORE"))
        let c = try RawConnection(port: gw.port, timeout: 5)
        c.send("OPTIONS /cors HTTP/1.1\r\nHost: gw\r\nOrigin: http://evil.example\r\nAccess-Control-Request-Method: GET\r\n\r\n")
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.status, 200)
        XCTAssertNil(r.header("access-control-allow-origin"))
        XCTAssertEqual(up.requests.load(ordering: .relaxed), 0, "IGNORE: the gateway answers, nothing is forwarded")
    }

    /// A real browser's rules: a page on one origin `fetch`es from the gateway on another with a
    /// custom header (so Chromium sends a preflight first), and reads an exposed and a hidden
    /// header. The origin the policy allows succeeds; another origin's fetch fails.
    func testCORSWithChromium() throws {
        let chromium = try HeadlessChromium.executable(skipping: "the browser check of CORS")
        let allowedPort = try refusedPort()
        var otherPort = try refusedPort()
        while otherPort == allowedPort { otherPort = try refusedPort() }
        let gw = try GatewayProcess(config: corsConfig(allowedOrigin: "http://127.0.0.1:\(allowedPort)"))

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try """
        <!doctype html><html><body><pre id="out">pending</pre><script>
        fetch("http://127.0.0.1:\(gw.port)/cors/data", {method: "POST", headers: {"x-custom": "1", "content-type": "application/json"}, body: "{}"})
          .then(r => r.text().then(t => {
            document.getElementById("out").textContent =
              "RESULT ok " + r.status + " exposed=" + r.headers.get("x-exposed") + " hidden=" + r.headers.get("x-hidden") + " " + t;
          }))
          .catch(e => { document.getElementById("out").textContent = "RESULT failed " + e.name; });
        </script></body></html>
        """.write(to: dir.appendingPathComponent("page.html"), atomically: true, encoding: .utf8)

        func serve(_ port: Int) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir.path, String(port)]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            for _ in 0..<100 {
                if (try? RawConnection(port: port, timeout: 1)) != nil { break }
                usleep(50_000)
            }
            return p
        }
        let servers = [try serve(allowedPort), try serve(otherPort)]
        defer {
            for s in servers {
                s.terminate()
                s.waitUntilExit()
            }
        }

        func browse(_ port: Int) throws -> String {
            let dom = try HeadlessChromium.dumpDOM(chromium, url: "http://127.0.0.1:\(port)/page.html",
                                                   profile: dir.appendingPathComponent("profile-\(port)"))
            guard let r = dom.range(of: "RESULT") else { return "no result in: \(dom.prefix(500))" }
            return String(dom[r.lowerBound...].prefix { $0 != "<" })
        }

        let ok = try browse(allowedPort)
        XCTAssertEqual(ok, #"RESULT ok 200 exposed=yes hidden=null {"ok":true}"#,
                       "the allowed origin's fetch succeeds and sees only the exposed header")
        XCTAssertEqual(up.seenRequests.filter { $0.method == "OPTIONS" }.count, 0, "the gateway answered the preflight")
        XCTAssertEqual(up.seenRequests.filter { $0.method == "POST" }.count, 1)

        let refused = try browse(otherPort)
        XCTAssertEqual(refused, "RESULT failed TypeError", "another origin's fetch is blocked by the browser")
        XCTAssertEqual(up.seenRequests.filter { $0.method == "POST" }.count, 1,
                       "the refused origin's preflight (forwarded, without CORS headers) stopped the POST")
    }
}
