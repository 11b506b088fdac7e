import Foundation
import SigmaFuzzTargets
import Testing

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
let fixtures = repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/fixtures")

/// Every seed and every input a fuzzer once crashed on, through the same entry points the fuzzers use
/// (scripts/fuzz.sh runs the fuzzers themselves).
@Suite("Fuzz targets: seeds and regressions")
struct FuzzRegressionTests {
    @Test("each target accepts its seeds", arguments: FuzzTarget.allCases)
    func seeds(target: FuzzTarget) {
        let seeds = target.seeds(fixtures: fixtures)
        #expect(!seeds.isEmpty)
        for (index, seed) in seeds.enumerated() {
            let accepted = target.run(seed)  // (not inside #expect, which would print the whole input)
            #expect(accepted, "seed \(index) of \(target) was refused")
        }
    }

    @Test("inputs that once crashed or leaked are refused cleanly", arguments: FuzzTarget.allCases)
    func regressions(target: FuzzTarget) throws {
        let directory = repositoryRoot.appendingPathComponent("FuzzTesting/regressions/\(target.rawValue)")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for name in files.sorted() {
            let input = Array(try Data(contentsOf: directory.appendingPathComponent(name)))
            let accepted = target.run(input)
            #expect(!accepted, "\(target)/\(name) was accepted")
        }
    }

    @Test("the regressions on record are there (a moved folder would silently replay nothing)")
    func regressionsPresent() throws {
        let directory = repositoryRoot.appendingPathComponent("FuzzTesting/regressions")
        let names = try FileManager.default.subpathsOfDirectory(atPath: directory.path).filter { $0.contains("/") }
        #expect(names.contains("config/division-by-zero-heads"), "\(names)")
        #expect(names.count >= 4)
    }
}
