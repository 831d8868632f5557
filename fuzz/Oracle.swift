// Oracles for the HTTP/1.1 parser fuzz targets (request.swift, response.swift), compiled with
// the NIO-free files of Sources/HTTP1Wire by fuzz/run.sh. The input goes through the framer the
// gateway's connections run (head parser, resumable head scan, body decoder, interim heads).
// Beyond "no crash, no memory error":
//
// 1. Splits agree: the input framed as one read and fed in random pieces (and byte by byte
//    when short) must give the same messages (head and body lengths) and the same ending
//    (refused with the same error, or waiting for more at the same place). A parser whose
//    verdict depends on how TCP cut the stream can be steered by an attacker.
// 2. Bounds: every offset and length the framer reports lies within the bytes it was given;
//    the payload pass (de-chunking for HTTP/1.0 clients) takes what the framing pass takes.
// 3. What was accepted is checked again by plain, independent code: CRLF line endings only,
//    no controls, token header names without folding, one framing, Host, the limits.
//
// A failed oracle prints both outcomes and traps, which libFuzzer records as a crash.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct Message: Equatable {
    var head: Int
    var body: Int
}

enum Ending: Equatable {
    /// The input ended right after a message (or was empty).
    case clean
    /// This many bytes of a head that has not ended yet.
    case waitingForHead(Int)
    /// A body that has not ended yet (or runs until the connection closes).
    case inBody(head: Int, body: Int)
    case refused(status: Int, reason: String)
}

struct Outcome: Equatable {
    var messages: [Message] = []
    var ending: Ending = .clean
}

struct FuzzSettings {
    var kind: HeadParser.Kind
    var options: HeadParser.Options
    var requestWasHead: Bool
    var seed: UInt64
}

