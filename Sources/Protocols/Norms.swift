import FSS
import Foundation
import Ring

// LayerNorm and RMSNorm (SIGMA §3.5, App. H), with the reciprocal square root computed here as one protocol (the
// reference hands this step to a second, CPU library).

private let sumOfSquaresTag = GateTag("SSQR")
private let squaresAndProductTag = GateTag("SSQP")
private let reciprocalSqrtTag = GateTag("RSQT")

/// The table of 1/√(s/k) from the 13-bit float form of v = s + 1: v ≈ 2^e·(1 + m/128) with a 6-bit exponent e and
/// a 7-bit mantissa m, index m·64 + e.
public struct ReciprocalSqrtTable: Sendable {
    /// T[m·64 + e] = round(2^{outputScale} · √(k·2^{inputScale} / v)), at the midpoint of the index's bucket
    /// v ∈ [2^e(1 + m/128), 2^e(1 + (m+1)/128)), which halves the mantissa's error (the reference tabulates the
    /// bucket's start).
    public let table: [UInt64]

    /// For s at scale `inputScale` summed over `count` values, the output 1/√(s/count) at scale `outputScale`.
    public init(count: Int, inputScale: Int, outputScale: Int) {
        // Every norm of a model uses the same table: built once (8192 square roots), then shared.
        let key = [count, inputScale, outputScale]
        if let cached = Self.cache.withLock({ Self.built[key] }) {
            table = cached
            return
        }
        table = Self.build(count: count, inputScale: inputScale, outputScale: outputScale)
        Self.cache.withLock { Self.built[key] = table }
    }

    private static let cache = NSLock()
    nonisolated(unsafe) private static var built: [[Int]: [UInt64]] = [:]  // guarded by `cache`

    private static func build(count: Int, inputScale: Int, outputScale: Int) -> [UInt64] {
        (0..<(1 << 13)).map { index in
            let (m, e) = (index >> 6, index & 63)
            let v = Foundation.pow(2, Double(e)) * (1 + (Double(m) + 0.5) / 128)
            let value =
                Foundation.pow(2, Double(outputScale))
                * (Double(count) * Foundation.pow(2, Double(inputScale)) / v).squareRoot()
            return UInt64(min(value.rounded(), Double(UInt64(1) << 62)))
        }
    }
}

extension Cleartext {
    public func sumOfSquares(_ x: RingTensor, rowLength k: Int) throws -> RingTensor {
        let rows = x.count / k
        let sums = (0..<rows).map { row in
            (0..<k).reduce(UInt64(0)) { $0 &+ x.values[row * k + $1] &* x.values[row * k + $1] } & x.ring.mask
        }
        return RingTensor(ring: x.ring, shape: [rows], values: sums)
    }

    public func sumOfSquaresAndProduct(_ x: RingTensor, rowLength k: Int, timesColumns y: RingTensor) throws -> (
        squares: RingTensor, product: RingTensor
    ) {
        (try sumOfSquares(x, rowLength: k), try mul(x, y, broadcast: .columns))
    }

    public func reciprocalSqrt(_ v: RingTensor, table: ReciprocalSqrtTable) throws -> RingTensor {
        let n = v.ring.bitwidth
        let values = v.values.map { value -> UInt64 in
            let bits = 64 - value.leadingZeroBitCount  // k' with 2^{k'−1} ≤ v < 2^{k'}
            let normalized = value << UInt64(n - bits)  // in [2^{n−1}, 2^n)
            let mantissa = (normalized >> UInt64(n - 8)) & 127
            return table.table[Int(mantissa) * 64 + (bits - 1)]
        }
        return RingTensor(ring: v.ring, shape: v.shape, values: values)
    }
}

extension Dealer {
    /// Σ_j x_j² per row, revealed per row only: x² = x̂² − 2r·x̂ + r², so the dealer shares r (per element) and
    /// Σ r² + r_out (per row), and the parties sum their shares before the one reveal.
    public func sumOfSquares(_ x: RingTensor, rowLength k: Int) throws -> RingTensor {
        let ring = x.ring
        let rows = x.count / k
        try beginGate(sumOfSquaresTag, count: x.count)
        let outputMasks = randomWords(rows, ring: ring)
        try share(x.values, bits: ring.bitwidth)
        try share(squareSumsPlus(outputMasks, x, rowLength: k), bits: ring.bitwidth)
        return RingTensor(ring: ring, shape: [rows], values: outputMasks)
    }

