// libFuzzer target: client requests through the head parser and body decoder (see Oracle.swift).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    checkSplitsAgree(UnsafeRawBufferPointer(start: data, count: size), kind: .request)
    return 0
}
