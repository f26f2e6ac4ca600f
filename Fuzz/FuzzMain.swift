import Foundation

// libFuzzer's driver, from its runtime without `main` (scripts/fuzz links it): this program's
// `main` is ours, so that it can pick the target before the fuzzing starts.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

nonisolated(unsafe) var fuzzTarget = ""
nonisolated(unsafe) var fuzzKeys: FuzzTargets.Keys?

/// Runs libFuzzer over the target named by UPDATINATOR_FUZZ_TARGET, with libFuzzer's arguments.
@_cdecl("updatinator_fuzz_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    fuzzTarget = ProcessInfo.processInfo.environment["UPDATINATOR_FUZZ_TARGET"] ?? ""
    guard FuzzTargets.names.contains(fuzzTarget) else {
        FileHandle.standardError.write(Data("updatinator-fuzz: set UPDATINATOR_FUZZ_TARGET to one of \(FuzzTargets.names.joined(separator: ", "))\n".utf8))
        return 2
    }
    do {
        fuzzKeys = try FuzzTargets.Keys()
    } catch {
        FileHandle.standardError.write(Data("updatinator-fuzz: \(error)\n".utf8))
        return 1
    }
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, count in
        let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? []
        FuzzTargets.run(fuzzTarget, bytes, keys: fuzzKeys!)
        return 0
    }
}