    /// Σ_j r_j² + r_out per row.
    private func squareSumsPlus(_ outputMasks: [UInt64], _ x: RingTensor, rowLength k: Int) -> [UInt64] {
        (0..<outputMasks.count).map { row in
            (0..<k).reduce(outputMasks[row]) { $0 &+ x.values[row * k + $1] &* x.values[row * k + $1] } & x.ring.mask
        }
    }

    /// Both gates as one: the shares of R_X serve the squares and the product, and R_Y (one row of k) is shared
    /// once per column.
    public func sumOfSquaresAndProduct(_ x: RingTensor, rowLength k: Int, timesColumns y: RingTensor) throws -> (
        squares: RingTensor, product: RingTensor
    ) {
        let ring = x.ring
        precondition(y.count == k, "one y value per column")
        try beginGate(squaresAndProductTag, count: x.count)
        let squareMasks = randomWords(x.count / k, ring: ring)
        let productMasks = randomWords(x.count, ring: ring)
        try share(x.values, bits: ring.bitwidth)
        try share(squareSumsPlus(squareMasks, x, rowLength: k), bits: ring.bitwidth)
        try share(y.values, bits: ring.bitwidth)
        try share(
            broadcastProductConstants(x, y, broadcast: .columns, outputMasks: productMasks), bits: ring.bitwidth)
        return (
            RingTensor(ring: ring, shape: [x.count / k], values: squareMasks),
            RingTensor(ring: ring, shape: x.shape, values: productMasks)
        )
    }

    /// 1/√ from the 13-bit float form (see `PartyContext.reciprocalSqrt`), for 1 ≤ v < 2^{n−1}.
    public func reciprocalSqrt(_ v: RingTensor, table: ReciprocalSqrtTable) throws -> RingTensor {
        let ring = v.ring
        let n = ring.bitwidth
        let r = v.values
        let count = v.count
        let levels = n - 2  // b_j for j = 1 ... n − 2
        try beginGate(reciprocalSqrtTag, count: count)
        // Round 1: b_j = 1{v < 2^j} = MSB(v − 2^j), from one key at n − 2 shifts.
        let low: UInt64 = (1 << UInt64(n - 1)) - 1
        let comparison = DPF.generate(alphas: r.map { $0 & low }, inputBits: n - 1, random: &random)
        try p0.dpf(comparison.p0)
        try p1.dpf(comparison.p1)
        let bitMasks = randomBits(count * levels)
        try shareBits((0..<(count * levels)).map { UInt8(r[$0 / levels] >> UInt64(n - 1)) ^ bitMasks[$0] })
        try share(bitMasks.map { UInt64($0) }, bits: n)
        // Round 2: u = v·2^{n−k'} needs r·b_j: shares of r and of r·m_j.
        try share(r, bits: n)
        try share((0..<(count * levels)).map { (r[$0 / levels] &* UInt64(bitMasks[$0])) & ring.mask }, bits: n)
        let normalizedMasks = randomWords(count, ring: ring)
        try share(normalizedMasks, bits: n)
        // Round 3: the index m·64 + e, with m = (û ≫ (n−8)) − (r_u ≫ (n−8)) − κ mod 128 and κ the carry of the low
        // n − 8 bits of û: shares of κ from a DCF (rows are few), so no round reveals a masked κ first.
        precondition(count <= oneRoundTruncationLimit, "one 1/√ per row")
        let lowBits: UInt64 = (1 << UInt64(n - 8)) - 1
        try carryShareKeys(alphas: normalizedMasks.map { $0 & lowBits }, bits: n - 8, payloadBits: 13)
        let indexMasks = randomWords(count, bits: 13)
        try share(
            (0..<count).map { i in ((0 &- (normalizedMasks[i] >> UInt64(n - 8))) &* 64 &+ indexMasks[i]) & 8191 },
            bits: 13)
        // Rounds 4 and 5: the table.
        let outputMasks = try lookupKeys(masks: indexMasks, inputBits: 13, output: ring)
        return RingTensor(ring: ring, shape: v.shape, values: outputMasks)
    }
}

