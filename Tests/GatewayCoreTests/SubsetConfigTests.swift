import Foundation
import NIOCore
import XCTest
@testable import GatewayCore

/// DestinationRule subsets, ports and WorkloadEntries: which cluster each destination becomes,
/// with which endpoints and which policy (Istio's layering), and the errors that name their path.
final class SubsetConfigTests: XCTestCase, ConfigLoading {
    /// Two ports, three labelled endpoints (one with its own port for `admin`).
    let reviews = #"""
        {"hosts":["reviews"],"ports":[{"name":"http","number":9080},{"name":"admin","number":9090,"targetPort":19090}],
         "endpoints":[{"address":"10.0.0.1","labels":{"app":"reviews","version":"v1"}},
                      {"address":"10.0.0.2","labels":{"app":"reviews","version":"v2"},"ports":{"admin":29090}},
                      {"address":"10.0.0.3","labels":{"app":"reviews","version":"v3"},"ports":{"http":8080}}]}
        """#

    func rule(_ body: String) -> String { #"{"host":"reviews",\#(body)}"# }

    func config(rule body: String, destination: String) -> String {
        #"{"serviceEntries":[\#(reviews)],"destinationRules":[\#(rule(body))],"virtualServices":[{"http":[{"route":[{"destination":\#(destination)}]}]}]}"#
    }

    func testSubsetsSelectEndpointsByLabelsAndAreNamedAsEnvoyNamesThem() throws {
        let c = try load(config(
            rule: #""subsets":[{"name":"v1","labels":{"version":"v1"}},{"name":"v2","labels":{"version":"v2"}},{"name":"all"}]"#,
            destination: #"{"host":"reviews","subset":"v2"}"#))
        XCTAssertEqual(Set(c.hosts.keys), ["reviews", "outbound|9080|v1|reviews", "outbound|9080|v2|reviews", "outbound|9080|all|reviews"])
        XCTAssertEqual(c.routes[0].destinations, [WeightedDestination(host: "outbound|9080|v2|reviews", service: "reviews", subset: "v2")])
        XCTAssertEqual(c.hosts["outbound|9080|v2|reviews"]?.endpoints.map(\.description), ["10.0.0.2:9080"])
        XCTAssertEqual(c.hosts["outbound|9080|v2|reviews"]?.service, "reviews")
        XCTAssertEqual(c.hosts["outbound|9080|v1|reviews"]?.endpoints.map(\.description), ["10.0.0.1:9080"])
        // No labels: every endpoint, each on its port named `http` (else the service port).
        XCTAssertEqual(c.hosts["outbound|9080|all|reviews"]?.endpoints.map(\.description), ["10.0.0.1:9080", "10.0.0.2:9080", "10.0.0.3:8080"])
        XCTAssertEqual(c.hosts["reviews"]?.endpoints.count, 3)
    }

    func testDestinationPortPicksTheEndpointsPortForIt() throws {
        let c = try load(config(rule: #""subsets":[{"name":"v2","labels":{"version":"v2"}}]"#,
                                destination: #"{"host":"reviews","port":{"number":9090}}"#))
        XCTAssertEqual(c.routes[0].destinations[0].host, "outbound|9090||reviews")
        // Named `admin` port where the endpoint has one, else the service's targetPort.
        XCTAssertEqual(c.hosts["outbound|9090||reviews"]?.endpoints.map(\.description), ["10.0.0.1:19090", "10.0.0.2:29090", "10.0.0.3:19090"])
        let d = try load(config(rule: #""subsets":[{"name":"v2","labels":{"version":"v2"}}]"#,
                                destination: #"{"host":"reviews","port":{"number":9080}}"#))
        XCTAssertEqual(d.routes[0].destinations[0].host, "reviews", "the default port is the host's own cluster")
    }

    /// Istio's merge: the rule's policy, its port-level settings (which replace every part, absent
    /// parts back to defaults), the subset's parts (each replacing the rule's whole), the subset's
    /// port-level settings.
    func testPolicyLayering() throws {
        let body = #"""
            "trafficPolicy":{"connectionPool":{"tcp":{"maxConnections":10},"http":{"http1MaxPendingRequests":5}},
                             "loadBalancer":{"simple":"RANDOM"},"outlierDetection":{"consecutive5xxErrors":7},
                             "portLevelSettings":[{"port":{"number":9090},"connectionPool":{"tcp":{"maxConnections":90}}}]},
            "subsets":[{"name":"v1","labels":{"version":"v1"},
                        "trafficPolicy":{"connectionPool":{"http":{"http1MaxPendingRequests":1}}}},
                       {"name":"v2","labels":{"version":"v2"},
                        "trafficPolicy":{"portLevelSettings":[{"port":{"number":9080},"loadBalancer":{"simple":"LEAST_REQUEST"}}]}}]
            """#
        let c = try load(config(rule: body, destination: #"{"host":"reviews","port":{"number":9090},"subset":"v1"}"#))
        let host = c.hosts["reviews"]!.trafficPolicy
        XCTAssertEqual(host.connectionPool.maxConnections, 10)
        XCTAssertEqual(host.loadBalancer, .random)

        let v1 = c.hosts["outbound|9080|v1|reviews"]!.trafficPolicy
        // The subset's connectionPool replaces the rule's whole: maxConnections back to default.
        XCTAssertEqual(v1.connectionPool.http1MaxPendingRequests, 1)
        XCTAssertEqual(v1.connectionPool.maxConnections, ConnectionPoolSettings.unlimited)
        XCTAssertEqual(v1.loadBalancer, .random, "parts the subset does not set come from the rule")
        XCTAssertEqual(v1.outlierDetection?.consecutive5xxErrors, 7)

        let v1admin = c.hosts["outbound|9090|v1|reviews"]!.trafficPolicy
        // The rule's port 9090 settings replace every part (outlier detection and balancer back to
        // defaults), then the subset's connectionPool replaces that.
        XCTAssertEqual(v1admin.connectionPool.http1MaxPendingRequests, 1)
        XCTAssertNil(v1admin.outlierDetection)
        XCTAssertEqual(v1admin.loadBalancer, .roundRobin)

        let v2 = c.hosts["outbound|9080|v2|reviews"]!.trafficPolicy
        XCTAssertEqual(v2.loadBalancer, .leastRequest)
        XCTAssertEqual(v2.connectionPool, ConnectionPoolSettings(), "a port-level entry does not inherit")
        XCTAssertNil(v2.outlierDetection)
    }

    /// Istio's `loadBalancer` is one part: a subset's replaces the rule's balancer, hash and slow
    /// start together; `retryBudget` is a part of its own.
    func testLoadBalancerAndRetryBudgetLayering() throws {
        let body = #"""
            "trafficPolicy":{"loadBalancer":{"consistentHash":{"httpHeaderName":"x-user"}},"retryBudget":{"percent":50}},
            "subsets":[{"name":"v1","labels":{"version":"v1"},"trafficPolicy":{"loadBalancer":{"simple":"LEAST_REQUEST"}}},
                       {"name":"v2","labels":{"version":"v2"}}]
            """#
        let c = try load(config(rule: body, destination: #"{"host":"reviews","subset":"v1"}"#))
        XCTAssertNotNil(c.hosts["reviews"]?.trafficPolicy.consistentHash)
        let v1 = c.hosts["outbound|9080|v1|reviews"]!.trafficPolicy
        XCTAssertEqual(v1.loadBalancer, .leastRequest)
        XCTAssertNil(v1.consistentHash, "the subset's loadBalancer replaced the rule's hash")
        XCTAssertEqual(v1.retryBudget, c.hosts["reviews"]?.trafficPolicy.retryBudget)
        XCTAssertNotNil(v1.retryBudget)
        XCTAssertEqual(c.hosts["outbound|9080|v2|reviews"]?.trafficPolicy.consistentHash, c.hosts["reviews"]?.trafficPolicy.consistentHash)
    }

    func testWorkloadEntriesSelectedByLabels() throws {
        let c = try load(#"""
            {"workloadEntries":[
               {"apiVersion":"networking.istio.io/v1","kind":"WorkloadEntry","metadata":{"name":"vm-1"},
                "spec":{"address":"10.1.0.1","labels":{"app":"ratings","version":"v1"}}},
               {"address":"10.1.0.2","labels":{"app":"ratings","version":"v2"},"ports":{"http":7070}},
               {"address":"10.1.0.3","labels":{"app":"details"}}],
             "serviceEntries":[{"hosts":["ratings"],"ports":[{"name":"http","number":9080}],"workloadSelector":{"labels":{"app":"ratings"}}}],
             "destinationRules":[{"host":"ratings","subsets":[{"name":"v2","labels":{"version":"v2"}}]}],
             "virtualServices":[{"http":[{"route":[{"destination":{"host":"ratings","subset":"v2"}}]}]}]}
            """#)
        XCTAssertEqual(c.hosts["ratings"]?.endpoints.map(\.description), ["10.1.0.1:9080", "10.1.0.2:7070"])
        XCTAssertEqual(c.hosts["outbound|9080|v2|ratings"]?.endpoints.map(\.description), ["10.1.0.2:7070"])
    }

    func testKubectlListLoadsAsItIsPrinted() throws {
        let c = try load(#"""
            {"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":""},"items":[
              {"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"reviews","namespace":"default","generation":1},
               "spec":{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews","subset":"v1"}}]}]}},
              {"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews"},
               "spec":{"host":"reviews","subsets":[{"name":"v1","labels":{"version":"v1"}}]},"status":{}},
              {"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"reviews"},"spec":\#(reviews)}]}
            """#)
        XCTAssertEqual(c.routes.map(\.name), ["reviews.0"])
        XCTAssertEqual(c.routes[0].destinations[0].host, "outbound|9080|v1|reviews")
        XCTAssertEqual(c.listener.port, 8080)
        XCTAssertEqual(error(#"{"kind":"List","items":[{"apiVersion":"networking.istio.io/v1","kind":"Sidecar","spec":{}}]}"#),
                       "items[0].kind: kind 'Sidecar' is not supported (allowed: ServiceEntry, WorkloadEntry, DestinationRule, VirtualService, Gateway)")
        // A Gateway is taken, and checked like the other kinds.
        XCTAssertEqual(error(#"{"kind":"List","items":[{"apiVersion":"networking.istio.io/v1","kind":"Gateway","spec":{}}]}"#),
                       "items[0].spec.servers: required field is missing")
    }

    func testShippedBookinfoExamplesLoad() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("config/examples")
        let weighted = try ConfigLoader.load(contentsOf: dir.appendingPathComponent("bookinfo-reviews-90-10.json").path)
        XCTAssertEqual(weighted.routes[0].destinations.map(\.weight), [90, 10])
        XCTAssertEqual(weighted.routes[0].destinations.map(\.subset), ["v1", "v2"])
        XCTAssertEqual(weighted.hosts["outbound|9080|v1|reviews"]?.trafficPolicy.loadBalancer, .random)
        let jason = try ConfigLoader.load(contentsOf: dir.appendingPathComponent("bookinfo-reviews-jason-v2-v3.json").path)
        XCTAssertEqual(jason.routes.map { $0.destinations[0].subset }, ["v2", "v3"])
        XCTAssertEqual(jason.routes[0].matches[0].headers["end-user"], .exact("jason"))
    }

    /// validate warns about a host nothing reaches, and a routed subset without endpoints; not
    /// about subsets left unrouted or a host reached only by a mirror.
    func testValidateWarningsWithSubsetsAndMirrors() throws {
        let c = try load(#"""
            {"serviceEntries":[\#(reviews),{"host":"shadow","endpoints":[{"address":"127.0.0.1","port":1}]},
                               {"host":"idle","endpoints":[{"address":"127.0.0.1","port":2}]}],
             "destinationRules":[{"host":"reviews","subsets":[{"name":"v1","labels":{"version":"v1"}},{"name":"v9","labels":{"version":"v9"}},
                                                               {"name":"v3","labels":{"version":"v3"}}]}],
             "virtualServices":[{"http":[{"route":[{"destination":{"host":"reviews","subset":"v1"},"weight":50},
                                                   {"destination":{"host":"reviews","subset":"v9"},"weight":50}],
                                          "mirror":{"host":"shadow"}}]}]}
            """#)
        let w = ConfigReport.warnings(c)
        XCTAssertTrue(w.contains("idle: no route sends traffic to it"), "\(w)")
        XCTAssertTrue(w.contains("outbound|9080|v9|reviews: subset v9 selects no endpoint of reviews: every request routed to it gets 503 UH"), "\(w)")
        XCTAssertFalse(w.contains { $0.hasPrefix("reviews:") || $0.hasPrefix("shadow:") || $0.contains("|v3|") }, "\(w)")
    }

    func testErrorsNameTheirPath() {
        let vs = #""virtualServices":[{"http":[{"route":[{"destination":{"host":"reviews","subset":"v9"}}]}]}]"#
        XCTAssertEqual(error(#"{"serviceEntries":[\#(reviews)],"destinationRules":[{"host":"reviews","subsets":[{"name":"v1"}]}],\#(vs)}"#),
                       "virtualServices[0].http[0].route[0].destination.subset: host 'reviews' has no subset 'v9' (its destinationRule declares: v1)")
        XCTAssertEqual(error(#"{"serviceEntries":[\#(reviews)],\#(vs)}"#),
                       "virtualServices[0].http[0].route[0].destination.subset: host 'reviews' has no subsets: no destinationRule for it declares 'v9'")
        XCTAssertEqual(error(config(rule: #""subsets":[]"#, destination: #"{"host":"reviews","port":{"number":1234}}"#)),
                       "virtualServices[0].http[0].route[0].destination.port.number: host 'reviews' has no port 1234 (its serviceEntry declares: 9080, 9090)")
        XCTAssertEqual(error(config(rule: #""subsets":[{"name":"v1"},{"name":"v1"}]"#, destination: #"{"host":"reviews"}"#)),
                       "destinationRules[0].subsets[1].name: subset 'v1' is declared twice")
        XCTAssertEqual(error(config(rule: #""trafficPolicy":{"portLevelSettings":[{"port":{"number":7}}]}"#, destination: #"{"host":"reviews"}"#)),
                       "destinationRules[0].trafficPolicy.portLevelSettings[0].port.number: host 'reviews' has no port 7 (declared: 9080, 9090)")
        XCTAssertEqual(error(config(rule: #""workloadSelector":{"matchLabels":{"app":"x"}}"#, destination: #"{"host":"reviews"}"#)),
                       "destinationRules[0].workloadSelector: not supported by this gateway: it picks the sidecars a rule applies to; here the gateway is the only proxy")
        XCTAssertEqual(error(#"{"serviceEntries":[{"host":"a","endpoints":[{"address":"10.0.0.1","port":80,"network":"n2"}]}]}"#),
                       "serviceEntries[0].endpoints[0].network: not supported by this gateway: there is one network: every endpoint is dialled directly")
        XCTAssertTrue(error(#"{"serviceEntries":[{"host":"a","ports":[{"number":443,"protocol":"HTTPS"}]}]}"#)
            .hasPrefix("serviceEntries[0].ports[0].protocol: protocol 'HTTPS' is not supported by this gateway"))
        XCTAssertTrue(error(config(rule: #""trafficPolicy":{"tls":{"mode":"ISTIO_MUTUAL"}}"#, destination: #"{"host":"reviews"}"#))
            .hasPrefix("destinationRules[0].trafficPolicy.tls.mode: mode 'ISTIO_MUTUAL' is not supported"))
    }
}
