import Foundation
import SigmaFuzzTargets

// libFuzzer's driver is started from here (LLVMFuzzerRunDriver) rather than from libFuzzer's own main, because
// SwiftPM gives executables their own entry point. SIGMA_FUZZ_TARGET picks the parser; SIGMA_FUZZ_SEEDS=DIR (with
// SIGMA_FIXTURES=shared/fixtures) writes its seed corpus there first.

@_silgen_name("LLVMFuzzerRunDriver")
func runDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

let environment = ProcessInfo.processInfo.environment
guard let name = environment["SIGMA_FUZZ_TARGET"], let chosen = FuzzTarget(rawValue: name) else {
    let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
    FileHandle.standardError.write(Data("set SIGMA_FUZZ_TARGET to one of: \(names)\n".utf8))
    exit(2)
}
if let directory = environment["SIGMA_FUZZ_SEEDS"], let fixtures = environment["SIGMA_FIXTURES"] {
    try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    for (index, seed) in chosen.seeds(fixtures: URL(fileURLWithPath: fixtures)).enumerated() {
        _ = FileManager.default.createFile(atPath: directory + "/seed-\(index)", contents: Data(seed))
    }
}

let target = chosen
var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(
    runDriver(&argc, &argv) { data, count in
        target.run(count == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: count)))
        return 0
    })