extension PartyContext {
    public func sumOfSquares(_ x: RingTensor, rowLength k: Int) throws -> RingTensor {
        RingTensor(
            ring: x.ring, shape: [x.count / k],
            values: try reconstruct(sumOfSquaresShares(x, rowLength: k), bits: x.ring.bitwidth))
    }

    /// Both gates' shares, one message.
    public func sumOfSquaresAndProduct(_ x: RingTensor, rowLength k: Int, timesColumns y: RingTensor) throws -> (
        squares: RingTensor, product: RingTensor
    ) {
        let bits = x.ring.bitwidth
        try keys.expectGate(squaresAndProductTag, count: x.count)
        let masks = try keys.words(x.count, bits: bits)
        let constants = try keys.words(x.count / k, bits: bits)
        let columnMasks = try keys.words(y.count, bits: bits)
        let c = try keys.words(x.count, bits: bits)
        let squares = squareSumShares(x, rowLength: k, masks: masks, constants: constants)
        let product = broadcastProductShares(
            x.values, masks, compact: y.values, compactMasks: columnMasks, broadcast: .columns, constants: c,
            ring: x.ring)
        let revealed = try reconstructMany([(squares, bits), (product, bits)])
        return (
            RingTensor(ring: x.ring, shape: [x.count / k], values: revealed[0]),
            RingTensor(ring: x.ring, shape: x.shape, values: revealed[1])
        )
    }

    /// This party's share of Σ x² + r_out per row (the gate without its reveal).
    func sumOfSquaresShares(_ x: RingTensor, rowLength k: Int) throws -> [UInt64] {
        try keys.expectGate(sumOfSquaresTag, count: x.count)
        let masks = try keys.words(x.count, bits: x.ring.bitwidth)
        let constants = try keys.words(x.count / k, bits: x.ring.bitwidth)
        return squareSumShares(x, rowLength: k, masks: masks, constants: constants)
    }

    /// Σ_j x̂_j²·[b = 0] − 2·[r_j]·x̂_j + [Σ r_j² + r_out] per row.
    private func squareSumShares(_ x: RingTensor, rowLength k: Int, masks: [UInt64], constants constant: [UInt64])
        -> [UInt64]
    {
        let ring = x.ring
        let rows = x.count / k
        return (0..<rows).map { row -> UInt64 in
            var sum = constant[row]
            for j in 0..<k {
                let xh = x.values[row * k + j]
                sum = sum &+ (leads ? xh &* xh : 0) &- 2 &* masks[row * k + j] &* xh
            }
            return sum & ring.mask
        }
    }

