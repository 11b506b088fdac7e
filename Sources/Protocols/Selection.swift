import FSS
import Ring

// DReLU, Select and SelectLin (SIGMA §3.2, §3.3).

private let dreluTag = GateTag("DREL")
private let selectTag = GateTag("SELC")
private let selectLinearTag = GateTag("SLIN")

extension Cleartext {
    public func drelu(_ x: RingTensor) throws -> BitTensor {
        BitTensor(shape: x.shape, bits: x.values.map { x.ring.signed($0) >= 0 ? 1 : 0 })
    }

    public func select(_ s: BitTensor, _ x: RingTensor) throws -> RingTensor {
        RingTensor(ring: x.ring, shape: x.shape, values: zip(s.bits, x.values).map { $0 == 1 ? $1 : 0 })
    }

    public func selectLinear(
        _ s0: BitTensor, _ s1: BitTensor, _ x: RingTensor, alpha: [UInt64], beta: [UInt64], output: Ring
    ) throws -> RingTensor {
        let values = (0..<x.count).map { i -> UInt64 in
            let index = Int(2 * s0.bits[i] + s1.bits[i])
            return alpha[index] &* x.values[i] &+ beta[index]
        }
        return RingTensor(ring: output, shape: x.shape, values: values)
    }
}

extension Dealer {
    /// DReLU(x) = 1 ⊕ MSB(x) = 1 ⊕ MSB(x̂) ⊕ MSB(r) ⊕ 1{x̂ mod 2^{n−1} < r mod 2^{n−1}}: one DPF comparison on n − 1
    /// bits and one revealed bit, masked by a fresh output bit.
    public func drelu(_ x: RingTensor) throws -> BitTensor {
        let n = x.ring.bitwidth
        try beginGate(dreluTag, count: x.count)
        let low: UInt64 = (1 << UInt64(n - 1)) - 1
        let keys = DPF.generate(alphas: x.values.map { $0 & low }, inputBits: n - 1, random: &random)
        try p0.dpf(keys.p0)
        try p1.dpf(keys.p1)
        let outputMasks = randomBits(x.count)
        try shareBits((0..<x.count).map { UInt8(x.values[$0] >> UInt64(n - 1)) ^ outputMasks[$0] })
        return BitTensor(shape: x.shape, bits: outputMasks)
    }

    /// Select (after Orca), with s = ŝ ⊕ m: s·x = m·x̂ − m·r when ŝ = 0 and x̂ − r − m·x̂ + m·r when ŝ = 1. Three
    /// words of key: shares of m, and of the constant term for each ŝ (the reference stores five).
    public func select(_ s: BitTensor, _ x: RingTensor) throws -> RingTensor {
        let ring = x.ring
        try beginGate(selectTag, count: x.count)
        let outputMasks = randomWords(x.count, ring: ring)
        let m = s.bits.map { UInt64($0) }
        try share(m, bits: ring.bitwidth)
        try candidates(
            whenZero: (0..<x.count).map { (outputMasks[$0] &- m[$0] &* x.values[$0]) & ring.mask },
            whenOne: (0..<x.count).map { (outputMasks[$0] &- x.values[$0] &+ m[$0] &* x.values[$0]) & ring.mask },
            bits: ring.bitwidth)
        return RingTensor(ring: ring, shape: x.shape, values: outputMasks)
    }

    /// SelectLin: for each public pair (ŝ0, ŝ1) the dealer shares (c0, c1) with c0 = α_i, c1 = β_i − α_i·r + r_out,
    /// i = 2(ŝ0 ⊕ m0) + (ŝ1 ⊕ m1), so the parties compute c0·x̂ + c1 without learning i.
    public func selectLinear(
        _ s0: BitTensor, _ s1: BitTensor, _ x: RingTensor, alpha: [UInt64], beta: [UInt64], output: Ring
    ) throws -> RingTensor {
        precondition(output.bitwidth <= x.ring.bitwidth, "SelectLin reduces to a ring no wider than its input")
        try beginGate(selectLinearTag, count: x.count)
        let outputMasks = randomWords(x.count, ring: output)
        for combo in 0..<4 {
            let index = (0..<x.count).map { i in
                Int(2 * (UInt8(combo >> 1) ^ s0.bits[i]) + (UInt8(combo & 1) ^ s1.bits[i]))
            }
            try share(index.map { alpha[$0] & output.mask }, bits: output.bitwidth)
            try share(
                (0..<x.count).map { i in
                    (beta[index[i]] &- alpha[index[i]] &* x.values[i] &+ outputMasks[i]) & output.mask
                }, bits: output.bitwidth)
        }
        return RingTensor(ring: output, shape: x.shape, values: outputMasks)
    }
}

extension PartyContext {
    public func drelu(_ x: RingTensor) throws -> BitTensor {
        let n = x.ring.bitwidth
        try keys.expectGate(dreluTag, count: x.count)
        let low: UInt64 = (1 << UInt64(n - 1)) - 1
        let dpf = try keys.dpf()
        let constant = try keys.bits(x.count)
        let below = dpf.lessThan(at: x.values.map { $0 & low })
        let shares = (0..<x.count).map { i -> UInt8 in
            let publicTerm = leads ? 1 ^ UInt8(x.values[i] >> UInt64(n - 1)) : 0
            return publicTerm ^ constant[i] ^ below[i]
        }
        return BitTensor(shape: x.shape, bits: try reconstructBits(shares))
    }

    public func select(_ s: BitTensor, _ x: RingTensor) throws -> RingTensor {
        let ring = x.ring
        try keys.expectGate(selectTag, count: x.count)
        let m = try keys.words(x.count, bits: ring.bitwidth)
        let constant = try pickCandidates(s.bits, bits: ring.bitwidth)
        let shares = (0..<x.count).map { i -> UInt64 in
            let xh = x.values[i]
            let linear = s.bits[i] == 0 ? m[i] &* xh : (leads ? xh : 0) &- m[i] &* xh
            return (linear &+ constant[i]) & ring.mask
        }
        return RingTensor(ring: ring, shape: x.shape, values: try reconstruct(shares, bits: ring.bitwidth))
    }

    public func selectLinear(
        _ s0: BitTensor, _ s1: BitTensor, _ x: RingTensor, alpha: [UInt64], beta: [UInt64], output: Ring
    ) throws -> RingTensor {
        try keys.expectGate(selectLinearTag, count: x.count)
        var slope = [UInt64](repeating: 0, count: x.count)
        var offset = slope
        for combo in 0..<4 {
            let c0 = try keys.words(x.count, bits: output.bitwidth)
            let c1 = try keys.words(x.count, bits: output.bitwidth)
            for i in 0..<x.count where Int(2 * s0.bits[i] + s1.bits[i]) == combo {
                slope[i] = c0[i]
                offset[i] = c1[i]
            }
        }
        let shares = (0..<x.count).map { (slope[$0] &* x.values[$0] &+ offset[$0]) & output.mask }
        return RingTensor(ring: output, shape: x.shape, values: try reconstruct(shares, bits: output.bitwidth))
    }
}
