import FSS
import Foundation
import Protocols
import Ring

/// One computation run four ways (`InProcessRun`), with the names the protocol tests use.
struct Runs<Wire: Sendable> {
    var clear: Wire
    var masks: Wire
    var p0: Wire
    var p1: Wire
    var p0Statistics: ChannelStatistics
    /// The client's key bytes.
    var keyBytes: Int
}

func runEverywhere<Wire: Sendable>(
    seed: UInt64 = 1, _ computation: @escaping @Sendable (any RingBackend) throws -> Wire
) throws -> Runs<Wire> {
    let run = try InProcessRun(seed: seed, computation)
    return Runs(
        clear: run.clear, masks: run.dealer, p0: run.server, p1: run.client, p0Statistics: run.statistics,
        keyBytes: run.keyBytes.client)
}

extension Runs where Wire == RingTensor {
    /// The value the parties' masked wire stands for: x̂ − r.
    var secure: [UInt64] { zip(p0.values, masks.values).map { ($0 &- $1) & p0.ring.mask } }
    var partiesAgree: Bool { p0 == p1 }
}

extension Runs where Wire == BitTensor {
    var secure: [UInt8] { zip(p0.bits, masks.bits).map { $0 ^ $1 } }
    var partiesAgree: Bool { p0 == p1 }
}

/// Deterministic test values.
struct TestValues {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state ^ (state >> 29)
    }
    /// Signed values of magnitude below 2^bound, as n-bit words.
    mutating func signed(_ count: Int, magnitudeBits bound: Int, ring: Ring) -> [UInt64] {
        (0..<count).map { _ in
            let magnitude = Int64(next() >> UInt64(64 - bound))
            return ring.word(next() & 1 == 0 ? magnitude : -magnitude)
        }
    }
}
