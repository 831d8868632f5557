import HTTP1Wire
import NIOCore

/// A cluster's consistent-hash balancer (Istio `consistentHash`): the ring or Maglev table over
/// the snapshot's hosts, and the hash policy that reads a request's key. Built once per config
/// snapshot, immutable, shared by every event loop; a request only hashes and looks up.
public final class HashBalancer: Sendable {
    enum Table: Sendable {
        case ring(RingHashTable)
        case maglev(MaglevTable)
    }
    let hosts: [Host]
    let table: Table
    let policy: HashPolicy

    /// nil when the cluster has no hosts (nothing to hash onto).
    init?(settings: ConsistentHashSettings, hosts: [Host]) {
        guard !hosts.isEmpty else { return nil }
        self.hosts = hosts
        // Envoy hashes a host by its address as it prints it: "10.0.0.1:8080".
        let keys = hosts.map { $0.endpoint.description }
        let weights = hosts.map { max(1, $0.endpoint.weight) }
        switch settings.algorithm {
        case .ringHash(let minimumRingSize):
            table = .ring(RingHashTable(keys: keys, weights: weights, minimumRingSize: minimumRingSize))
        case .maglev(let tableSize):
            table = .maglev(MaglevTable(keys: keys, weights: weights, tableSize: tableSize))
        }
        policy = HashPolicy(settings.key)
    }

    /// The host for `hash` among those `usable` says yes to; `attempt` > 0 asks for another
    /// host than an earlier pick (the retry's previous-hosts predicate), as Envoy's tables do.
    @inline(__always) func pick(_ hash: UInt64, attempt: Int, usable: (Host) -> Bool) -> Host? {
        let hosts = self.hosts
        let index: Int?
        switch table {
        case .ring(let ring): index = ring.pick(hash, attempt: attempt) { usable(hosts[$0]) }
        case .maglev(let maglev): index = maglev.pick(hash, attempt: attempt) { usable(hosts[$0]) }
        }
        return index.map { hosts[$0] }
    }
}

/// Where a request's hash comes from (Envoy's `hash_policy`), compiled to bytes.
struct HashPolicy: Sendable {
    enum Source: Sendable {
        case header([UInt8])
        case cookie(name: [UInt8])
        case sourceIP
        case queryParameter([UInt8])
    }
    let source: Source
    /// For a cookie with `ttl`: the attributes a generated cookie gets ("; Max-Age=N; Path=p").
    let cookieToGenerate: (name: String, attributes: String)?

    init(_ key: ConsistentHashSettings.Key) {
        switch key {
        case .header(let name):
            source = .header(Array(name.utf8))
            cookieToGenerate = nil
        case .cookie(let name, let path, let ttl):
            source = .cookie(name: Array(name.utf8))
            if let ttl {
                // Envoy's makeSetCookieValue: Max-Age only for a ttl above zero (0: a session
                // cookie), then the path, then HttpOnly.
                var attributes = ""
                let seconds = ttl.nanoseconds / 1_000_000_000
                if seconds > 0 { attributes += "; Max-Age=\(seconds)" }
                if let path { attributes += "; Path=\(path)" }
                attributes += "; HttpOnly"
                cookieToGenerate = (name, attributes)
            } else {
                cookieToGenerate = nil
            }
        case .sourceIP:
            source = .sourceIP
            cookieToGenerate = nil
        case .queryParameter(let name):
            source = .queryParameter(Array(name.utf8))
            cookieToGenerate = nil
        }
    }

    /// The request's hash, or nil when the request lacks the key (Envoy then picks at random).
    func hash(_ head: MessageHead, _ b: UnsafeRawBufferPointer, clientAddress: String) -> UInt64? {
        switch source {
        case .header(let name):
            var values = Self.headerValues(head, b, name)
            guard !values.isEmpty else { return nil }
            if values.count == 1 { return XXHash64.hash(UnsafeRawBufferPointer(rebasing: b[values[0]])) }
            // Envoy: several lines of the header hash as their values sorted, each value's hash
            // seeding the next, so their order does not matter.
            values.sort { x, y in
                UnsafeRawBufferPointer(rebasing: b[x]).lexicographicallyPrecedes(UnsafeRawBufferPointer(rebasing: b[y]))
            }
            var h: UInt64 = 0
            for r in values { h = XXHash64.hash(UnsafeRawBufferPointer(rebasing: b[r]), seed: h) }
            return h
        case .cookie(let name):
            for r in Self.headerValues(head, b, Array("cookie".utf8)) {
                if let v = Self.cookieValue(b, r, name) { return XXHash64.hash(UnsafeRawBufferPointer(rebasing: b[v])) }
            }
            return nil
        case .sourceIP:
            return XXHash64.hash(clientAddress)
        case .queryParameter(let name):
            guard let v = Self.queryValue(b, head.target, name) else { return nil }
            return XXHash64.hash(UnsafeRawBufferPointer(rebasing: b[v]))
        }
    }

