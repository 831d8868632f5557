import Foundation
import HTTP1Wire
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest

/// Our request parser against llhttp (NIOHTTP1's `HTTPRequestDecoder`, default strict settings)
/// on the fuzz seed corpus and a few thousand deterministic mutations of it. Where both accept
/// a message they must agree on where it ends (head and body) and on what its head says; a
/// message we accept and llhttp refuses is a failure unless it is one of the deliberate
/// differences `compare` names (extension methods, BWS in chunk extensions, upgrades).
/// Messages only llhttp accepts are fine: being stricter than the upstream's parser is the point.
final class ParserDifferentialTests: XCTestCase {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../fuzz/corpus/request").standardized

    /// A request llhttp must read as the next one when it agrees on where the first ended.
    static let sentinel = Array("GET /__sentinel HTTP/1.1\r\nHost: s\r\n\r\n".utf8)

    enum Part: Equatable {
        case head(method: String, uri: String, headers: Int)
        case body(Int)
        case end
        /// Bytes llhttp handed on unparsed (after an upgrade request).
        case unparsed
    }

    func llhttp(_ bytes: [UInt8]) -> (parts: [Part], error: HTTPParserError?) {
        let channel = EmbeddedChannel()
        try! channel.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        var error: HTTPParserError?
        do {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
        } catch let e as HTTPParserError {
            error = e
        } catch {
            XCTFail("unexpected error \(error)")
        }
        var parts: [Part] = []
        while true {
            do {
                guard let part = try channel.readInbound(as: HTTPServerRequestPart.self) else { break }
                switch part {
                case .head(let h): parts.append(.head(method: h.method.rawValue, uri: h.uri, headers: h.headers.count))
                case .body(let b): parts.append(.body(b.readableBytes))
                case .end: parts.append(.end)
                }
            } catch {
                parts.append(.unparsed)
            }
        }
        _ = try? channel.finish()
        return (parts, error)
    }

    /// Ours: the first message's head and wire body length, nil when refused or incomplete.
    func ours(_ bytes: [UInt8]) -> (head: MessageHead, body: Int)? {
        bytes.withUnsafeBytes { raw -> (MessageHead, Int)? in
            guard let head = try? HeadParser.parse(raw, kind: .request, options: .requestDefaults) else { return nil }
            var decoder = BodyDecoder(HeadParser.requestFraming(head))
            guard let n = try? decoder.consume(UnsafeRawBufferPointer(rebasing: raw[head.length...])), decoder.isComplete
            else { return nil }
            return (head, n)
        }
    }

    /// Payload bytes of a chunked body we accepted (its framing is known to be well formed).
    func chunkedPayload(_ body: ArraySlice<UInt8>) -> Int {
        var i = body.startIndex
        var total = 0
        while true {
            var size = 0
            while let d = Int(String(UnicodeScalar(body[i])), radix: 16) {
                size = size * 16 + d
                i += 1
            }
            while body[i] != 10 { i += 1 }
            i += 1
            if size == 0 { return total }
            total += size
            i += size + 2
        }
    }

    /// The methods llhttp's request parser knows (llhttp's HTTP_METHOD_MAP and RTSP's ones it accepts in requests).
    static let llhttpMethods: Set<String> = [
        "DELETE", "GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS", "TRACE", "COPY", "LOCK", "MKCOL", "MOVE",
        "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND", "REBIND", "UNBIND", "ACL", "REPORT", "MKACTIVITY",
        "CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PATCH", "PURGE", "MKCALENDAR",
        "LINK", "UNLINK", "SOURCE", "QUERY",
    ]

    struct Tally {
        var inputs = 0
        var bothAccept = 0
        var onlyLLHTTP = 0
        var deliberate: [String: Int] = [:]
        var failures: [String] = []
    }

    enum Verdict: Equatable {
        case agree
        /// llhttp refused the message before its end (or saw no end).
        case refused(HTTPParserError?)
        case disagree(String)
        /// llhttp took it as an upgrade and stopped parsing HTTP after it.
        case upgrade
    }

    /// llhttp's reading of a message we accepted: the same head, the same body length, and
    /// the same end (a sentinel request after it must parse as the next message).
    func llhttpVerdict(_ message: [UInt8], _ head: MessageHead, bodyLength: Int) -> Verdict {
        let input = head.keepAlive ? message + Self.sentinel : message
        let (parts, error) = llhttp(input)
        if parts.contains(.unparsed) { return .upgrade }
        guard let firstEnd = parts.firstIndex(of: .end) else { return .refused(error) }
        let method = String(decoding: message[head.method], as: UTF8.self)
        let uri = String(decoding: message[head.target], as: UTF8.self)
        guard parts.first == .head(method: method, uri: uri, headers: head.headerCount) else {
            return .disagree("heads differ: ours \(method) \(uri) \(head.headerCount) headers, llhttp \(parts)")
        }
        let llhttpBody = parts[..<firstEnd].reduce(0) { if case .body(let n) = $1 { return $0 + n } else { return $0 } }
        let ourPayload = head.chunked ? chunkedPayload(message[head.length...]) : bodyLength
        if llhttpBody != ourPayload { return .disagree("body lengths differ: ours \(ourPayload), llhttp \(llhttpBody)") }
        let after = Array(parts[(firstEnd + 1)...])
        let expected: [Part] = head.keepAlive ? [.head(method: "GET", uri: "/__sentinel", headers: 1), .end] : []
        if after.isEmpty && error == nil && head.keepAlive
            && message.withUnsafeBytes({ head.value(of: "upgrade", in: $0) }) != nil
        {
            return .upgrade  // llhttp stopped at the upgrade; the sentinel is left for the new protocol
        }
        if after != expected || error != nil {
            return .disagree("message ends differ: after our end llhttp saw \(after), error \(String(describing: error))")
        }
        return .agree
    }

