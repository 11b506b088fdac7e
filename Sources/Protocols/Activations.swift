import FSS
import Foundation
import Ring

// GeLU and SiLU (SIGMA §3.5): f(x) = ReLU(x) − δ(|clip(x)|) with δ = ReLU − f, which is even and vanishes beyond
// the clip (|x| ≥ 4 for GeLU, 16 for SiLU, at f = 12), read from a table indexed by |x| at scale 6.
//
// The reference's GPU protocol takes 5 rounds: truncate x to y = ⌊x/2^{f−6}⌋ (2), reveal the sign and range bits
// of y (1), SelectLin to |clip(y)| (1), the LUT (1), plus the final reveal. Here every bit comes from one reveal on
// the masked input itself, so it takes 4:
//
// 1. from x̂ (m effective bits: n − f + 1 after a truncation, fewer when a range certificate bounds x, see
//    `ActivationTable.inputBits`): d = DReLU(x), i = DReLU(x + S) ⊕ DReLU(x − S) with S = 2^{c}·2^{f−6}
//    (one comparison key on m − 1 bits at three shifts), and the carry κ = 1{x̂ mod 2^{f−6} < r mod 2^{f−6}};
//    the three masked bits go out in one message;
// 2. z = ⌊x/2^{f−6}⌋ mod 2^c = ⌊x̂/2^{f−6}⌋ − ⌊r/2^{f−6}⌋ − κ, and the table index is α·z + β with (α, β)
//    picked by (i, d): z for x ≥ 0, −z − 1 for x < 0, 2^c − 1 beyond the clip — the dealer prepares both for each
//    of the 8 public (î, d̂, κ̂), folding κ and r in — revealed on c bits;
// 3. the LUT's masked sign and value, one message;
// 4. ReLU(x) = Select(d, x) and the LUT's sign fix, combined into one n-bit reveal.

private let activationTag = GateTag("ACTV")

/// A LUT-based activation: GeLU (8-bit table) or SiLU (10-bit table).
public struct ActivationTable: Sendable, Equatable {
    /// Table index bits c: |clip(x)| at scale 6 takes c bits.
    public let indexBits: Int
    /// The fixed-point scale f of the input and output.
    public let scale: Int
    /// T[i]: the midpoint of δ's range over the inputs with index i (see `init`).
    public let table: [UInt64]
    let name: String

    /// GeLU(x) = x·Φ(x); δ(a) = a·Φ(−a) for a ≥ 0, zero at f = 12 beyond |x| = 4.
    public static func gelu(scale: Int = 12) -> ActivationTable {
        ActivationTable(name: "GeLU", indexBits: 8, scale: scale) { a in a * 0.5 * erfc(a / 2.0.squareRoot()) }
    }

    /// SiLU(x) = x·sigmoid(x); δ(a) = a·sigmoid(−a) for a ≥ 0, zero at f = 12 beyond |x| = 16.
    public static func silu(scale: Int = 12) -> ActivationTable {
        ActivationTable(name: "SiLU", indexBits: 10, scale: scale) { a in a / (1 + exp(a)) }
    }

    /// The index of x (in units of 2^−f) is ⌊x / 2^{f−6}⌋ for x ≥ 0 and ⌊(−x − 1) / 2^{f−6}⌋ for x < 0, so index i
    /// serves |x| ∈ [i·2^{f−6}, (i+1)·2^{f−6}] (in units), a single step of 2^−6, on both sides. T[i] is the midpoint
    /// of δ's range there, so the error is at most half of δ's variation over one step plus half a unit: about
    /// 16.5 units at f = 12 where |δ'| ≤ 1/2. (The reference tabulates δ(i/64) at an index that for negative x
    /// rounds away from zero, which spans two steps: up to about 32 units.)
    init(name: String, indexBits: Int, scale: Int, delta: (Double) -> Double) {
        precondition(scale >= 6, "the table index is the input at scale 6")
        self.name = name
        self.indexBits = indexBits
        self.scale = scale
        let step = 1 << (scale - 6)
        let unit = Double(1 << scale)
        table = (0..<(1 << indexBits)).map { i in
            var values = (0...step).map { delta(Double(i * step + $0) / unit) }
            if i == (1 << indexBits) - 1 { values.append(0) }  // the last entry also serves everything beyond the clip
            return UInt64((((values.min()! + values.max()!) / 2) * unit).rounded())
        }
    }

