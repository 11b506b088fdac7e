import FSS
import Foundation
import Ring

// Softmax (SIGMA §3.5): y_i = e^{x_i − max} / Σ_j e^{x_j − max}, row by row.
//
// 1. max by a comparison tree, in an effective ring of n − f + 2 bits (fewer when a range certificate bounds the
//    scores, `softmaxEffectiveBits`);
// 2. d = max − x ≥ 0, and e^{−d} from two 8-bit tables: d clipped to 16 bits at scale 12 is c1·2^8 + c0, and
//    e^{−d} = e^{−c1/16} · e^{−c0/4096}. The low byte c0 = d mod 2^8 needs no clipping (beyond the clip the high
//    table entry is already 0), so its masked value is simply x̂ mod 2^8; c1 = min(d ≫ 8, 255) comes from
//    `clippedShift`; the two table values are multiplied and truncated (GapARS);
// 3. the row sum, its inverse from a (⌈log2(k+1)⌉ + 6)-bit table after a truncation by f − 6, and the product.
//
// With the coarse maximum (every model runs it) steps 1 and 2 work on the scores' high bytes: see `softmax`.
//
// A causal mode takes only the lower triangle (row i has i + 1 entries) and returns the full k × k matrix with
// zeros above the diagonal.

private let clippedShiftTag = GateTag("CSHF")

extension Cleartext {
    public func clippedShift(_ x: RingTensor, by s: Int, bits c: Int) throws -> RingTensor {
        let output = Ring(bitwidth: c, scale: 0)
        let limit = UInt64((1 << c) - 1)
        return RingTensor(ring: output, shape: x.shape, values: x.values.map { min($0 >> UInt64(s), limit) })
    }
}

extension Dealer {
    /// min(x ≫ s, 2^c − 1) for 0 ≤ x < 2^{n−1}: in one round the parties reveal the masked range bit
    /// i = 1{x < 2^{c+s}} (one comparison on n − 1 bits) and the masked carry of the low s bits; in the next, the
    /// output α·z + β with z = ⌊x̂/2^s⌋ − ⌊r/2^s⌋ − κ mod 2^c and (α, β) = (1, 0) in range, (0, 2^c − 1) beyond,
    /// prepared by the dealer for each of the four public (î, κ̂).
    public func clippedShift(_ x: RingTensor, by s: Int, bits c: Int) throws -> RingTensor {
        let n = x.ring.bitwidth
        let r = x.values
        let count = x.count
        let outputMask: UInt64 = (1 << UInt64(c)) - 1
        try beginGate(clippedShiftTag, count: count)
        let low: UInt64 = (1 << UInt64(n - 1)) - 1
        let comparison = DPF.generate(alphas: r.map { $0 & low }, inputBits: n - 1, random: &random)
        try p0.dpf(comparison.p0)
        try p1.dpf(comparison.p1)
        let rangeMasks = randomBits(count)
        // i = 1 − DReLU(x − 2^{c+s}) = MSB(x̂') ⊕ MSB(r) ⊕ 1{x̂'_low < r_low}
        try shareBits((0..<count).map { UInt8(r[$0] >> UInt64(n - 1)) ^ rangeMasks[$0] })
        // Without a shift (s = 0) there is no carry: two candidates per element instead of four.
        let carryMasks =
            s > 0
            ? try maskedComparisonKeys(alphas: r.map { $0 & ((1 << UInt64(s)) - 1) }, bits: s)
            : [UInt8](repeating: 0, count: count)
        let combinations = s > 0 ? 4 : 2
        let outputMasks = randomWords(count, bits: c)
        // For each public (î, κ̂) = combination 2î + κ̂ (î alone without a shift), element-major so a party unpacks
        // only the one it uses.
        var slopes = [UInt64](repeating: 0, count: combinations * count)
        var offsets = slopes
        for i in 0..<count {
            for combo in 0..<combinations {
                let inRange = UInt8(s > 0 ? combo >> 1 : combo) ^ rangeMasks[i]
                let carry = s > 0 ? UInt64(UInt8(combo & 1) ^ carryMasks[i]) : 0
                slopes[combinations * i + combo] = UInt64(inRange)
                offsets[combinations * i + combo] =
                    inRange == 0
                    ? (outputMask &+ outputMasks[i]) & outputMask
                    : (outputMasks[i] &- (r[i] >> UInt64(s)) &- carry) & outputMask
            }
        }
        try share(slopes, bits: c)
        try share(offsets, bits: c)
        return RingTensor(ring: Ring(bitwidth: c, scale: 0), shape: x.shape, values: outputMasks)
    }
}

