// swift-tools-version:6.0
// Fuzz targets for Sigma's parsers, built for libFuzzer (the layout follows apple/swift-protobuf's FuzzTesting):
//
//   swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
//   SIGMA_FUZZ_TARGET=keyFile .build/release/SigmaFuzz CORPUS_DIR -max_total_time=60
//
// scripts/fuzz.sh does both for every target, with seed corpora; the entry points live in the main package's
// SigmaFuzzTargets module, so the test suite replays the same code on every seed and regression.
import PackageDescription

let package = Package(
    name: "SigmaFuzzTesting",
    dependencies: [.package(name: "Sigma", path: "..")],
    targets: [
        .executableTarget(
            name: "SigmaFuzz", dependencies: [.product(name: "SigmaFuzzTargets", package: "Sigma")])
    ]
)
