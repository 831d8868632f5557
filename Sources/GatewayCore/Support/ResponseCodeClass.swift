/// Envoy's response code class of `status` as an offset from the 1xx counter: 0 for 1xx … 4 for
/// 5xx (and anything above). nil below 100: no answer (a client that left first), which counts in
/// no class. Upstream statuses are always ≥ 100 (the parser refuses others).
@inline(__always) func responseCodeClass(_ status: Int) -> Int? {
    guard status >= 100 else { return nil }
    return min(status / 100, 5) - 1
}