    /// The activation in float, for accuracy checks.
    public func reference(_ x: Double) -> Double {
        name == "GeLU" ? x * 0.5 * erfc(-x / 2.0.squareRoot()) : x / (1 + exp(-x))
    }

    /// The bits m of x the protocol reads: x and x ± S must be m-bit signed values. After a truncation of a product
    /// (|x| < 2^{n−f}), m = n − f + 1 as in the reference; when a range certificate proves |x| < 2^b (in units of
    /// 2^−f), m = max(b, c + f − 6) + 2 if that is smaller: the comparison then runs on m − 1 bits instead of
    /// n − f (for GPT-2's random weights, b = 17: 18 bits instead of 38), the one departure from the reference's width.
    public func inputBits(ring: Ring, magnitudeBits b: Int?) -> Int {
        let afterTruncation = ring.bitwidth - ring.scale + 1
        guard let b else { return afterTruncation }
        return min(afterTruncation, max(b, indexBits + shift) + 2)
    }

    var shift: Int { scale - 6 }
    /// S = (2^c − 1)·2^{f−6}: |⌊x/2^{f−6}⌋| < 2^c − 1 exactly when −S ≤ x < S.
    var clipBound: UInt64 { UInt64((1 << indexBits) - 1) << UInt64(shift) }
    /// SelectLin coefficients by 2i + d: outside the range 2^c − 1; inside, −z − 1 (x < 0) or z (x ≥ 0).
    var alpha: [UInt64] { [0, 0, UInt64((1 << indexBits) - 1), 1] }
    var beta: [UInt64] {
        [UInt64((1 << indexBits) - 1), UInt64((1 << indexBits) - 1), UInt64((1 << indexBits) - 1), 0]
    }
}

extension RingBackend {
    /// GeLU(x) for x at scale f (`ActivationTable.gelu`); `magnitudeBits` b: every |x| < 2^b units, as a range
    /// certificate proves (nil: only that x is a truncated product).
    public func gelu(_ x: RingTensor, magnitudeBits b: Int? = nil) throws -> RingTensor {
        let table = ActivationTable.gelu(scale: x.ring.scale)
        return try activation(x, table, inputBits: table.inputBits(ring: x.ring, magnitudeBits: b))
    }

    /// SiLU(x) for x at scale f (`ActivationTable.silu`), with `magnitudeBits` as for `gelu`.
    public func silu(_ x: RingTensor, magnitudeBits b: Int? = nil) throws -> RingTensor {
        let table = ActivationTable.silu(scale: x.ring.scale)
        return try activation(x, table, inputBits: table.inputBits(ring: x.ring, magnitudeBits: b))
    }
}

extension Cleartext {
    public func activation(_ x: RingTensor, _ activation: ActivationTable, inputBits m: Int) throws -> RingTensor {
        let ring = x.ring
        let c = activation.indexBits
        let values = x.values.map { word -> UInt64 in
            let v = ring.signed(word)
            let y = v >> Int64(activation.shift)
            let inRange = y >= -Int64((1 << c) - 1) && y < Int64((1 << c) - 1)
            let index = inRange ? Int(v >= 0 ? y : -y - 1) : (1 << c) - 1
            return ((v >= 0 ? word : 0) &- activation.table[index]) & ring.mask
        }
        return RingTensor(ring: ring, shape: x.shape, values: values)
    }
}

/// The bits of x a comparison on m − 1 bits reads, and the top bit of the m-bit value.
@inline(__always)
private func effectiveParts(_ value: UInt64, m: Int) -> (low: UInt64, top: UInt8) {
    let reduced = value & ((1 << UInt64(m)) - 1)
    return (reduced & ((1 << UInt64(m - 1)) - 1), UInt8(reduced >> UInt64(m - 1)))
}

