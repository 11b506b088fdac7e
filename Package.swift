// swift-tools-version:6.0
// Sigma: secure two-party transformer inference from function secret sharing.
//
// Layers, arrows pointing down (a module imports only modules above it in this list):
//   CSigmaKernels  C: batched AES (VAES-512 / VAES-256 / AES-NI / portable), fixed-key hash PRG, DPF level kernels
//   CRingKernels   C: Z_2^64 matrix products (AVX-512 vpmullq / AVX2 / scalar; chosen at run time), bit packing
//   FSS            DPF with early termination, DPF comparison, full-domain evaluation, DCF, key encoding, randomness
//   Ring           fixed-point rings Z_2^n, tensors, bit-packing to a value's width, ring matrix products
//   Protocols      masked wires and gates (keygen beside evaluation), key streams, the Channel interface
//   CSigmaCrypto   C: thin shims over OpenSSL: TLS 1.3 with a pre-shared key, GMAC (own GHASH) and HMAC for key files;
//                  and sync_file_range, which Swift's Glibc module does not export
//   Transport      TCP channels (TLS 1.3 or plain, POSIX sockets on dedicated threads), key files, credentials
//   Models         model graphs written once against an Evaluator (float, fixed point, dealer, party)
//   SigmaFuzzTargets  every parser of outside bytes as a fuzz entry point (FuzzTesting/ builds them for libFuzzer)
//   SigmaBench     benchmarks (kept out of the libraries, as swift-nio and swift-collections do)
//   sigma          the command-line tool
import PackageDescription

/// SwiftPM compiles C at -O0 in debug builds, which makes AES 12-30x slower (measured, swift-on-linux.md §2a);
/// the later -O3 overrides it, so `swift build` and `swift test` run the kernels at full speed.
/// No -maes/-mavx flags: each accelerated function carries its own target attribute and is chosen at run time
/// by CPUID, so the same binary runs on CPUs (and under valgrind) without VAES or AVX-512.
let cKernelFlags: [CSetting] = [.unsafeFlags(["-O3"])]

/// The Swift loops of the FSS, ring, protocol and model layers (key generation, share arithmetic, the float
/// reference's products) sit on the hot path of every protocol and test; at -Onone they run 10-100x slower, which
/// would make `swift test` crawl. -O here keeps debug builds usable; assertions still come from the test targets.
let hotSwiftFlags: [SwiftSetting] = [.unsafeFlags(["-O"])]

let package = Package(
    name: "Sigma",
    products: [
        .executable(name: "sigma", targets: ["sigma"]),
        .library(name: "FSS", targets: ["FSS"]),
        .library(name: "SigmaRuntime", targets: ["Ring", "Protocols", "Transport", "Models"]),
        .library(name: "SigmaFuzzTargets", targets: ["SigmaFuzzTargets"]),
    ],
    targets: [
        .target(name: "CSigmaKernels", cSettings: cKernelFlags),
        .target(name: "FSS", dependencies: ["CSigmaKernels"], swiftSettings: hotSwiftFlags),
        .target(name: "CRingKernels", cSettings: cKernelFlags),
        .target(name: "Ring", dependencies: ["CRingKernels"], swiftSettings: hotSwiftFlags),
        .target(name: "Protocols", dependencies: ["FSS", "Ring"], swiftSettings: hotSwiftFlags),
        // TLS 1.3 and key-file MACs through OpenSSL (libssl-dev is on the base image; scripts/setup.sh installs it
        // elsewhere). -O3 as for the kernels: the shim is thin, OpenSSL's own code is already optimised.
        .target(
            name: "CSigmaCrypto", cSettings: cKernelFlags,
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
        .target(name: "Transport", dependencies: ["Protocols", "Ring", "CSigmaCrypto"]),
        .target(name: "Models", dependencies: ["Protocols", "Ring"], swiftSettings: hotSwiftFlags),
        .target(
            name: "SigmaBench", dependencies: ["FSS", "CSigmaKernels", "Ring", "Protocols", "Transport"],
            swiftSettings: hotSwiftFlags),
        // The parsers that read outside bytes, as fuzz entry points: FuzzTesting/ wraps them for libFuzzer and the
        // tests replay their seeds and regressions.
        .target(
            name: "SigmaFuzzTargets", dependencies: ["FSS", "Protocols", "Transport", "Models"],
            swiftSettings: hotSwiftFlags),
        .executableTarget(
            name: "sigma",
            dependencies: ["CSigmaKernels", "FSS", "Ring", "Protocols", "Transport", "Models", "SigmaBench"]),
        // OpenSSL's AES is a test oracle only (ECB on random data): the FSS kernels never call it.
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .testTarget(name: "FSSTests", dependencies: ["FSS", "CSigmaKernels", "COpenSSL"]),
        .testTarget(name: "RingTests", dependencies: ["Ring", "CRingKernels"]),
        .testTarget(name: "ProtocolsTests", dependencies: ["Protocols", "FSS", "Ring"]),
        .testTarget(name: "TransportTests", dependencies: ["Transport", "Protocols", "Ring", "CSigmaCrypto"]),
        .testTarget(name: "FuzzRegressionTests", dependencies: ["SigmaFuzzTargets"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Protocols", "Ring", "FSS", "Transport", "sigma"]),
    ]
)
