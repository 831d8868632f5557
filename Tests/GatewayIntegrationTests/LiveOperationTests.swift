import Atomics
import Foundation
import NIOPosix
import XCTest

/// Reload and drain against the real `gateway` process.
final class LiveOperationTests: XCTestCase {
    func testReloadRefusesInvalidFileAndAddsRoutesWithoutRestart() throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton)
        defer { up.close() }
        let gw = try GatewayProcess(config: configText(routes: [("/a", "svc")], hostPorts: ["svc": up.port]))
        XCTAssertEqual(httpRequest(port: gw.port, path: "/a")?.status, 200)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/b")?.status, 404)
        XCTAssertEqual(gw.admin("/ready")?.status, 200)

        // Invalid: refused, reported, old routes keep serving.
        try gw.writeConfig("{\"serviceEntries\": [{\"host\": \"svc\"}]}")
        let refused = gw.admin("/reload", method: "POST")
        XCTAssertEqual(refused?.status, 400)
        XCTAssertTrue(refused?.body.contains("serviceEntries[0]") ?? false, refused?.body ?? "")
        let dump = gw.admin("/config_dump")?.body ?? ""
        XCTAssertTrue(dump.contains("\"last_reload_error\":\"serviceEntries[0]"), dump)
        XCTAssertTrue(dump.contains("\"version\":1"), dump)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/a")?.status, 200)

        // Valid, through the admin endpoint: /b appears.
        try gw.writeConfig(configText(routes: [("/a", "svc"), ("/b", "svc")], hostPorts: ["svc": up.port]))
        XCTAssertEqual(gw.admin("/reload", method: "POST")?.status, 200)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/b")?.status, 200)
        XCTAssertTrue(gw.admin("/config_dump")?.body.contains("\"last_reload_error\":null") ?? false)

        // Valid, through SIGHUP: /c appears.
        try gw.writeConfig(configText(routes: [("/a", "svc"), ("/c", "svc")], hostPorts: ["svc": up.port]))
        gw.signal(SIGHUP)
        var status = 0
        for _ in 0..<100 where status != 200 {
            usleep(50_000)
            status = httpRequest(port: gw.port, path: "/c")?.status ?? 0
        }
        XCTAssertEqual(status, 200)
        XCTAssertEqual(httpRequest(port: gw.port, path: "/b")?.status, 404)
    }

    func testNoRequestFailsWhileReloadingUnderLoad() throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(delay: .milliseconds(5)))
        defer { up.close() }
        let config = configText(routes: [("/a", "svc")], hostPorts: ["svc": up.port])
        let gw = try GatewayProcess(config: config, extraArguments: ["--access-log", "off"])
        let stop = ManagedAtomic(false)
        let failures = ManagedAtomic(0)
        let done = ManagedAtomic(0)
        let port = gw.port
        let group = DispatchGroup()
        for _ in 0..<4 {
            group.enter()
            Thread {
                defer { group.leave() }
                guard let c = try? RawConnection(port: port) else { failures.wrappingIncrement(ordering: .relaxed); return }
                while !stop.load(ordering: .relaxed) {
                    c.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
                    if c.readResponse()?.status == 200 { done.wrappingIncrement(ordering: .relaxed) } else {
                        failures.wrappingIncrement(ordering: .relaxed)
                        return
                    }
                }
            }.start()
        }
        for i in 0..<10 {
            try gw.writeConfig(i % 2 == 0 ? config.replacingOccurrences(of: "\"/a\"", with: "\"/\"") : config)
            XCTAssertEqual(gw.admin("/reload", method: "POST")?.status, 200)
            usleep(100_000)
        }
        stop.store(true, ordering: .relaxed)
        group.wait()
        XCTAssertEqual(failures.load(ordering: .relaxed), 0)
        XCTAssertGreaterThan(done.load(ordering: .relaxed), 50)
    }

    func testSigtermDrainsInFlightRequestsThenExits() throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(delay: .milliseconds(700)))
        defer { up.close() }
        let gw = try GatewayProcess(config: configText(routes: [("/", "svc")], hostPorts: ["svc": up.port]))
        let port = gw.port
        let inFlight = DispatchQueue.global()
        let result = ManagedAtomic(0)
        let sem = DispatchSemaphore(value: 0)
        Thread {
            result.store(httpRequest(port: port, path: "/slow")?.status ?? -1, ordering: .relaxed)
            sem.signal()
        }.start()
        _ = inFlight
        usleep(200_000)
        gw.signal(SIGTERM)
        usleep(100_000)
        XCTAssertNil(try? RawConnection(port: port, timeout: 1), "no new connections while draining")
        sem.wait()
        XCTAssertEqual(result.load(ordering: .relaxed), 200, "the in-flight request finished")
        XCTAssertEqual(gw.waitForExit(timeout: 5), 0)
    }

    func testBadFlagsAndBadConfigExitNonZeroWithOneLine() throws {
        for args in [["--port", "99999"], ["--config", "/nonexistent.json"], ["--frobnicate"]] {
            let p = Process()
            p.executableURL = try builtExecutable("gateway")
            p.arguments = args
            let err = Pipe()
            p.standardError = err
            p.standardOutput = Pipe()
            try p.run()
            p.waitUntilExit()
            XCTAssertNotEqual(p.terminationStatus, 0, "\(args)")
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            XCTAssertFalse(text.isEmpty, "\(args) explains itself")
            XCTAssertFalse(text.contains("Fatal error"), text)
        }
    }
}