extension Dealer {
    public func activation(_ x: RingTensor, _ activation: ActivationTable, inputBits m: Int) throws -> RingTensor {
        let ring = x.ring
        let n = ring.bitwidth
        precondition(m > activation.indexBits + activation.shift && m <= n, "m holds x ± S and fits the ring")
        let c = activation.indexBits
        let indexRing = Ring(bitwidth: c, scale: 0)
        let count = x.count
        let r = x.values
        try beginGate(activationTag, count: count)
        // Round 1: one comparison key at three shifts, and the carry of the low f − 6 bits.
        let comparison = DPF.generate(alphas: r.map { effectiveParts($0, m: m).low }, inputBits: m - 1, random: &random)
        try p0.dpf(comparison.p0)
        try p1.dpf(comparison.p1)
        let signMasks = randomBits(count)
        let rangeMasks = randomBits(count)
        try shareBits((0..<count).map { effectiveParts(r[$0], m: m).top ^ signMasks[$0] })  // d: MSB(r) ⊕ m_d
        try shareBits(rangeMasks)  // i: MSB(r) cancels between its two comparisons
        let carryMasks = try maskedComparisonKeys(
            alphas: r.map { $0 & ((1 << UInt64(activation.shift)) - 1) }, bits: activation.shift)
        // Round 2: |clip(y)| for each public (î, d̂, κ̂) = combination 4î + 2d̂ + κ̂, element-major so a party
        // unpacks only the one it uses.
        let indexMasks = randomWords(count, bits: c)
        var slopes = [UInt64](repeating: 0, count: 8 * count)
        var offsets = slopes
        for i in 0..<count {
            let high = r[i] >> UInt64(activation.shift)
            for combo in 0..<8 {
                let index = Int(2 * (UInt8(combo >> 2) ^ rangeMasks[i]) + (UInt8((combo >> 1) & 1) ^ signMasks[i]))
                let carry = UInt64(UInt8(combo & 1) ^ carryMasks[i])
                let slope = activation.alpha[index]
                slopes[8 * i + combo] = slope
                offsets[8 * i + combo] =
                    (activation.beta[index] &- slope &* (high &+ carry) &+ indexMasks[i]) & indexRing.mask
            }
        }
        try share(slopes, bits: c)
        try share(offsets, bits: c)
        // Rounds 3 and 4: the table, then ReLU(x) − δ combined in one reveal.
        let lookupMasks = try lookupKeys(masks: indexMasks, inputBits: c, output: ring)
        let outputMasks = randomWords(count, ring: ring)
        let signWords = signMasks.map { UInt64($0) }
        try share(signWords, bits: n)
        var whenZero = [UInt64](repeating: 0, count: count)
        var whenOne = whenZero
        for i in 0..<count {
            let folded = outputMasks[i] &+ lookupMasks[i]
            let product = signWords[i] &* r[i]
            whenZero[i] = (folded &- product) & ring.mask
            whenOne[i] = (folded &- r[i] &+ product) & ring.mask
        }
        try candidates(whenZero: whenZero, whenOne: whenOne, bits: n)
        return RingTensor(ring: ring, shape: x.shape, values: outputMasks)
    }
}