    /// 1/√v in five rounds:
    ///
    /// 1. the masked bits b_j = 1{v < 2^j} (j = 1 … n−2) from one DPF key at n − 2 shifts. With b_0 = 0 and
    ///    b_{n−1} = 1, the bit count k' of v is Σ(1 − b_j) + 1 and 2^{n−k'} = Σ_j (b_j − b_{j−1})·2^{n−j}: both
    ///    linear in the b_j, so their shares are local once b̂_j is public;
    /// 2. u = v·2^{n−k'} ∈ [2^{n−1}, 2^n) = v̂·P − r·P, with r·b_j from the dealer's shares of r and r·m_j;
    /// 3. the 13-bit index m·64 + (k' − 1), with shares of the carry κ of û's low n − 8 bits from a DCF (one round;
    ///    a masked κ revealed first took two);
    /// 4, 5. the table.
    public func reciprocalSqrt(_ v: RingTensor, table: ReciprocalSqrtTable) throws -> RingTensor {
        let ring = v.ring
        let n = ring.bitwidth
        let count = v.count
        let levels = n - 2
        let vh = v.values
        try keys.expectGate(reciprocalSqrtTag, count: count)
        let comparison = try keys.dpf()
        let constants = try keys.bits(count * levels)
        let bitMaskShares = try keys.words(count * levels, bits: n)
        let maskShares = try keys.words(count, bits: n)
        let productShares = try keys.words(count * levels, bits: n)
        let normalizedMaskShares = try keys.words(count, bits: n)
        // Round 1.
        let low: UInt64 = (1 << UInt64(n - 1)) - 1
        let shifts = (1...levels).map { (UInt64(0) &- (1 << UInt64($0))) & low }
        let below = comparison.lessThan(inputs: vh.map { $0 & low }, shifts: shifts)
        let bitShares = (0..<(count * levels)).map { index -> UInt64 in
            let shifted = (vh[index / levels] &- (1 << UInt64(index % levels + 1))) & ring.mask
            return UInt64((leads ? UInt8(shifted >> UInt64(n - 1)) : 0) ^ constants[index] ^ below[index])
        }
        let bits = try reconstruct(bitShares, bits: 1)
        // Round 2: arithmetic shares of b_j and r·b_j, then P, e and u.
        var normalized = [UInt64](repeating: 0, count: count)
        var exponent = [UInt64](repeating: 0, count: count)
        for i in 0..<count {
            // Index j = 0 … n − 1 with the public ends b_0 = 0 and b_{n−1} = 1.
            var b = [UInt64](repeating: 0, count: n)
            var rb = [UInt64](repeating: 0, count: n)
            b[n - 1] = leads ? 1 : 0
            rb[n - 1] = maskShares[i]
            for j in 1...levels {
                let index = i * levels + j - 1
                let revealed = bits[index]
                let flip = revealed == 0 ? UInt64(1) : ring.mask  // 1 − 2·b̂_j
                b[j] = (leads ? revealed : 0) &+ bitMaskShares[index] &* flip
                rb[j] = revealed &* maskShares[i] &+ productShares[index] &* flip
            }
            var power: UInt64 = 0
            var maskedPower: UInt64 = 0
            var count: UInt64 = 0
            for j in 1..<n {
                power = power &+ (b[j] &- b[j - 1]) &* (1 << UInt64(n - j))
                maskedPower = maskedPower &+ (rb[j] &- rb[j - 1]) &* (1 << UInt64(n - j))
            }
            for j in 1...levels { count = count &- b[j] }
            // k' − 1 = Σ(1 − b_j); a share, so it is reduced only with the whole index (mod 2^13).
            exponent[i] = (leads ? UInt64(levels) : 0) &+ count
            normalized[i] = (vh[i] &* power &- maskedPower &+ normalizedMaskShares[i]) & ring.mask
        }
        let u = try reconstruct(normalized, bits: n)
        // Round 3.
        let carries = try carryShares(u, bits: n - 8)  // mod 2^13
        let base = try keys.words(count, bits: 13)
        let indexShares = (0..<count).map { i -> UInt64 in
            let high: UInt64 = leads ? (u[i] >> UInt64(n - 8)) &* 64 : 0
            return (high &+ base[i] &- carries[i] &* 64 &+ exponent[i]) & 8191
        }
        let index = try reconstruct(indexShares, bits: 13)
        // Rounds 4 and 5.
        let shares = try lookupShares(index, table: table.table, output: ring)
        return RingTensor(ring: ring, shape: v.shape, values: try reconstruct(shares, bits: n))
    }
}

extension RingBackend {
    /// LayerNorm over rows of `k` (SIGMA Fig. 12): μ by an ARS, z = x − μ, s = Σ z² (revealed per row),
    /// t = 1/√(s/k) from the 13-bit float form, then z·t·γ + β (see `normalize`). x, γ at scale f, β at scale 2f, in
    /// n bits. `certified`: a range certificate bounds the row sums and the output (`RangeEvaluator`), so μ is
    /// taken by GapARS (2 exchanges instead of 4) and the output by the three-round tail of `normalize`.
    public func layerNorm(
        _ x: RingTensor, rowLength k: Int, gamma: RingTensor, beta: RingTensor, epsilon: Double = 0,
        certified: Bool = false
    ) throws -> RingTensor {
        let ring = x.ring
        let f = ring.scale
        let rows = x.count / k
        let sums = x.values.withUnsafeBufferPointer { values in
            (0..<rows).map { row in values[(row * k)..<(row * k + k)].reduce(0, &+) }
        }
        let rowSums = RingTensor(ring: ring, shape: [rows], values: sums)
        let mean: RingTensor
        if k & (k - 1) == 0 {
            mean = try arithmeticShift(rowSums, by: k.trailingZeroBitCount, gap: certified)
        } else {
            // SIGMA multiplies by ⌊2^f/k⌋, which is 6 % off at k = 768 (5/4096 for 1/768): a constant row would
            // not even map to β. The constant here carries e more bits, rounded: 0.1 % at k = 768 with e = 6.
            let extra = Self.meanExtraBits(ring: ring, certified: certified)
            let reciprocal = UInt64((Double(1 << UInt64(f + extra)) / Double(k)).rounded())
            mean = try arithmeticShift(multiply(rowSums, byConstant: reciprocal), by: f + extra, gap: certified)
        }
        let z = subtract(x, broadcastRows(mean, rowLength: k))
        return try normalize(z, rowLength: k, gamma: gamma, beta: beta, epsilon: epsilon, certified: certified)
    }

