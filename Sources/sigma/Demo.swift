import Dispatch
import FSS
import Foundation

/// `sigma demo`: what the system can run end to end today.
///
/// Until the two-party runtime (dealer, server and client as processes over TCP) lands, the demo runs the
/// FSS core's central gate, DReLU on masked values (SIGMA §3.2), with the dealer and both parties in this
/// process, and checks the result against cleartext.
enum Demo {
    static func run(count: Int = 1 << 20, bits: Int = 50) -> String {
        var dealerRandom = SecureRandom()
        var clientRandom = SecureRandom()
        let half = UInt64(1) << UInt64(bits - 1)
        let mask = (half << 1) &- 1
        let lowMask = half - 1

        // Client's secret inputs: signed 50-bit values, among them the edges 0, ±1 and ±(2^48 − 1).
        var inputs = clientRandom.values(count, bits: bits - 2).map { $0 &- (half >> 1) }
        inputs.replaceSubrange(0..<5, with: [0, 1, 0 &- 1, (half >> 1) - 1, 0 &- ((half >> 1) - 1)])
        inputs = inputs.map { $0 & mask }

        // Dealer (offline): input masks r, a comparison key on n−1 bits for α = r mod 2^{n−1}, and shares of
        // MSB(r) ⊕ 1.
        var keys: (p0: DPFKeys, p1: DPFKeys)!
        var masks: [UInt64] = []
        var bitShares0: [UInt8] = []
        var bitShares1: [UInt8] = []
        let keygen = time {
            masks = dealerRandom.values(count, bits: bits)
            keys = DPF.generate(alphas: masks.map { $0 & lowMask }, inputBits: bits - 1, random: &dealerRandom)
            bitShares0 = dealerRandom.values(count, bits: 1).map { UInt8($0) }
            bitShares1 = (0..<count).map { bitShares0[$0] ^ UInt8(masks[$0] >> UInt64(bits - 1)) ^ 1 }
        }

        // Online: the wire carries x̂ = x + r; each party evaluates its key on x̂ mod 2^{n−1}.
        let masked = (0..<count).map { (inputs[$0] &+ masks[$0]) & mask }
        let low = masked.map { $0 & lowMask }
        var share0: [UInt8] = []
        var share1: [UInt8] = []
        let threads = ProcessInfo.processInfo.activeProcessorCount
        let online = time {
            let t0 = keys.p0.lessThan(at: low, threads: threads)
            let t1 = keys.p1.lessThan(at: low, threads: threads)
            share0 = (0..<count).map { t0[$0] ^ bitShares0[$0] }
            share1 = (0..<count).map { t1[$0] ^ bitShares1[$0] ^ UInt8(masked[$0] >> UInt64(bits - 1)) }
        }
        let secure = zip(share0, share1).map { $0 ^ $1 }
        let clear = inputs.map { UInt8(($0 >> UInt64(bits - 1)) ^ 1) }
        let matches = secure == clear
        let keyBytes = keys.p0.encoded.count + count / 8
        return """
            Sigma demo: DReLU (x ≥ 0) on \(count) secret \(bits)-bit fixed-point values
              dealer (offline):  \(format(keygen)) s for \(count) comparison keys, \(keyBytes / count) bytes per key per party
              parties (online):  \(format(online)) s for both parties' evaluations on \(threads) threads (AES: \(AESBackend.best))
              wire per party:    \(bits) bits of masked input + 1 bit of output share per value
              result:            \(matches ? "secure result equals the cleartext result on every value" : "MISMATCH against cleartext")
            Dealer and both parties run in this process for now; the networked runtime is next.
            """
    }

    static func time(_ body: () -> Void) -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    static func format(_ seconds: Double) -> String { String((seconds * 1000).rounded() / 1000) }
}