extension PartyContext {
    public func activation(_ x: RingTensor, _ activation: ActivationTable, inputBits m: Int) throws -> RingTensor {
        let ring = x.ring
        let n = ring.bitwidth
        let c = activation.indexBits
        let indexMask: UInt64 = (1 << UInt64(c)) - 1
        let count = x.count
        let xh = x.values
        try keys.expectGate(activationTag, count: count)
        // Round 1.
        let comparison = try keys.dpf()
        let signConstant = try keys.bits(count)
        let rangeConstant = try keys.bits(count)
        let carryKeys = try keys.dpf()
        let carryMaskShares = try keys.bits(count)
        let bound = activation.clipBound
        let lowMask: UInt64 = (1 << UInt64(m - 1)) - 1
        let below = comparison.lessThan(
            inputs: xh.map { $0 & lowMask }, shifts: [0, bound & lowMask, (0 &- bound) & lowMask])
        let carryShares = carryKeys.lessThan(at: xh)  // on its low `shift` bits
        let leads: UInt8 = self.leads ? 1 : 0
        let top = UInt64(m - 1)
        // Pointer loops, masking shifts and no branch on a revealed bit: this runs per element (GPT-2: 4.7 M).
        let bits = [UInt8](unsafeUninitializedCapacity: 3 * count) { bits, initialized in
            xh.withUnsafeBufferPointer { xh in
                below.withUnsafeBufferPointer { below in
                    for i in 0..<count {
                        let topBit = UInt8(truncatingIfNeeded: xh[i] &>> top) & 1
                        let topPlus = UInt8(truncatingIfNeeded: (xh[i] &+ bound) &>> top) & 1
                        let topMinus = UInt8(truncatingIfNeeded: (xh[i] &- bound) &>> top) & 1
                        let sign = (leads & (1 ^ topBit)) ^ signConstant[i] ^ below[3 * i]
                        let range =
                            (leads & (topPlus ^ topMinus)) ^ rangeConstant[i] ^ below[3 * i + 1] ^ below[3 * i + 2]
                        bits[3 * i] = sign & 1
                        bits[3 * i + 1] = range & 1
                        bits[3 * i + 2] = (carryShares[i] ^ carryMaskShares[i]) & 1
                    }
                }
            }
            initialized = 3 * count
        }
        let revealedBits = try reconstructBits(bits)
        // Round 2.
        let combos = [UInt8](unsafeUninitializedCapacity: count) { combos, initialized in
            revealedBits.withUnsafeBufferPointer { revealed in
                for i in 0..<count { combos[i] = revealed[3 * i + 1] << 2 | revealed[3 * i] << 1 | revealed[3 * i + 2] }
            }
            initialized = count
        }
        let slope = try keys.chosenWords(candidates: 8, bits: c, choices: combos)
        let offset = try keys.chosenWords(candidates: 8, bits: c, choices: combos)
        let shift = UInt64(activation.shift)
        let indexShares = [UInt64](unsafeUninitializedCapacity: count) { out, initialized in
            xh.withUnsafeBufferPointer { xh in
                for i in 0..<count { out[i] = (slope[i] &* (xh[i] &>> shift) &+ offset[i]) & indexMask }
            }
            initialized = count
        }
        let index = try reconstruct(indexShares, bits: c)
        // Round 3.
        let lookup = try lookupShares(index, table: activation.table, output: ring)
        // Round 4: Select(d, x) − (T + r_lookup), with the dealer's candidates folding both output masks.
        let selectMask = try keys.words(count, bits: n)
        let signs = [UInt8](unsafeUninitializedCapacity: count) { signs, initialized in
            revealedBits.withUnsafeBufferPointer { revealed in for i in 0..<count { signs[i] = revealed[3 * i] } }
            initialized = count
        }
        let constant = try pickCandidates(signs, bits: n)
        let leadWord: UInt64 = self.leads ? ~0 : 0
        let mask = ring.mask
        let shares = [UInt64](unsafeUninitializedCapacity: count) { out, initialized in
            xh.withUnsafeBufferPointer { xh in
                for i in 0..<count {
                    // d = 0: r_s·x̂; d = 1: [b = 0]·x̂ − r_s·x̂.
                    let d = UInt64(signs[i])
                    let masked = selectMask[i] &* xh[i]
                    let linear = (xh[i] & leadWord) &* d &+ masked &* (1 &- 2 &* d)
                    out[i] = (linear &+ constant[i] &- lookup[i]) & mask
                }
            }
            initialized = count
        }
        return RingTensor(ring: ring, shape: x.shape, values: try reconstruct(shares, bits: n))
    }
}