extension PartyContext {
    public func clippedShift(_ x: RingTensor, by s: Int, bits c: Int) throws -> RingTensor {
        let n = x.ring.bitwidth
        let count = x.count
        let outputMask: UInt64 = (1 << UInt64(c)) - 1
        try keys.expectGate(clippedShiftTag, count: count)
        let comparison = try keys.dpf()
        let rangeConstant = try keys.bits(count)
        let carryKeys = s > 0 ? try keys.dpf() : nil
        let carryMaskShares = s > 0 ? try keys.bits(count) : []
        let low: UInt64 = (1 << UInt64(n - 1)) - 1
        let bound = UInt64(1) << UInt64(c + s)
        let shifted = x.values.map { ($0 &- bound) & x.ring.mask }
        let below = comparison.lessThan(at: shifted.map { $0 & low })
        let carries = carryKeys?.lessThan(at: x.values) ?? []  // on the low s bits
        let perElement = s > 0 ? 2 : 1
        var bits = [UInt8](repeating: 0, count: perElement * count)
        let leads: UInt8 = self.leads ? 1 : 0
        for i in 0..<count {
            let range = (leads & UInt8(truncatingIfNeeded: shifted[i] &>> UInt64(n - 1))) ^ rangeConstant[i] ^ below[i]
            bits[perElement * i] = range & 1
            if s > 0 { bits[2 * i + 1] = (carries[i] ^ carryMaskShares[i]) & 1 }
        }
        let revealed = try reconstructBits(bits)
        let combos = (0..<count).map { i in s > 0 ? revealed[2 * i] << 1 | revealed[2 * i + 1] : revealed[i] }
        let slope = try keys.chosenWords(candidates: 2 * perElement, bits: c, choices: combos)
        let offset = try keys.chosenWords(candidates: 2 * perElement, bits: c, choices: combos)
        let shift = UInt64(s)
        let shares = (0..<count).map { i in (slope[i] &* (x.values[i] &>> shift) &+ offset[i]) & outputMask }
        return RingTensor(ring: Ring(bitwidth: c, scale: 0), shape: x.shape, values: try reconstruct(shares, bits: c))
    }
}

/// The tables of softmax at scale f.
public enum SoftmaxTables {
    /// e^{−i/16} (the high byte of d at scale 12, i.e. d = i·2^8 / 2^12).
    public static func highExp(scale f: Int) -> [UInt64] {
        (0..<256).map { UInt64((exp(-Double($0 << 8) / Double(1 << f)) * Double(1 << f)).rounded()) }
    }

    /// e^{−i/2^f} (the low byte).
    public static func lowExp(scale f: Int) -> [UInt64] {
        (0..<256).map { UInt64((exp(-Double($0) / Double(1 << f)) * Double(1 << f)).rounded()) }
    }

    /// 2^{f+6} / i at scale f, for a row sum at scale 6 (index 0 cannot occur: the sum is at least 1).
    public static func inverse(bits q: Int, scale f: Int) -> [UInt64] {
        (0..<(1 << q)).map { $0 == 0 ? 0 : UInt64((Double(1 << (f + 6)) / Double($0)).rounded()) }
    }
}

extension RingBackend {
    /// The maximum of each row, for rows of the given lengths laid end to end (each ≥ 1), as a comparison tree:
    /// max(a, b) = b + ReLU(a − b), ⌈log2 k⌉ levels of two rounds. Exact when every |value| < 2^{n−2}.
    public func maxRows(_ x: RingTensor, rowLengths: [Int]) throws -> RingTensor {
        precondition(rowLengths.allSatisfy { $0 >= 1 } && rowLengths.reduce(0, +) == x.count, "rows must tile x")
        var rows: [[UInt64]] = []
        var start = 0
        for length in rowLengths {
            rows.append(Array(x.values[start..<(start + length)]))
            start += length
        }
        while rows.contains(where: { $0.count > 1 }) {
            var left: [UInt64] = []
            var right: [UInt64] = []
            for row in rows {
                for p in 0..<(row.count / 2) {
                    left.append(row[2 * p])
                    right.append(row[2 * p + 1])
                }
            }
            let a = RingTensor(ring: x.ring, shape: [left.count], values: left)
            let b = RingTensor(ring: x.ring, shape: [right.count], values: right)
            let larger = add(b, try relu(subtract(a, b))).values
            var next = 0
            rows = rows.map { row in
                var merged = Array(larger[next..<(next + row.count / 2)])
                next += row.count / 2
                if row.count % 2 == 1 { merged.append(row[row.count - 1]) }
                return merged
            }
        }
        return RingTensor(ring: x.ring, shape: [rows.count], values: rows.map { $0[0] })
    }