/// Settings and split points come from a hash of the input, so a finding replays exactly.
func settings(for data: UnsafeRawBufferPointer, kind: HeadParser.Kind) -> FuzzSettings {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in data { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    var options = HeadParser.Options.defaults(for: kind)
    // Small limits for some inputs, so the 431/502 paths are reached with short inputs.
    switch h & 7 {
    case 0: options.maxHeadBytes = 32
    case 1: options.maxHeadBytes = 128
    case 2: options.maxHeadBytes = 1024
    default: break
    }
    switch (h >> 3) & 3 {
    case 0: options.maxHeadersCount = 1
    case 1: options.maxHeadersCount = 4
    default: break
    }
    if (h >> 5) & 3 == 0 { options.headersWithUnderscores = .allow }
    return FuzzSettings(kind: kind, options: options, requestWasHead: (h >> 7) & 3 == 0, seed: h | 1)
}

func fail(_ what: String, _ data: UnsafeRawBufferPointer) -> Never {
    fputs("ORACLE FAILED: \(what)\ninput: \(String(decoding: data, as: UTF8.self).debugDescription)\n", stderr)
    fatalError(what)
}

/// Streams `data` through the framer (`RawMessageFramer`, what `MessageFramer` runs on the
/// gateway's connections) in pieces of the given sizes: bytes are buffered as they come, each
/// step takes what it framed from the front, and what it did not take waits for the next piece.
func run(_ data: UnsafeRawBufferPointer, pieces: [Int], _ s: FuzzSettings) -> Outcome {
    var out = Outcome()
    var framer = RawMessageFramer(s.kind, options: s.options)
    if s.kind == .response { framer.expectResponse(toHead: s.requestWasHead) }
    var pending: [UInt8] = []
    var current = Message(head: 0, body: 0)
    var offset = 0
    for size in pieces {
        pending += data[offset..<(offset + size)]
        offset += size
        taking: while true {
            let payload = framer.isInsideMessage && !framer.body.isComplete ? payloadPass(framer.body, pending) : nil
            let step: RawMessageFramer.Step
            switch pending.withUnsafeBytes({ raw in Result { () throws(HTTPParseError) in try framer.step(raw) } }) {
            case .success(let taken): step = taken
            case .failure(let error):
                if let payload, payload != .failure(error) { fail("payload pass gave \(payload), framing pass \(error)", data) }
                out.ending = .refused(status: error.status, reason: error.reason)
                return out
            }
            switch step {
            case .head:
                let head = framer.head
                pending.withUnsafeBytes { checkAccepted(head, $0, s, data) }
                pending.removeFirst(head.length)
                if head.isInterim {
                    // No body and no end: the final head follows.
                    out.messages.append(Message(head: head.length, body: 0))
                } else {
                    current = Message(head: head.length, body: 0)
                }
            case .body(let n):
                guard n > 0, n <= pending.count else { fail("body step of \(n) bytes with \(pending.count) buffered", data) }
                if let payload, payload != .success(n) { fail("payload pass gave \(payload), framing pass took \(n)", data) }
                current.body += n
                pending.removeFirst(n)
            case .end:
                out.messages.append(current)
                if s.kind == .response { framer.expectResponse(toHead: s.requestWasHead) }
            case .needMore:
                if framer.isInsideMessage && !pending.isEmpty { fail("body waits with \(pending.count) bytes it did not take", data) }
                if !framer.isInsideMessage && framer.headScanned != pending.count {
                    fail("head scan stopped at \(framer.headScanned) of \(pending.count) bytes", data)
                }
                break taking
            }
        }
    }
    if framer.isInsideMessage {
        out.ending = .inBody(head: current.head, body: current.body)
    } else if !pending.isEmpty {
        out.ending = .waitingForHead(pending.count)
    }
    return out
}

/// The payload-extracting pass (what an HTTP/1.0 client is sent) on a copy of `decoder`: it must
/// take exactly what the framing pass takes, and name payload ranges in order, inside what it took.
func payloadPass(_ decoder: BodyDecoder, _ bytes: [UInt8]) -> Result<Int, HTTPParseError> {
    var shadow = decoder
    var ranges: [Range<Int>] = []
    let extracted: Result<Int, HTTPParseError> = bytes.withUnsafeBytes { raw in
        do throws(HTTPParseError) { return .success(try shadow.consume(raw) { ranges.append($0) }) } catch { return .failure(error) }
    }
    bytes.withUnsafeBytes { raw in
        var end = 0
        for r in ranges {
            if r.lowerBound < end || r.upperBound > bytes.count { fail("payload range \(r) out of order or bounds", raw) }
            end = r.upperBound
        }
        if case .success(let n) = extracted, end > n { fail("payload past the \(n) bytes taken", raw) }
    }
    return extracted
}

/// Independent checks of a head the parser accepted, on its bytes `b`.
func checkAccepted(_ h: MessageHead, _ b: UnsafeRawBufferPointer, _ s: FuzzSettings, _ data: UnsafeRawBufferPointer) {
    func check(_ ok: Bool, _ what: @autoclosure () -> String) { if !ok { fail(what(), data) } }
    let n = h.length
    check(n >= 4 && n <= b.count, "head length \(n) outside 4...\(b.count)")
    check(n <= s.options.maxHeadBytes, "head of \(n) bytes over the limit \(s.options.maxHeadBytes)")
    for r in [h.method, h.target] + [h.host, h.requestID, h.forwardedFor].compactMap({ $0 }) {
        check(r.lowerBound >= 0 && r.upperBound <= n, "range \(r) outside the head of \(n) bytes")
    }
    for k in 0..<h.connectionOptions.count {
        let r = h.connectionOptions[k]
        check(r.lowerBound >= 0 && r.upperBound <= n && !r.isEmpty, "connection option \(r) outside the head")
    }
    check(b[n - 4] == 13 && b[n - 3] == 10 && b[n - 2] == 13 && b[n - 1] == 10, "head does not end with CRLFCRLF")
    // Line endings and controls.
    for i in 0..<n {
        let c = b[i]
        if c == 10 { check(i > 0 && b[i - 1] == 13, "bare LF at \(i)") }
        if c == 13 { check(i + 1 < n && b[i + 1] == 10, "bare CR at \(i)") }
        check(!(c < 0x20 && c != 9 && c != 10 && c != 13) && c != 0x7F, "control byte \(c) at \(i)")
    }
    // Lines: the start line, then header lines "name:value".
    var lines: [Range<Int>] = []
    var start = 0
    for i in 0..<(n - 2) where b[i] == 10 {
        lines.append(start..<(i - 1))
        start = i + 1
    }
    check(lines.count - 1 == h.headerCount, "\(lines.count - 1) header lines, parser counted \(h.headerCount)")
    check(h.headerCount <= s.options.maxHeadersCount, "\(h.headerCount) header lines over the limit")
    var contentLengths = 0
    var transferEncodings = 0
    var hosts = 0
    var sawChunkedTE = false
    for line in lines.dropFirst() {
        guard let colon = line.first(where: { b[$0] == UInt8(ascii: ":") }) else { fail("header line without colon", data) }
        let name = line.lowerBound..<colon
        check(!name.isEmpty, "empty header name")
        for p in name { check(isTokenChar(b[p]), "non-token byte \(b[p]) in a header name") }
        if s.kind == .request && s.options.headersWithUnderscores == .rejectRequest {
            check(!name.contains { b[$0] == UInt8(ascii: "_") }, "underscore in a request header name")
        }
        var v = colon + 1
        while v < line.upperBound && (b[v] == 32 || b[v] == 9) { v += 1 }
        var e = line.upperBound
        while e > v && (b[e - 1] == 32 || b[e - 1] == 9) { e -= 1 }
        let value = String(decoding: UnsafeRawBufferPointer(rebasing: b[v..<e]), as: UTF8.self).lowercased()
        switch String(decoding: UnsafeRawBufferPointer(rebasing: b[name]), as: UTF8.self).lowercased() {
        case "content-length":
            contentLengths += 1
            check(!value.isEmpty && value.allSatisfy { $0.isASCII && $0.isNumber }, "Content-Length \(value.debugDescription) accepted")
        case "transfer-encoding":
            transferEncodings += 1
            if value == "chunked" { sawChunkedTE = true }
        case "host":
            hosts += 1
        default:
            break
        }
    }
    if s.kind == .request {
        check(contentLengths <= 1, "\(contentLengths) Content-Length lines accepted")
        check(transferEncodings <= 1, "\(transferEncodings) Transfer-Encoding lines accepted")
        check(!(contentLengths > 0 && transferEncodings > 0), "Content-Length and Transfer-Encoding accepted together")
        check(transferEncodings == 0 || sawChunkedTE, "a request Transfer-Encoding other than chunked accepted")
        check(h.chunked == sawChunkedTE, "chunked flag disagrees with the Transfer-Encoding line")
        check(h.minorVersion == 0 || hosts == 1, "HTTP/1.1 request with \(hosts) Host lines accepted")
        check(!h.target.isEmpty, "empty target")
        let first = b[h.target.lowerBound]
        let method = String(decoding: UnsafeRawBufferPointer(rebasing: b[h.method]), as: UTF8.self)
        check(first == UInt8(ascii: "/") || (h.target.count == 1 && first == UInt8(ascii: "*") && method == "OPTIONS"),
              "target form accepted: \(String(decoding: UnsafeRawBufferPointer(rebasing: b[h.target]), as: UTF8.self).debugDescription)")
        check(method != "CONNECT", "CONNECT accepted")
        check(b[h.method.upperBound] == 32 && b[h.target.upperBound] == 32, "request line separators")
    } else {
        check(h.status >= 100 && h.status <= 999, "status \(h.status)")
        check(contentLengths <= 1, "\(contentLengths) Content-Length lines accepted in a response")
        if transferEncodings > 0 { check(h.contentLength == nil, "Content-Length kept beside Transfer-Encoding") }
    }
}

/// A deterministic generator (SplitMix64) for the split points.
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func randomPieces(_ count: Int, _ rng: inout SplitMix) -> [Int] {
    var pieces: [Int] = []
    var left = count
    let most = max(1, count / 3)
    while left > 0 {
        let size = min(left, 1 + Int(rng.next() % UInt64(most)))
        pieces.append(size)
        left -= size
    }
    return pieces
}

/// The whole check of one input.
func checkSplitsAgree(_ data: UnsafeRawBufferPointer, kind: HeadParser.Kind) {
    let s = settings(for: data, kind: kind)
    let whole = run(data, pieces: data.isEmpty ? [] : [data.count], s)
    var consumed = whole.messages.reduce(0) { $0 + $1.head + $1.body }
    switch whole.ending {
    case .waitingForHead(let n): consumed += n
    case .inBody(let h, let b): consumed += h + b
    default: break
    }
    if case .refused = whole.ending {} else if consumed != data.count {
        fail("outcome covers \(consumed) of \(data.count) bytes", data)
    }
    var rng = SplitMix(state: s.seed)
    var splits = [randomPieces(data.count, &rng)]
    if data.count <= 512 { splits.append(Array(repeating: 1, count: data.count)) }
    for pieces in splits {
        let split = run(data, pieces: pieces, s)
        if split != whole {
            fail("whole input gave \(whole), pieces \(pieces) gave \(split)", data)
        }
    }
}
