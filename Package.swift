// swift-tools-version:6.0
// Sigma: secure two-party transformer inference from function secret sharing.
//
// Layers, arrows pointing down (a module imports only modules above it in this list):
//   CSigmaKernels  C: batched AES (VAES-512 / VAES-256 / AES-NI / portable), fixed-key hash PRG, DPF level kernels
//   CRingKernels   C: Z_2^64 matrix products (AVX-512 vpmullq / AVX2 / scalar; chosen at run time)
//   FSS            DPF with early termination, DPF comparison, full-domain evaluation, DCF, key encoding, randomness
//   Ring           fixed-point rings Z_2^n, tensors, bit-packing to a value's width, ring matrix products
//   Protocols      masked wires and gates (keygen beside evaluation), key streams, the Channel interface
//   Transport      TCP channels (POSIX sockets on dedicated threads), key files
//   Models         model graphs written once against an Evaluator (float, fixed point, dealer, party)
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
    ],
    targets: [
        .target(name: "CSigmaKernels", cSettings: cKernelFlags),
        .target(name: "FSS", dependencies: ["CSigmaKernels"], swiftSettings: hotSwiftFlags),
        .target(name: "CRingKernels", cSettings: cKernelFlags),
        .target(name: "Ring", dependencies: ["CRingKernels"], swiftSettings: hotSwiftFlags),
        .target(name: "Protocols", dependencies: ["FSS", "Ring"], swiftSettings: hotSwiftFlags),
        .target(name: "Transport", dependencies: ["Protocols", "Ring"]),
        .target(name: "Models", dependencies: ["Protocols", "Ring"], swiftSettings: hotSwiftFlags),
        .target(
            name: "SigmaBench", dependencies: ["FSS", "CSigmaKernels", "Ring", "Protocols", "Transport"],
            swiftSettings: hotSwiftFlags),
        .executableTarget(
            name: "sigma", dependencies: ["FSS", "Ring", "Protocols", "Transport", "Models", "SigmaBench"]),
        // OpenSSL is a test oracle only (AES-128-ECB on random data); nothing on the inference path links it.
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .testTarget(name: "FSSTests", dependencies: ["FSS", "CSigmaKernels", "COpenSSL"]),
        .testTarget(name: "RingTests", dependencies: ["Ring", "CRingKernels"]),
        .testTarget(name: "ProtocolsTests", dependencies: ["Protocols", "FSS", "Ring"]),
        .testTarget(name: "TransportTests", dependencies: ["Transport", "Protocols", "Ring"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Protocols", "Ring", "FSS", "sigma"]),
    ]
)