    /// The maximum of each row of length `rowLength`.
    public func maxRows(_ x: RingTensor, rowLength: Int) throws -> RingTensor {
        precondition(rowLength >= 1 && x.count % rowLength == 0, "rows must divide the tensor")
        return try maxRows(x, rowLengths: [Int](repeating: rowLength, count: x.count / rowLength))
    }

    /// e^{−d} at scale f for 0 ≤ d (at scale f, in a ring of at least 17 bits), clipped to 0 beyond d = 2^{16−f}·…
    /// (16 at f = 12): two 8-bit tables and a product.
    public func negativeExp(_ d: RingTensor, output: Ring) throws -> RingTensor {
        try negativeExp(
            high: try clippedShift(d, by: 8, bits: 8), low: d.converted(to: Ring(bitwidth: 8, scale: 0)),
            output: output)
    }

    /// e^{−d} from d's clipped high byte min(d ≫ 8, 255) and its low byte d mod 2^8.
    func negativeExp(high: RingTensor, low: RingTensor, output: Ring) throws -> RingTensor {
        let f = output.scale
        let highValue = try lookup(high, table: SoftmaxTables.highExp(scale: f), output: output)
        let lowValue = try lookup(low, table: SoftmaxTables.lowExp(scale: f), output: output)
        return try roundingShift(try mul(highValue, lowValue), by: f)
    }

    /// The ring the maximum and e^{−d} work in: e bits hold every difference of two inputs and every d = max − x
    /// (|x| < 2^b gives |a − b| < 2^{b+1} ≤ 2^{e−1} for e = b + 2), and at least 18 so that d's clip at 2^{16}
    /// is below 2^{e−1}. Inputs after a truncation (b = n − f) give the reference's n − f + 2; a range certificate
    /// that bounds the scores (`magnitudeBits`) makes every comparison key shorter.
    public func softmaxEffectiveBits(ring: Ring, magnitudeBits b: Int?) -> Int {
        let afterTruncation = ring.bitwidth - ring.scale + 2
        guard let b else { return afterTruncation }
        return min(afterTruncation, max(b + 2, 18))
    }

