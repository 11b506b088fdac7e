import FSS
import Ring

// Truncations (SIGMA §3.4). Write x̂ = x + r mod 2^n, and split a value v into v_h = ⌊v / 2^f⌋ and
// v_l = v mod 2^f. Subtracting r from x̂ borrows from the high part exactly when x̂_l < r_l, so
//
//     TR_{n,f}(x) = x̂_h − r_h − 1{x̂_l < r_l}   (mod 2^{n−f}),
//
// which needs one comparison on f bits. Each gate reveals the masked carry bit, then its output: two rounds, from a
// DPF comparison. Small tensors (per-row values: LayerNorm's mean, softmax's row sums) take the carry instead as
// arithmetic shares from a DCF and reveal only the output: one round, for twice the AES calls and 24 rather than 16
// key bytes per input bit, which matter only per element of large tensors.

/// Tensors of at most this many elements take their truncations in one round (a DCF for the carry).
public let oneRoundTruncationLimit = 4096

private let truncateReduceTag = GateTag("TRUN")
private let gapARSTag = GateTag("GARS")
private let faithfulARSTag = GateTag("FARS")

@inline(__always)
private func lowMask(_ bits: Int) -> UInt64 { bits >= 64 ? ~0 : (1 << UInt64(bits)) - 1 }

/// Key bits of GapARS's wrap-term shares: f (at least one; by 0 the term 2^n·MSB(r) vanishes anyway).
private func gapARSWrapBits(_ f: Int) -> Int { max(1, f) }

extension Cleartext {
    public func truncateReduce(_ x: RingTensor, by f: Int) throws -> RingTensor {
        let output = Ring(bitwidth: x.ring.bitwidth - f, scale: max(0, x.ring.scale - f))
        return RingTensor(ring: output, shape: x.shape, values: x.values.map { $0 >> UInt64(f) })
    }

    public func gapARS(_ x: RingTensor, by f: Int) throws -> RingTensor { arithmeticShift(x, by: f) }

    public func faithfulARS(_ x: RingTensor, by f: Int) throws -> RingTensor { arithmeticShift(x, by: f) }

    func arithmeticShift(_ x: RingTensor, by f: Int) -> RingTensor {
        RingTensor(ring: x.ring, shape: x.shape, values: x.values.map { x.ring.word(x.ring.signed($0) >> Int64(f)) })
    }
}

extension Dealer {
    /// DCF keys giving shares mod 2^`payloadBits` of the carry 1{v_l < α} for public `bits`-bit values v_l.
    func carryShareKeys(alphas: [UInt64], bits: Int, payloadBits: Int) throws {
        let keys = DCF.generate(
            alphas: alphas, payloads: [UInt64](repeating: 1, count: alphas.count), inputBits: bits,
            payloadBits: payloadBits, random: &random)
        try p0.dcf(keys.p0)
        try p1.dcf(keys.p1)
    }

    /// TR keys for input mask r (n bits); returns the output mask (n − f bits).
    func truncateReduceKeys(_ masks: [UInt64], n: Int, f: Int) throws -> [UInt64] {
        if masks.count <= oneRoundTruncationLimit {
            try carryShareKeys(alphas: masks.map { $0 & lowMask(f) }, bits: f, payloadBits: n - f)
            let outputMasks = randomWords(masks.count, bits: n - f)
            try share(
                (0..<masks.count).map { (outputMasks[$0] &- (masks[$0] >> UInt64(f))) & lowMask(n - f) }, bits: n - f)
            return outputMasks
        }
        let carryMasks = try maskedComparisonKeys(alphas: masks.map { $0 & lowMask(f) }, bits: f)
        let outputMasks = randomWords(masks.count, bits: n - f)
        // Candidate for a revealed bit ĉ: r_out − r_h − c with c = ĉ ⊕ m.
        let candidate = { (revealed: UInt8) in
            (0..<masks.count).map { i in
                (outputMasks[i] &- (masks[i] >> UInt64(f)) &- UInt64(revealed ^ carryMasks[i])) & lowMask(n - f)
            }
        }
        try candidates(whenZero: candidate(0), whenOne: candidate(1), bits: n - f)
        return outputMasks
    }

    public func truncateReduce(_ x: RingTensor, by f: Int) throws -> RingTensor {
        try beginGate(truncateReduceTag, count: x.count)
        let output = Ring(bitwidth: x.ring.bitwidth - f, scale: max(0, x.ring.scale - f))
        return RingTensor(
            ring: output, shape: x.shape, values: try truncateReduceKeys(x.values, n: x.ring.bitwidth, f: f))
    }