    /// The message with spaces and tabs taken out of its chunk-size lines (outside quoted strings).
    func withoutChunkLineWhitespace(_ message: [UInt8], _ head: MessageHead) -> [UInt8] {
        var out = Array(message[..<head.length])
        var i = head.length
        while i < message.count {
            var size = 0
            var digits = true
            var quoted = false
            var escaped = false
            while message[i] != 10 {
                let c = message[i]
                if digits, let d = Int(String(UnicodeScalar(c)), radix: 16) { size = size * 16 + d } else { digits = false }
                if escaped { escaped = false } else if quoted && c == UInt8(ascii: "\\") { escaped = true } else if c == 34 { quoted.toggle() }
                if quoted || (c != 32 && c != 9) { out.append(c) }
                i += 1
            }
            out.append(10)
            i += 1
            if size == 0 {
                out += message[i...]
                break
            }
            out += message[i..<(i + size + 2)]
            i += size + 2
        }
        return out
    }

    func compare(_ bytes: [UInt8], _ tally: inout Tally) {
        tally.inputs += 1
        guard let (head, bodyLength) = ours(bytes) else {
            tally.onlyLLHTTP += 1  // or neither: either way nothing we forward
            return
        }
        let message = Array(bytes[0..<(head.length + bodyLength)])
        let show = String(decoding: message, as: UTF8.self).debugDescription
        switch llhttpVerdict(message, head, bodyLength: bodyLength) {
        case .agree:
            tally.bothAccept += 1
        case .upgrade:
            // The gateway drops Upgrade and forwards a plain request: no second parser to disagree with.
            tally.deliberate["upgrade: llhttp stops parsing HTTP", default: 0] += 1
        case .disagree(let what):
            tally.bothAccept += 1
            tally.failures.append("\(what): \(show)")
        case .refused(let error):
            let method = String(decoding: message[head.method], as: UTF8.self)
            if error == .invalidMethod && !Self.llhttpMethods.contains(method) {
                // RFC 9110 §9.1: methods are tokens and extensible; llhttp knows a fixed list.
                tally.deliberate["extension method", default: 0] += 1
            } else if head.chunked, case let normal = withoutChunkLineWhitespace(message, head), normal != message,
                      llhttpVerdict(normal, head, bodyLength: normal.count - head.length) == .agree
            {
                // RFC 9112 §7.1.1 allows BWS around ";" and "=" in chunk extensions; llhttp's
                // strict mode refuses it. Without the whitespace llhttp reads the same message.
                tally.deliberate["whitespace in chunk extensions", default: 0] += 1
            } else {
                tally.failures.append("we accept, llhttp refuses (\(error.map { "\($0)" } ?? "no end")): \(show)")
            }
        }
    }

    static let interesting: [UInt8] = Array("\r\n \t\0\u{0B},;:_\"aA09f/*-=".utf8) + [0x7F, 0x80, 0xFF]
    static let fragments: [[UInt8]] = [
        "Transfer-Encoding: chunked\r\n", "Content-Length: 5\r\n", "Content-Length: 0\r\n", " chunked", ", chunked",
        "\r\n", "\n", "0\r\n\r\n", "Host: x\r\n", "Connection: close\r\n", "5\r\nhello\r\n", ";ext", "X_Y: 1\r\n",
    ].map { Array($0.utf8) }

    /// One to three random edits: replace, insert or delete a byte, repeat a line, insert a fragment.
    func mutate(_ seed: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var b = seed
        for _ in 0...(rng.next() % 3) {
            let at = b.isEmpty ? 0 : Int(rng.next() % UInt64(b.count))
            switch rng.next() % 6 {
            case 0 where !b.isEmpty: b[at] = Self.interesting[Int(rng.next() % UInt64(Self.interesting.count))]
            case 1: b.insert(Self.interesting[Int(rng.next() % UInt64(Self.interesting.count))], at: at)
            case 2 where !b.isEmpty: b.remove(at: at)
            case 3:
                if let lineEnd = b[at...].firstIndex(of: 10), let start = b[..<at].lastIndex(of: 10) {
                    b.insert(contentsOf: Array(b[(start + 1)...lineEnd]), at: lineEnd + 1)
                }
            case 4: b.insert(contentsOf: Self.fragments[Int(rng.next() % UInt64(Self.fragments.count))], at: at)
            default:
                if !b.isEmpty, (65...90).contains(b[at]) || (97...122).contains(b[at]) { b[at] ^= 0x20 }
            }
        }
        return b
    }

    func testOurParserAgreesWithLLHTTPWhereBothAccept() throws {
        let files = try FileManager.default.contentsOfDirectory(at: Self.corpus, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "http" }.sorted { $0.lastPathComponent < $1.lastPathComponent }
        XCTAssertGreaterThan(files.count, 30, "seed corpus at \(Self.corpus.path)")
        let seeds = try files.map { Array(try Data(contentsOf: $0)) }
        var tally = Tally()
        var rng = SplitMix64(state: 0x5EED)
        for seed in seeds {
            compare(seed, &tally)
            for _ in 0..<128 { compare(mutate(seed, &rng), &tally) }
        }
        print("differential: \(tally.inputs) inputs, both accept \(tally.bothAccept), refused by us \(tally.onlyLLHTTP), "
            + "deliberate differences \(tally.deliberate), failures \(tally.failures.count)")
        XCTAssertGreaterThan(tally.bothAccept, 500, "too few messages accepted by both to compare")
        XCTAssert(tally.failures.isEmpty, "\(tally.failures.count) disagreements:\n" + tally.failures.prefix(40).joined(separator: "\n"))
    }
}

/// SplitMix64: deterministic, so a failure replays.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
