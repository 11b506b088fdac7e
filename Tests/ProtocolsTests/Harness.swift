import FSS
import Foundation
import Protocols
import Ring

/// One computation run four ways: in cleartext, by the dealer, and by both parties over an in-process channel.
struct Runs<Wire: Sendable>: Sendable {
    var clear: Wire
    var masks: Wire
    var p0: Wire
    var p1: Wire
    var p0Statistics: ChannelStatistics
    var keyBytes: (p0: Int, p1: Int)
}

final class ResultSlot<T>: @unchecked Sendable {  // written before a semaphore signal, read after the wait
    var value: Result<T, any Error>?
}

func runEverywhere<Wire: Sendable>(
    seed: UInt64 = 1, _ computation: @escaping @Sendable (any RingBackend) throws -> Wire
) throws -> Runs<Wire> {
    let clear = try computation(Cleartext())
    let sink0 = MemoryKeySink()
    let sink1 = MemoryKeySink()
    let dealer = Dealer(p0: sink0, p1: sink1, random: SecureRandom(insecureTestSeed: seed))
    let masks = try computation(dealer)
    let (channel0, channel1) = LocalChannel.pair(timeout: 30)
    let keys0 = sink0.bytes
    let keys1 = sink1.bytes
    let slot = ResultSlot<Wire>()
    let done = DispatchSemaphore(value: 0)
    Thread {
        slot.value = Result {
            try computation(PartyContext(party: .p0, keys: KeyStreamReader(copying: keys0), channel: channel0))
        }
        if case .failure = slot.value { channel0.close() }
        done.signal()
    }.start()
    let p1 = Result {
        try computation(PartyContext(party: .p1, keys: KeyStreamReader(copying: keys1), channel: channel1))
    }
    if case .failure = p1 { channel1.close() }
    done.wait()
    return Runs(
        clear: clear, masks: masks, p0: try slot.value!.get(), p1: try p1.get(), p0Statistics: channel0.statistics,
        keyBytes: (keys0.count, keys1.count))
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