    /// GapARS (SIGMA Fig. 2): for x ∈ [−2^{n−2}, 2^{n−2}), x' = x + 2^{n−2} has MSB 0, so the wrap of x̂' = x' + r
    /// is (1 − MSB(x̂'))·MSB(r), known locally, and ARS(x) = LRS(x') − 2^{n−f−2} needs only the f-bit carry.
    public func gapARS(_ x: RingTensor, by f: Int) throws -> RingTensor {
        let n = x.ring.bitwidth
        try beginGate(gapARSTag, count: x.count)
        if x.count <= oneRoundTruncationLimit {
            try carryShareKeys(alphas: x.values.map { $0 & lowMask(f) }, bits: f, payloadBits: n)
            let outputMasks = randomWords(x.count, ring: x.ring)
            try share(
                (0..<x.count).map { i in
                    (outputMasks[i] &- (x.values[i] >> UInt64(f)) &- (1 << UInt64(n - f - 2))) & x.ring.mask
                }, bits: n)
            try shareWrapTerm(x.values, n: n, f: f)
            return RingTensor(ring: x.ring, shape: x.shape, values: outputMasks)
        }
        let carryMasks = try maskedComparisonKeys(alphas: x.values.map { $0 & lowMask(f) }, bits: f)
        let outputMasks = randomWords(x.count, ring: x.ring)
        let candidate = { (revealed: UInt8) in
            (0..<x.count).map { i in
                (outputMasks[i] &- (x.values[i] >> UInt64(f)) &- (1 << UInt64(n - f - 2))
                    &- UInt64(revealed ^ carryMasks[i])) & x.ring.mask
            }
        }
        try candidates(whenZero: candidate(0), whenOne: candidate(1), bits: n)
        try shareWrapTerm(x.values, n: n, f: f)
        return RingTensor(ring: x.ring, shape: x.shape, values: outputMasks)
    }

    /// The wrap term 2^{n−f}·MSB(r) as shares of MSB(r) mod 2^f, which the parties scale by 2^{n−f}: a multiple
    /// of 2^{n−f} needs only its top f bits shared (f rather than n key bits per element, ≈ 5 bytes less).
    private func shareWrapTerm(_ masks: [UInt64], n: Int, f: Int) throws {
        try share(masks.map { $0 >> UInt64(n - 1) }, bits: gapARSWrapBits(f))
    }

    /// Faithful ARS = TR then sign extension (SIGMA Thm. 5): with v = x + 2^{n−1} (unsigned), z = TR(v) ∈ [0, 2^m)
    /// for m = n − f, and ARS(x) = z − 2^{m−1}. From ẑ = z + r_z, z = ẑ − r_z + 2^m·1{ẑ < r_z}: one m-bit comparison.
    public func faithfulARS(_ x: RingTensor, by f: Int) throws -> RingTensor {
        let n = x.ring.bitwidth
        let m = n - f
        try beginGate(faithfulARSTag, count: x.count)
        let zMasks = try truncateReduceKeys(x.values, n: n, f: f)
        let wrapMasks = try maskedComparisonKeys(alphas: zMasks, bits: m)
        let outputMasks = randomWords(x.count, ring: x.ring)
        let candidate = { (revealed: UInt8) in
            (0..<x.count).map { i in
                (outputMasks[i] &- zMasks[i] &+ (UInt64(revealed ^ wrapMasks[i]) << UInt64(m))
                    &- (1 << UInt64(m - 1))) & x.ring.mask
            }
        }
        try candidates(whenZero: candidate(0), whenOne: candidate(1), bits: n)
        return RingTensor(ring: x.ring, shape: x.shape, values: outputMasks)
    }
}

extension PartyContext {
    /// Shares mod 2^`payloadBits` of the carry 1{v_l < α} at the low `bits` bits of public values (one DCF batch).
    func carryShares(_ values: [UInt64], bits: Int) throws -> [UInt64] {
        try keys.dcf().evaluate(at: values.map { $0 & lowMask(bits) })
    }

