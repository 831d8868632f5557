// libFuzzer target: upstream responses through the head parser and body decoder (see Oracle.swift).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzResponse(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    checkSplitsAgree(UnsafeRawBufferPointer(start: data, count: size), kind: .response)
    return 0
}
