import Foundation

/// Why a request got no whole response.
public enum SocketFailure: Sendable {
    case connect, closed, cutOff, badResponse, timeout

    var text: String {
        switch self {
        case .connect: return "socket: unable to connect"
        case .closed: return "socket: connection closed before a response"
        case .cutOff: return "socket: connection closed in the middle of a response"
        case .badResponse: return "socket: malformed response"
        case .timeout: return "socket: read timed out"
        }
    }
}

/// `-v`: one line per transaction in siege's shape, on standard output,
///
///     HTTP/1.1 201     0.01 secs:      68 bytes ==> POST http://127.0.0.1:8080/orders
///
/// coloured as siege colours it (2xx blue, 3xx cyan, 4xx magenta, anything else red) when
/// `color` is set, which the caller does only for a terminal. As in siege, a GET shows the path
/// and any other method the whole URL. Socket failures get an `[error]` line on standard error.
public final class TransactionLog: @unchecked Sendable {
    // @unchecked: `lock` guards the writes; everything else is immutable.
    let color: Bool
    /// Per target: `"%-4s %s"` of its method and what siege displays for it.
    let shown: [String]
    private let lock = NSLock()
    private let write: @Sendable (String, _ toError: Bool) -> Void

    public init(targets: [Target], color: Bool,
                write: @escaping @Sendable (String, Bool) -> Void = { text, toError in
                    FileHandle(fileDescriptor: toError ? 2 : 1, closeOnDealloc: false).write(Data(text.utf8))
                }) {
        self.color = color
        self.write = write
        shown = targets.map { t in
            let method = t.method.padding(toLength: max(4, t.method.count), withPad: " ", startingAt: 0)
            return method + " " + (t.method == "GET" ? t.path : t.url)
        }
    }

    /// siege's colour of a status (notify.h's numbers + 30).
    static func colorCode(_ status: Int) -> Int {
        switch status {
        case 150, 200...206, 226: return 34
        case 300...307: return 36
        case 400...417: return 35
        default: return 31
        }
    }

    public func line(minorVersion: Int, status: Int, seconds: Double, bytes: Int, target: Int) -> String {
        let text = String(format: "HTTP/1.%d %d    %5.2f secs: %7d bytes ==> ", minorVersion, status, seconds, bytes) + shown[target]
        return color ? "\u{1B}[0;\(Self.colorCode(status))m" + text + "\u{1B}[0m\n" : text + "\n"
    }

    func response(minorVersion: Int, status: Int, micros: UInt64, bytes: Int, target: Int) {
        let text = line(minorVersion: minorVersion, status: status, seconds: Double(micros) / 1e6, bytes: bytes, target: target)
        lock.lock()
        write(text, false)
        lock.unlock()
    }

    func failure(_ reason: SocketFailure, target: Int) {
        let tag = color ? "[\u{1B}[1;33merror\u{1B}[0m]" : "[error]"
        let text = "\(tag) \(reason.text) ==> \(shown[target])\n"
        lock.lock()
        write(text, true)
        lock.unlock()
    }
}

extension Target {
    /// The URL as siege shows it: `http://host:port/path`.
    public var url: String { "http://\(host)\(port == 80 ? "" : ":\(port)")\(path)" }
}