    /// The extra bits e of LayerNorm's 2^{f+e}/k for a row length k that is not a power of two. The product
    /// Σx·2^{f+e}/k holds μ at scale 2f + e: certified, the range certificate bounds it (`RangeEvaluator`
    /// records |μ|·2^e, which for GPT-2's random weights stays under its largest product at e = 6); uncertified,
    /// e leaves |μ| < 2^{n−2−2f−e} ≥ 2^{12} representable.
    public static func meanExtraBits(ring: Ring, certified: Bool) -> Int {
        certified ? 6 : max(0, min(6, ring.bitwidth - 2 * ring.scale - 14))
    }

    /// RMSNorm: LayerNorm without the mean and without β.
    public func rmsNorm(
        _ x: RingTensor, rowLength k: Int, gamma: RingTensor, epsilon: Double = 0, certified: Bool = false
    ) throws -> RingTensor {
        try normalize(x, rowLength: k, gamma: gamma, beta: nil, epsilon: epsilon, certified: certified)
    }

    /// z·t·γ + β with t = 1/√(Σz²/k + ε). Uncertified (SIGMA's order): q = GapARS(z·t), then GapARS(q·γ + β):
    /// six rounds after t. Certified (ours): z·γ is revealed in the same message as Σz² (neither depends on the
    /// other), so after t only GapARS_{2f}(z·γ·t + β·2^f) is left — three rounds after t instead of six, and one
    /// truncation instead of two. Its value at scale 3f must lie in the gap, |z·t·γ + β| < 2^{n−2−3f}, and z·γ at
    /// scale 2f must not wrap: the range certificate bounds both (`RangeEvaluator.layerNorm`).
    func normalize(
        _ z: RingTensor, rowLength k: Int, gamma: RingTensor, beta: RingTensor?, epsilon: Double, certified: Bool
    ) throws -> RingTensor {
        let ring = z.ring
        let f = ring.scale
        let rows = z.count / k
        let table = ReciprocalSqrtTable(count: k, inputScale: 2 * f, outputScale: f)
        // ε·k at scale 2f (at least one unit, so the reciprocal square root never sees 0).
        let epsilonTerm = UInt64(max(1, (epsilon * Double(k) * Double(1 << (2 * f))).rounded()))
        let epsilonRow = [UInt64](repeating: epsilonTerm, count: rows)
        guard certified else {
            let squares = try sumOfSquares(z, rowLength: k)
            let t = try reciprocalSqrt(addConstant(squares, epsilonRow), table: table)
            let q = try gapARS(try mul(z, t, broadcast: .rows(rows, length: k)), by: f)
            var scaled = try mul(q, gamma, broadcast: .columns)
            if let beta { scaled = add(scaled, broadcastColumns(beta, rows: rows)) }
            return try gapARS(scaled, by: f)
        }
        let (squares, scaledByGamma) = try sumOfSquaresAndProduct(z, rowLength: k, timesColumns: gamma)
        let t = try reciprocalSqrt(addConstant(squares, epsilonRow), table: table)
        var scaled = try mul(scaledByGamma, t, broadcast: .rows(rows, length: k))
        if let beta { scaled = add(scaled, broadcastColumns(multiply(beta, byConstant: 1 << UInt64(f)), rows: rows)) }
        return try gapARS(scaled, by: 2 * f)
    }

    /// Each row's value repeated over the row (local: masks repeat like values).
    public func broadcastRows(_ x: RingTensor, rowLength k: Int) -> RingTensor {
        RingTensor(
            ring: x.ring, shape: [x.count * k],
            reducedValues: Broadcast.rows(x.count, length: k).expand(x.values, count: x.count * k))
    }

    /// A row vector repeated over `rows` rows (local).
    public func broadcastColumns(_ x: RingTensor, rows: Int) -> RingTensor {
        RingTensor(
            ring: x.ring, shape: [rows * x.count],
            reducedValues: Broadcast.columns.expand(x.values, count: rows * x.count))
    }
}
