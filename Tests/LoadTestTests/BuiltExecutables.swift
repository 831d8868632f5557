import Foundation
import XCTest

/// An executable of this package, built next to the test bundle (`swift build` before `swift
/// test`); the test is skipped, saying so, when it is not there.
func builtExecutable(_ name: String) throws -> URL {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
    for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") { dir = bundle.bundleURL.deletingLastPathComponent() }
    let url = dir.appendingPathComponent(name)
    guard FileManager.default.isExecutableFile(atPath: url.path) else {
        throw XCTSkip("\(name) is not built next to the tests; run `swift build` before `swift test`")
    }
    return url
}

/// Runs `exe` with `args` to its end: its exit status, stdout and stderr (read side by side, so
/// neither pipe can fill up and stall the process).
func runToEnd(_ exe: URL, _ args: [String]) throws -> (status: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = exe
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    final class Collected: @unchecked Sendable {
        var data = Data()
        let done = DispatchSemaphore(value: 0)
    }
    let errBytes = Collected()
    let errHandle = err.fileHandleForReading
    Thread {
        errBytes.data = errHandle.readDataToEndOfFile()
        errBytes.done.signal()
    }.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    errBytes.done.wait()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errBytes.data, as: UTF8.self))
}
