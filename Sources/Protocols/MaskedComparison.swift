import FSS
import Ring

// The step every truncation and comparison gate shares: for a public value v and the dealer's α, the parties
// learn ĉ = 1{v < α} ⊕ m, where only the dealer knows the mask bit m. The DPF comparison gives XOR shares of
// 1{v < α}; each party adds its XOR share of m and the two reveal ĉ (one bit each way). The dealer then prepares
// two candidate shares of whatever the gate needs, one for each value of ĉ, and each party takes the one ĉ picks
// (SIGMA §3.4: "two candidate output corrections indexed by the revealed masked bit").

extension Dealer {
    /// Keys for ĉ = 1{v < α} ⊕ m on `bits`-bit values; returns the mask bits m.
    func maskedComparisonKeys(alphas: [UInt64], bits: Int) throws -> [UInt8] {
        let keys = DPF.generate(alphas: alphas, inputBits: bits, random: &random)
        try p0.dpf(keys.p0)
        try p1.dpf(keys.p1)
        let masks = randomBits(alphas.count)
        try shareBits(masks)
        return masks
    }

    /// Shares of `whenZero[i]` and `whenOne[i]` (mod 2^bits), for the party to pick by a revealed bit; element-major
    /// (whenZero[0], whenOne[0], whenZero[1], …) so that a party unpacks only the one it picks.
    func candidates(whenZero: [UInt64], whenOne: [UInt64], bits: Int) throws {
        precondition(whenZero.count == whenOne.count)
        var interleaved = [UInt64](repeating: 0, count: 2 * whenZero.count)
        for i in 0..<whenZero.count {
            interleaved[2 * i] = whenZero[i]
            interleaved[2 * i + 1] = whenOne[i]
        }
        try share(interleaved, bits: bits)
    }
}

extension PartyContext {
    /// ĉ = 1{v < α} ⊕ m for public `bits`-bit values v: one round.
    /// Bits of `values` at and above `bits` are ignored (the DPF reads only its domain's bits).
    func maskedComparison(_ values: [UInt64], bits: Int) throws -> [UInt8] {
        let keys = try self.keys.dpf()
        let maskShares = try self.keys.bits(values.count)
        var shares = keys.lessThan(at: values)
        shares.withUnsafeMutableBufferPointer { shares in
            maskShares.withUnsafeBufferPointer { masks in
                for i in 0..<shares.count { shares[i] ^= masks[i] }
            }
        }
        return try reconstructBits(shares)
    }

    /// This party's share of the candidate each revealed bit picks.
    func pickCandidates(_ revealed: [UInt8], bits: Int) throws -> [UInt64] {
        try keys.chosenWords(candidates: 2, bits: bits, choices: revealed)
    }
}