    func truncateReduceShares(_ masked: [UInt64], n: Int, f: Int) throws -> [UInt64] {
        if masked.count <= oneRoundTruncationLimit {
            let carries = try carryShares(masked, bits: f)
            let base = try keys.words(masked.count, bits: n - f)
            let shares = (0..<masked.count).map { i in
                ((leads ? masked[i] >> UInt64(f) : 0) &+ base[i] &- carries[i]) & lowMask(n - f)
            }
            return try reconstruct(shares, bits: n - f)
        }
        let carries = try maskedComparison(masked.map { $0 & lowMask(f) }, bits: f)
        let picked = try pickCandidates(carries, bits: n - f)
        let shares = (0..<masked.count).map { i in
            ((leads ? masked[i] >> UInt64(f) : 0) &+ picked[i]) & lowMask(n - f)
        }
        return try reconstruct(shares, bits: n - f)
    }

    public func truncateReduce(_ x: RingTensor, by f: Int) throws -> RingTensor {
        try keys.expectGate(truncateReduceTag, count: x.count)
        let output = Ring(bitwidth: x.ring.bitwidth - f, scale: max(0, x.ring.scale - f))
        return RingTensor(
            ring: output, shape: x.shape, values: try truncateReduceShares(x.values, n: x.ring.bitwidth, f: f))
    }

    public func gapARS(_ x: RingTensor, by f: Int) throws -> RingTensor {
        let n = x.ring.bitwidth
        let mask = x.ring.mask
        try keys.expectGate(gapARSTag, count: x.count)
        let offset: UInt64 = 1 << UInt64(n - 2)
        let shifted = [UInt64](unsafeUninitializedCapacity: x.count) { out, initialized in  // x̂' = x̂ + 2^{n−2}
            x.values.withUnsafeBufferPointer { values in
                for i in 0..<values.count { out[i] = (values[i] &+ offset) & mask }
            }
            initialized = x.count
        }
        let picked: [UInt64]
        if x.count <= oneRoundTruncationLimit {
            let carries = try carryShares(shifted, bits: f)
            let base = try keys.words(x.count, bits: n)
            picked = (0..<x.count).map { (base[$0] &- carries[$0]) & mask }
        } else {
            picked = try pickCandidates(try maskedComparison(shifted, bits: f), bits: n)  // on the low f bits
        }
        let wrapTerm = try keys.words(x.count, bits: gapARSWrapBits(f))  // MSB(r) mod 2^f, scaled below
        let lead = leads
        let shares = [UInt64](unsafeUninitializedCapacity: x.count) { out, initialized in
            shifted.withUnsafeBufferPointer { shifted in
                picked.withUnsafeBufferPointer { picked in
                    wrapTerm.withUnsafeBufferPointer { wrapTerm in
                        // Branch-free (the top bit is random) and with masking shifts (n, f < 64).
                        let highMask: UInt64 = lead ? ~0 : 0
                        let (top, low, high) = (UInt64(n - 1), UInt64(f), UInt64(n - f))
                        for i in 0..<shifted.count {
                            let v = shifted[i]
                            let wrap = (wrapTerm[i] &<< high) & ((v &>> top) &- 1)  // when the top bit of x̂' is 0
                            out[i] = ((v &>> low) & highMask &+ wrap &+ picked[i]) & mask
                        }
                    }
                }
            }
            initialized = x.count
        }
        return RingTensor(ring: x.ring, shape: x.shape, reducedValues: try reconstruct(shares, bits: n))
    }

    public func faithfulARS(_ x: RingTensor, by f: Int) throws -> RingTensor {
        let n = x.ring.bitwidth
        let m = n - f
        try keys.expectGate(faithfulARSTag, count: x.count)
        let shifted = x.values.map { ($0 &+ (1 << UInt64(n - 1))) & x.ring.mask }  // v̂ = x̂ + 2^{n−1}
        let z = try truncateReduceShares(shifted, n: n, f: f)
        let wraps = try maskedComparison(z, bits: m)
        let picked = try pickCandidates(wraps, bits: n)
        let shares = (0..<x.count).map { i in ((leads ? z[i] : 0) &+ picked[i]) & x.ring.mask }
        return RingTensor(ring: x.ring, shape: x.shape, values: try reconstruct(shares, bits: n))
    }
}

extension RingBackend {
    /// ARS by f with GapARS when `gap` (the caller knows x is in the gap) and the faithful ARS otherwise.
    public func arithmeticShift(_ x: RingTensor, by f: Int, gap: Bool) throws -> RingTensor {
        gap ? try gapARS(x, by: f) : try faithfulARS(x, by: f)
    }
}
