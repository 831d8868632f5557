import Foundation
import HTTP1Wire
import NIOCore
import XCTest
@testable import GatewayCore

/// VirtualService match fields and route transforms: what the loader reads, and what it refuses
/// with the JSON path.
final class ConfigLoaderRouteTests: XCTestCase {
    let se = #"{"host":"svc","endpoints":[{"address":"127.0.0.1","port":8082}]}"#

    func load(http: String) throws -> [RouteConfig] {
        try ConfigLoader.decode(Array(#"{"serviceEntries":[\#(se)],"virtualServices":[{"http":[\#(http)]}]}"#.utf8)).routes
    }

    func error(http: String) -> String { configErrorText { try load(http: http) } }

    let dest = #""route":[{"destination":{"host":"svc"}}]"#

    func testMatchFields() throws {
        let r = try load(http: #"""
        {"match":[{"name":"m1","uri":{"prefix":"/A"},"ignoreUriCase":true,"queryParams":{"v":{"exact":"1"},"flag":{"exact":""}},
                   "authority":{"prefix":"api."},"scheme":{"exact":"http"},"port":8080,"withoutHeaders":{"X-Debug":{"regex":".+"}}},
                  {"method":{"exact":"GET"}}],\#(dest)}
        """#)[0]
        XCTAssertEqual(r.matches.count, 2)
        let m = r.matches[0]
        XCTAssertEqual(m.name, "m1")
        XCTAssertTrue(m.ignoreUriCase)
        XCTAssertEqual(m.queryParams, ["v": .exact("1"), "flag": .exact("")])
        XCTAssertEqual(m.authority, .prefix("api."))
        XCTAssertEqual(m.scheme, .exact("http"))
        XCTAssertEqual(m.port, 8080)
        XCTAssertEqual(m.withoutHeaders, ["x-debug": .regex(".+")])
        XCTAssertTrue(r.matches[1].isBasic)
    }

    func testMatchRefusals() {
        let cases: [(String, String)] = [
            (#"{"sourceLabels":{"app":"x"}}"#, "virtualServices[0].http[0].match[0].sourceLabels: not supported by this gateway"),
            (#"{"sourceNamespace":"ns"}"#, "virtualServices[0].http[0].match[0].sourceNamespace: not supported by this gateway"),
            (#"{"gateways":["mesh"]}"#, "virtualServices[0].http[0].match[0].gateways: not supported by this gateway"),
            (#"{"statPrefix":"x"}"#, "virtualServices[0].http[0].match[0].statPrefix: not supported by this gateway"),
            (#"{"uri":{"regex":"/a.*"},"ignoreUriCase":true}"#, "virtualServices[0].http[0].match[0].ignoreUriCase: not supported with a uri regex"),
            (#"{"port":0}"#, "virtualServices[0].http[0].match[0].port: must be >= 1, found 0"),
            (#"{"queryParams":{"v":{"exact":"1","prefix":"2"}}}"#, "virtualServices[0].http[0].match[0].queryParams.v: needs exactly one of exact, prefix, regex"),
            (#"{"authority":{"regex":"(["}}"#, "virtualServices[0].http[0].match[0].authority.regex: invalid regex"),
        ]
        for (match, expected) in cases {
            let e = error(http: #"{"match":[\#(match)],\#(dest)}"#)
            XCTAssertTrue(e.hasPrefix(expected), "\(match): \(e)")
        }
    }

    func testHeaderOperations() throws {
        let r = try load(http: #"""
        {"headers":{"request":{"set":{"X-A":"1","Host":"up.example"},"add":{"x-b":"2"},"remove":["X-C"]},
                    "response":{"set":{"content-type":"text/plain"},"remove":["server"]}},
         "route":[{"destination":{"host":"svc"},"headers":{"request":{"add":{"x-d":"4"},"set":{":authority":"d.example"}}}}]}
        """#)[0]
        XCTAssertEqual(r.transforms.headers.request.set.map(\.name), ["x-a"])
        XCTAssertEqual(r.transforms.rewrite?.authority, "up.example", "Istio turns a Host set into the authority")
        XCTAssertEqual(r.transforms.headers.request.add.map(\.value), ["2"])
        XCTAssertEqual(r.transforms.headers.request.remove, ["x-c"])
        XCTAssertEqual(r.transforms.headers.response.remove, ["server"])
        XCTAssertEqual(r.destinations[0].headers.request.add.map(\.name), ["x-d"])
        XCTAssertEqual(r.destinations[0].headers.authority, "d.example", "a destination may set its own authority")
        XCTAssertEqual(r.destinations[0].headers.request.set.count, 0, "never a second Host line")
    }

    func testHeaderRefusals() {
        let cases: [(String, String)] = [
            (#"{"request":{"set":{"content-length":"1"}}}"#, "virtualServices[0].http[0].headers.request.set.content-length: header 'content-length' cannot be set"),
            (#"{"request":{"add":{"transfer-encoding":"chunked"}}}"#, "virtualServices[0].http[0].headers.request.add.transfer-encoding: header 'transfer-encoding' cannot be added"),
            (#"{"request":{"remove":["x-request-id"]}}"#, "virtualServices[0].http[0].headers.request.remove[0]: header 'x-request-id' cannot be removed"),
            (#"{"request":{"remove":["host"]}}"#, "virtualServices[0].http[0].headers.request.remove[0]: header 'host' cannot be removed"),
            (#"{"request":{"set":{"x-a":"1\r\nx-injected: 1"}}}"#, "virtualServices[0].http[0].headers.request.set.x-a: header values cannot hold control characters"),
            (#"{"request":{"set":{"bad name":"1"}}}"#, "virtualServices[0].http[0].headers.request.set.bad name: 'bad name' is not a valid header name"),
            (#"{"response":{"set":{":status":"200"}}}"#, "virtualServices[0].http[0].headers.response.set.:status: header ':status' cannot be set"),
            (#"{"response":{"add":{"connection":"close"}}}"#, "virtualServices[0].http[0].headers.response.add.connection: header 'connection' cannot be added"),
            (#"{"request":{"set":{"host":"a","Host":"b"}}}"#, "virtualServices[0].http[0].headers.request.set: sets the Host twice"),
            (#"{"request":{"set":{"host":"a b"}}}"#, "virtualServices[0].http[0].headers.request.set: 'a b' is not a valid authority"),
            (#"{"request":{"sett":{}}}"#, "virtualServices[0].http[0].headers.request.sett: unknown field 'sett'"),
        ]
        for (headers, expected) in cases {
            let e = error(http: #"{"headers":\#(headers),\#(dest)}"#)
            XCTAssertTrue(e.hasPrefix(expected), "\(headers): \(e)")
        }
        XCTAssertTrue(error(http: #"{"route":[{"destination":{"host":"svc"},"headers":{"response":{"set":{"content-length":"1"}}}}]}"#)
            .hasPrefix("virtualServices[0].http[0].route[0].headers.response.set.content-length: header 'content-length' cannot be set"))
    }

    func testRewrite() throws {
        let r = try load(http: #"""
        {"rewrite":{"uri":"/v2","authority":"a.example:81"},\#(dest)},
        {"rewrite":{"uriRegexRewrite":{"match":"^/a/(.*)$","rewrite":"/b/\\1"}},\#(dest)}
        """#)
        XCTAssertEqual(r[0].transforms.rewrite, RewriteConfig(uri: "/v2", authority: "a.example:81"))
        XCTAssertEqual(r[1].transforms.rewrite?.uriRegex?.match, "^/a/(.*)$")
        XCTAssertEqual(r[1].transforms.rewrite?.uriRegex?.rewrite, "/b/\\1")
        let cases: [(String, String)] = [
            (#"{"uri":"/a","uriRegexRewrite":{"match":"a","rewrite":"b"}}"#, "virtualServices[0].http[0].rewrite.uriRegexRewrite: rewrite has either uri or uriRegexRewrite, not both"),
            (#"{"uri":"/a b"}"#, "virtualServices[0].http[0].rewrite.uri: must be visible ASCII without spaces"),
            (#"{"authority":"a/b"}"#, "virtualServices[0].http[0].rewrite.authority: 'a/b' is not a valid authority"),
            (#"{"uriRegexRewrite":{"match":"([","rewrite":"b"}}"#, "virtualServices[0].http[0].rewrite.uriRegexRewrite.match: invalid regex"),
            (#"{"uriRegexRewrite":{"match":"a"}}"#, "virtualServices[0].http[0].rewrite.uriRegexRewrite.rewrite: required field is missing"),
        ]
        for (rewrite, expected) in cases {
            let e = error(http: #"{"rewrite":\#(rewrite),\#(dest)}"#)
            XCTAssertTrue(e.hasPrefix(expected), "\(rewrite): \(e)")
        }
    }

    func testRedirectAndDirectResponse() throws {
        let r = try load(http: #"""
        {"redirect":{"uri":"/new","authority":"b.example","scheme":"https","port":8443,"redirectCode":308}},
        {"redirect":{"derivePort":"FROM_REQUEST_PORT"}},
        {"directResponse":{"status":503,"body":{"string":"down"}}},
        {"directResponse":{"status":200,"body":{"bytes":"AAEC"}}}
        """#)
        XCTAssertEqual(r[0].transforms.redirect, RedirectConfig(uri: "/new", authority: "b.example", port: .number(8443), scheme: "https", redirectCode: 308))
        XCTAssertEqual(r[0].destinations, [], "a redirect route has no destination")
        XCTAssertEqual(r[1].transforms.redirect, RedirectConfig(port: .fromRequestPort, redirectCode: 301))
        XCTAssertEqual(r[2].transforms.directResponse, DirectResponseConfig(status: 503, body: Array("down".utf8)))
        XCTAssertEqual(r[3].transforms.directResponse?.body, [0, 1, 2])
        let cases: [(String, String)] = [
            (#"{"redirect":{"uri":"/x"},\#(dest)}"#, "virtualServices[0].http[0].route: not allowed with redirect"),
            (#"{"redirect":{"redirectCode":200}}"#, "virtualServices[0].http[0].redirect.redirectCode: must be 301, 302, 303, 307 or 308"),
            (#"{"redirect":{"port":1,"derivePort":"FROM_REQUEST_PORT"}}"#, "virtualServices[0].http[0].redirect.derivePort: redirect has either port or derivePort"),
            (#"{"redirect":{"derivePort":"NEAREST"}}"#, "virtualServices[0].http[0].redirect.derivePort: unknown derivePort 'NEAREST'"),
            (#"{"redirect":{"scheme":"ht tp"}}"#, "virtualServices[0].http[0].redirect.scheme: 'ht tp' is not a URI scheme"),
            (#"{"redirect":{},"directResponse":{"status":200}}"#, "virtualServices[0].http[0].directResponse: a route has either redirect or directResponse"),
            (#"{"redirect":{},"timeout":"1s"}"#, "virtualServices[0].http[0].timeout: not allowed with redirect"),
            (#"{"redirect":{},"rewrite":{"uri":"/a"}}"#, "virtualServices[0].http[0].rewrite: not allowed with redirect"),
            (#"{"directResponse":{"status":200},"retries":{"attempts":1}}"#, "virtualServices[0].http[0].retries: not allowed with directResponse"),
            (#"{"directResponse":{"status":200},"headers":{"request":{"set":{"a":"b"}}}}"#, "virtualServices[0].http[0].headers.request: not allowed with directResponse"),
            (#"{"directResponse":{"status":100}}"#, "virtualServices[0].http[0].directResponse.status: must be >= 200, found 100"),
            (#"{"directResponse":{"status":200,"body":{"string":"a","bytes":"YQ=="}}}"#, "virtualServices[0].http[0].directResponse.body: needs exactly one of string, bytes"),
            (#"{"directResponse":{"status":200,"body":{"bytes":"not base64!"}}}"#, "virtualServices[0].http[0].directResponse.body.bytes: expected base64"),
            (#"{"match":[{"uri":{"prefix":"/"}}]}"#, "virtualServices[0].http[0].route: required field is missing"),
        ]
        for (http, expected) in cases {
            let e = error(http: http)
            XCTAssertTrue(e.hasPrefix(expected), "\(http): \(e)")
        }
    }

    func testCORSPolicy() throws {
        let r = try load(http: #"""
        {"corsPolicy":{"allowOrigins":[{"exact":"https://a.example"},{"regex":"https://.*\\.b\\.example"}],"allowOrigin":["https://old.example"],
                       "allowMethods":["GET","POST"],"allowHeaders":["x-a"],"exposeHeaders":["x-b"],"maxAge":"24h",
                       "allowCredentials":true,"unmatchedPreflights":"IGNORE"},\#(dest)}
        """#)[0]
        let c = try XCTUnwrap(r.transforms.cors)
        XCTAssertEqual(c.allowOrigins, [.exact("https://a.example"), .regex("https://.*\\.b\\.example"), .exact("https://old.example")])
        XCTAssertEqual(c.allowMethods, ["GET", "POST"])
        XCTAssertEqual(c.maxAgeSeconds, 86400)
        XCTAssertTrue(c.allowCredentials)
        XCTAssertFalse(c.forwardNotMatchingPreflights)
        let cases: [(String, String)] = [
            (#"{"unmatchedPreflights":"DROP"}"#, "virtualServices[0].http[0].corsPolicy.unmatchedPreflights: unknown unmatchedPreflights 'DROP'"),
            (#"{"allowMethods":["GET,POST"]}"#, "virtualServices[0].http[0].corsPolicy.allowMethods[0]: one entry per item"),
            (#"{"allowHeaders":["x\na"]}"#, "virtualServices[0].http[0].corsPolicy.allowHeaders[0]: header values cannot hold control characters"),
            (#"{"allowOrigins":[{"glob":"*"}]}"#, "virtualServices[0].http[0].corsPolicy.allowOrigins[0].glob: unknown field 'glob'"),
            (#"{"allowPrivateNetwork":true}"#, "virtualServices[0].http[0].corsPolicy.allowPrivateNetwork: unknown field"),
        ]
        for (cors, expected) in cases {
            let e = error(http: #"{"corsPolicy":\#(cors),\#(dest)}"#)
            XCTAssertTrue(e.hasPrefix(expected), "\(cors): \(e)")
        }
    }

    /// `delegate` stays refused; a route the gateway answers itself has no request to mirror.
    func testDelegateRefusedAndNoMirrorOnLocalAnswers() {
        XCTAssertTrue(error(http: #"{"delegate":{"name":"x"},\#(dest)}"#).contains("not supported by this gateway"))
        XCTAssertEqual(error(http: #"{"mirror":{"host":"svc"},"directResponse":{"status":200}}"#),
                       "virtualServices[0].http[0].mirror: not allowed with directResponse: the gateway answers this route itself, with no upstream")
    }

    /// `gateway validate` says what each route does with the new fields.
    func testValidateExplainsMatchesAndTransforms() throws {
        let c = try ConfigLoader.decode(Array(#"""
        {"serviceEntries":[\#(se)],"virtualServices":[{"http":[
          {"name":"api","match":[{"name":"v1","uri":{"prefix":"/api"},"queryParams":{"debug":{"exact":""}},"scheme":{"exact":"https"}}],
           "rewrite":{"uri":"/v2"},"corsPolicy":{"allowOrigins":[{"exact":"https://app.example"}],"unmatchedPreflights":"IGNORE"},
           "route":[{"destination":{"host":"svc"},"headers":{"request":{"set":{"host":"svc.internal"}}}}]},
          {"name":"moved","redirect":{"uri":"/new","redirectCode":308,"derivePort":"FROM_REQUEST_PORT"}},
          {"name":"health","directResponse":{"status":200,"body":{"string":"ok"}}}]}]}
        """#.utf8))
        let text = ConfigReport.render(c)
        for expected in [
            "api: uri /api* and query debug present and scheme = https (never: the listener is http) and (match 'v1') -> svc (100%)",
            "CORS: origins = https://app.example; preflights from them answered by the gateway, others answered 200 without CORS headers",
            "path: the matched part becomes /v2", "to svc, Host sent upstream: svc.internal",
            "moved: any request -> answered by the gateway", "redirect 308 to http://<request host>:<listener port>/new",
            "health: any request -> answered by the gateway", "direct response 200, 2-byte body",
        ] {
            XCTAssertTrue(text.contains(expected), "missing '\(expected)' in:\n\(text)")
        }
        let dump = ConfigJSON.encode(c)
        XCTAssertTrue(dump.contains(#""redirect":{"redirectCode":308,"uri":"/new","derivePort":"FROM_REQUEST_PORT"}"#), dump)
        XCTAssertTrue(dump.contains(#""queryParams":{"debug":{"exact":""}}"#), dump)
    }

    // MARK: compiled pieces

    func testHeaderEditFoldsLevelsAsEnvoyDoes() throws {
        let dest = HeaderOperations(set: [("x-a", "dest"), ("x-b", "dest")], add: [("x-c", "dest")])
        let route = HeaderOperations(set: [("x-a", "route")], add: [("x-c", "route")], remove: ["x-b"])
        let edit = try XCTUnwrap(HeaderEdit([dest, route]))
        XCTAssertEqual(edit.pairs.map { "\($0.name)=\($0.value)" }, ["x-c=dest", "x-a=route", "x-c=route"])
        XCTAssertEqual(String(decoding: edit.lines, as: UTF8.self), "x-c: dest\r\nx-a: route\r\nx-c: route\r\n")
        XCTAssertTrue(edit.drop.contains("X-B"))
        XCTAssertTrue(edit.drop.contains("x-a"))
        XCTAssertFalse(edit.drop.contains("x-c"), "add keeps the client's lines")
        XCTAssertNil(HeaderEdit([HeaderOperations(), HeaderOperations()]))
    }

    func testRegexRewriteSubstitution() throws {
        let r = try RegexRewrite(match: "^/service/([^/]+)(/.*)$", rewrite: "\\2/instance/\\1")
        XCTAssertEqual(r.apply("/service/foo/v1/api"), "/v1/api/instance/foo")
        let all = try RegexRewrite(match: "o", rewrite: "0")
        XCTAssertEqual(all.apply("/foo/boo"), "/f00/b00", "every match is replaced, as RE2's GlobalReplace does")
    }

    func testRedirectLocation() throws {
        func location(_ c: RedirectConfig, _ request: String, port: Int = 8080) throws -> String? {
            let bytes = ByteBuffer(string: request)
            let head = try XCTUnwrap(try bytes.parseHead(.request).get())
            return bytes.withUnsafeReadableBytes { CompiledRedirect(c).location(head, $0, localPort: port) }
        }
        let req = "GET /p?q=1 HTTP/1.1\r\nHost: h.example:80\r\n\r\n"
        XCTAssertEqual(try location(RedirectConfig(), req), "http://h.example:80/p?q=1")
        XCTAssertEqual(try location(RedirectConfig(scheme: "https"), req), "https://h.example/p?q=1")
        XCTAssertEqual(try location(RedirectConfig(uri: "/n", port: .number(9)), req), "http://h.example:9/n?q=1")
        XCTAssertEqual(try location(RedirectConfig(uri: "n?x=2", authority: "o.example"), req), "http://o.example/n?x=2")
        XCTAssertEqual(try location(RedirectConfig(port: .fromRequestPort), "GET / HTTP/1.1\r\nHost: [::1]:5\r\n\r\n", port: 7),
                       "http://[::1]:7/")
        XCTAssertNil(try location(RedirectConfig(), "GET / HTTP/1.0\r\n\r\n"))
    }
}
