import Foundation
import XCTest

/// Debian's `chromium`, headless, for what only a real browser shows (CORS as it is enforced,
/// the admin dashboard as it renders). `.ci/run` installs it; a machine without it skips.
enum HeadlessChromium {
    static func executable(skipping what: String) throws -> String {
        guard let path = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: {
            FileManager.default.isExecutableFile(atPath: $0)
        }) else {
            throw XCTSkip("chromium is not installed (apt-get install chromium): \(what) is skipped")
        }
        return path
    }

    /// Loads `url` and returns the DOM once `virtualTimeMs` of the page's virtual time has run
    /// (timers fire at once; time stands still while a fetch is in flight), killed after 60 s.
    static func dumpDOM(_ chromium: String, url: String, profile: URL, virtualTimeMs: Int = 5000) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: chromium)
        p.arguments = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--user-data-dir=\(profile.path)", "--virtual-time-budget=\(virtualTimeMs)", "--dump-dom", url,
        ]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let killer = DispatchWorkItem { if p.isRunning { p.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: killer)
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        killer.cancel()
        return String(decoding: data, as: UTF8.self)
    }
}