    /// Softmax of each row of x (n bits, scale f); rows of the given lengths laid end to end. Rows may have any
    /// length from 1 to 1024. Inputs must satisfy |x| < 2^{n−f}, or |x| < 2^b units with `magnitudeBits` b.
    ///
    /// `coarseMaximum`: subtract M′ = 2^8·max⌊x/2^8⌋ + 255 ≥ max x instead of the maximum (softmax does not change
    /// when every score of a row moves by the same amount). Then d = M′ − x = 2^8·(M_hi − x_hi) + (255 − x mod 2^8)
    /// holds its two bytes exactly: the comparison tree and the clip work on x_hi = TR(x, 8), 8 bits narrower,
    /// and no carry of d's low byte is needed. For a truncation of the scores (two rounds more per softmax) the two
    /// comparisons per score are 8 bits shorter: about a quarter of softmax's keys. e^{−d} is up to e^{−255/2^f}
    /// (6 %) smaller before the normalization divides it out (docs/accuracy.md).
    public func softmax(
        _ x: RingTensor, rowLengths: [Int], magnitudeBits: Int? = nil, coarseMaximum: Bool = false
    ) throws -> RingTensor {
        let ring = x.ring
        let f = ring.scale
        precondition(rowLengths.allSatisfy { (1...1024).contains($0) }, "rows of 1 to 1024 entries")
        let effective = Ring(bitwidth: softmaxEffectiveBits(ring: ring, magnitudeBits: magnitudeBits), scale: f)
        let scores = x.converted(to: effective)
        let rows = Broadcast.rows(lengths: rowLengths)
        let e: RingTensor
        if coarseMaximum {
            let high = try truncateReduce(scores, by: 8)  // ⌊x/2^8⌋, signed in e − 8 bits
            let maxima = try maxRows(high, rowLengths: rowLengths)
            let broadcastMax = RingTensor(
                ring: high.ring, shape: x.shape, reducedValues: rows.expand(maxima.values, count: x.count))
            let lowByte = addConstant(
                multiply(scores, byConstant: effective.mask), [UInt64](repeating: 255, count: scores.count))
            e = try negativeExp(
                high: try clippedShift(subtract(broadcastMax, high), by: 0, bits: 8),
                low: lowByte.converted(to: Ring(bitwidth: 8, scale: 0)), output: ring)
        } else {
            let maxima = try maxRows(scores, rowLengths: rowLengths)
            let broadcastMax = RingTensor(
                ring: effective, shape: x.shape, reducedValues: rows.expand(maxima.values, count: x.count))
            e = try negativeExp(subtract(broadcastMax, scores), output: ring)
        }
        // Row sums (local), each in [1, k] at scale f; the inverse table is indexed by the sum at scale 6.
        let longest = rowLengths.max() ?? 1
        let sumBits = f + Int((Double(longest + 2)).log2Ceiling)  // room for k·2^f plus the rounding half
        var sums = [UInt64](repeating: 0, count: rowLengths.count)
        rows.forEachRun(count: e.count, compact: rowLengths.count) { run, row, _ in
            sums[row] = e.values[run].reduce(0, &+)
        }
        let sumTensor = RingTensor(ring: ring, shape: [rowLengths.count], values: sums)
            .converted(to: Ring(bitwidth: sumBits, scale: f))
        // Round the sum to 6 fractional bits rather than flooring it (a public constant: no cost): the inverse is
        // then within 1/(128·S) relative instead of 1/(64·S).
        let rounded = addConstant(sumTensor, [UInt64](repeating: 1 << UInt64(f - 7), count: sumTensor.count))
        let index = try truncateReduce(rounded, by: f - 6)
        let inverse = try lookup(
            index, table: SoftmaxTables.inverse(bits: index.ring.bitwidth, scale: f), output: ring)
        return try roundingShift(try mul(e, inverse, broadcast: rows), by: f)
    }

    /// GapARS after adding half of the dropped unit (a public constant, so free): rounds to nearest instead of
    /// flooring, which removes the half-unit bias per element that would otherwise add up along a row.
    func roundingShift(_ x: RingTensor, by f: Int) throws -> RingTensor {
        try gapARS(addConstant(x, [UInt64](repeating: 1 << UInt64(f - 1), count: x.count)), by: f)
    }

    /// Softmax of the rows of a k × k matrix, either whole or causal: then x holds only the lower triangle (row i
    /// has i + 1 entries, k(k+1)/2 in all) and the result is the full matrix with zeros above the diagonal.
    public func softmax(
        _ x: RingTensor, rows k: Int, causal: Bool, magnitudeBits: Int? = nil, coarseMaximum: Bool = false
    ) throws -> RingTensor {
        guard causal else {
            return try softmax(
                x, rowLengths: [Int](repeating: k, count: x.count / k), magnitudeBits: magnitudeBits,
                coarseMaximum: coarseMaximum)
        }
        precondition(x.count % (k * (k + 1) / 2) == 0, "a causal input holds whole lower triangles")
        let matrices = x.count / (k * (k + 1) / 2)
        let lengths = (0..<matrices).flatMap { _ in (1...k).map { $0 } }
        let packed = try softmax(x, rowLengths: lengths, magnitudeBits: magnitudeBits, coarseMaximum: coarseMaximum)
        var full = [UInt64](repeating: 0, count: matrices * k * k)
        var next = 0
        for matrix in 0..<matrices {
            for row in 0..<k {
                for column in 0...row {
                    full[matrix * k * k + row * k + column] = packed.values[next]
                    next += 1
                }
            }
        }
        return RingTensor(ring: x.ring, shape: [matrices * k, k], values: full)
    }
}

extension Double {
    /// ⌈log2(self)⌉ for self ≥ 1.
    var log2Ceiling: Double { Foundation.log2(self).rounded(.up) }
}