    /// Value ranges of every header line named `lowercaseName`, in order (bounded by the head,
    /// which the codec already bounded).
    static func headerValues(_ head: MessageHead, _ b: UnsafeRawBufferPointer, _ lowercaseName: [UInt8]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        let length = min(head.length, b.count)
        var i = 0
        while i < length && b[i] != 0x0A { i += 1 }
        i += 1
        while i < length - 2 {
            let lineStart = i
            while i < length && b[i] != 0x0A { i += 1 }
            let lineEnd = i > lineStart && b[i - 1] == 0x0D ? i - 1 : i
            i += 1
            guard lineEnd - lineStart > lowercaseName.count, b[lineStart + lowercaseName.count] == UInt8(ascii: ":") else { continue }
            var same = true
            for k in 0..<lowercaseName.count where lowercased(b[lineStart + k]) != lowercaseName[k] {
                same = false
                break
            }
            guard same else { continue }
            var vs = lineStart + lowercaseName.count + 1
            while vs < lineEnd && (b[vs] == 0x20 || b[vs] == 0x09) { vs += 1 }
            var ve = lineEnd
            while ve > vs && (b[ve - 1] == 0x20 || b[ve - 1] == 0x09) { ve -= 1 }
            out.append(vs..<ve)
        }
        return out
    }

    /// Envoy's `parseCookieValue`: "a=1; b=2" pairs, names compared exactly, a quoted value
    /// without its quotes.
    static func cookieValue(_ b: UnsafeRawBufferPointer, _ r: Range<Int>, _ name: [UInt8]) -> Range<Int>? {
        var i = r.lowerBound
        while i < r.upperBound {
            var end = i
            while end < r.upperBound && b[end] != UInt8(ascii: ";") { end += 1 }
            var s = i
            while s < end && b[s] == 0x20 { s += 1 }
            if end - s > name.count, b[s + name.count] == UInt8(ascii: "=") {
                var same = true
                for k in 0..<name.count where b[s + k] != name[k] {
                    same = false
                    break
                }
                if same {
                    var vs = s + name.count + 1, ve = end
                    while ve > vs && b[ve - 1] == 0x20 { ve -= 1 }
                    if ve - vs >= 2 && b[vs] == UInt8(ascii: "\"") && b[ve - 1] == UInt8(ascii: "\"") {
                        vs += 1
                        ve -= 1
                    }
                    return vs..<ve
                }
            }
            i = end + 1
        }
        return nil
    }

    /// The raw (not decoded) value of the first `name=` pair in the target's query, as Envoy's
    /// `parseQueryString` gives it; a bare `name` has the empty value.
    static func queryValue(_ b: UnsafeRawBufferPointer, _ target: Range<Int>, _ name: [UInt8]) -> Range<Int>? {
        guard var i = target.firstIndex(where: { b[$0] == UInt8(ascii: "?") }).map({ $0 + 1 }) else { return nil }
        var end = target.upperBound
        if let hash = (i..<end).firstIndex(where: { b[$0] == UInt8(ascii: "#") }) { end = hash }
        while i < end {
            var pairEnd = i
            while pairEnd < end && b[pairEnd] != UInt8(ascii: "&") { pairEnd += 1 }
            var eq = i
            while eq < pairEnd && b[eq] != UInt8(ascii: "=") { eq += 1 }
            if eq - i == name.count {
                var same = true
                for k in 0..<name.count where b[i + k] != name[k] {
                    same = false
                    break
                }
                if same { return eq < pairEnd ? (eq + 1)..<pairEnd : pairEnd..<pairEnd }
            }
            i = pairEnd + 1
        }
        return nil
    }
}
