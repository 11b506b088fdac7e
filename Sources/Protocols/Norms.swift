import FSS
import Foundation
import Ring

// LayerNorm and RMSNorm (SIGMA §3.5, App. H), with the reciprocal square root computed here as one protocol (the
// reference hands this step to a second, CPU library).

private let sumOfSquaresTag = GateTag("SSQR")
private let rowColumnProductTag = GateTag("SCRC")
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

/// The second half of `RingBackend.sumOfSquares(_:rowLength:thenScalingBy:)`: x ⊙ t′ ⊙ y′ once the rows' t is
/// known, in the gate's one round.
public struct RowColumnScaling {
    let product: (_ rows: RingTensor) throws -> RingTensor

    public init(_ product: @escaping (_ rows: RingTensor) throws -> RingTensor) { self.product = product }

    /// x ⊙ t′ ⊙ y′, t one value per row of x.
    public func callAsFunction(rows t: RingTensor) throws -> RingTensor { try product(t) }
}

extension Cleartext {
    public func sumOfSquares(_ x: RingTensor, rowLength k: Int) throws -> RingTensor {
        let rows = x.count / k
        let sums = (0..<rows).map { row in
            (0..<k).reduce(UInt64(0)) { $0 &+ x.values[row * k + $1] &* x.values[row * k + $1] } & x.ring.mask
        }
        return RingTensor(ring: x.ring, shape: [rows], values: sums)
    }

    public func sumOfSquares(_ x: RingTensor, rowLength k: Int, thenScalingBy y: RingTensor) throws -> (
        squares: RingTensor, scaling: RowColumnScaling
    ) {
        precondition(y.count == k, "one y value per column")
        return (
            try sumOfSquares(x, rowLength: k),
            RowColumnScaling { t in
                try self.mul(try self.mul(x, t, broadcast: .rows(x.count / k, length: k)), y, broadcast: .columns)
            }
        )
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

    /// The sum-of-squares gate now (its shares of a = R_X serve the product too), the product's own gate when
    /// t's mask b is known: shares of c = R_Y per column, b per row, and per element of bc, ac, ab and
    /// r_out − abc (`PartyContext.rowColumnProductShares`).
    public func sumOfSquares(_ x: RingTensor, rowLength k: Int, thenScalingBy y: RingTensor) throws -> (
        squares: RingTensor, scaling: RowColumnScaling
    ) {
        precondition(y.count == k, "one y value per column")
        let squares = try sumOfSquares(x, rowLength: k)
        return (squares, RowColumnScaling { t in try self.rowColumnProductKeys(x, rows: t, columns: y) })
    }

    private func rowColumnProductKeys(_ x: RingTensor, rows t: RingTensor, columns y: RingTensor) throws
        -> RingTensor
    {
        let ring = x.ring
        let k = y.count
        precondition(t.count * k == x.count, "one t value per row")
        try beginGate(rowColumnProductTag, count: x.count)
        let outputMasks = randomWords(x.count, ring: ring)
        let (a, b, c) = (x.values, t.values, y.values)
        let mask = ring.mask
        func perElement(_ value: (_ i: Int, _ row: Int, _ column: Int) -> UInt64) -> [UInt64] {
            (0..<x.count).map { i in value(i, i / k, i % k) & mask }
        }
        try share(c, bits: ring.bitwidth)
        try share(b, bits: ring.bitwidth)
        try share(perElement { _, row, column in b[row] &* c[column] }, bits: ring.bitwidth)
        try share(perElement { i, _, column in a[i] &* c[column] }, bits: ring.bitwidth)
        try share(perElement { i, row, _ in a[i] &* b[row] }, bits: ring.bitwidth)
        try share(perElement { i, row, column in outputMasks[i] &- a[i] &* b[row] &* c[column] }, bits: ring.bitwidth)
        return RingTensor(ring: ring, shape: x.shape, values: outputMasks)
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
            values: try reconstruct(sumOfSquaresShares(x, rowLength: k).squares, bits: x.ring.bitwidth))
    }

    /// The squares revealed now; x's mask shares kept for the product.
    public func sumOfSquares(_ x: RingTensor, rowLength k: Int, thenScalingBy y: RingTensor) throws -> (
        squares: RingTensor, scaling: RowColumnScaling
    ) {
        precondition(y.count == k, "one y value per column")
        let (shares, masks) = try sumOfSquaresShares(x, rowLength: k)
        let squares = try reconstruct(shares, bits: x.ring.bitwidth)
        return (
            RingTensor(ring: x.ring, shape: [x.count / k], values: squares),
            RowColumnScaling { t in
                let product = try self.rowColumnProductShares(x, masks: masks, rows: t, columns: y)
                return RingTensor(
                    ring: x.ring, shape: x.shape, values: try self.reconstruct(product, bits: x.ring.bitwidth))
            }
        )
    }

    /// This party's share of Σ x² + r_out per row (the gate without its reveal), and of x's mask.
    func sumOfSquaresShares(_ x: RingTensor, rowLength k: Int) throws -> (squares: [UInt64], masks: [UInt64]) {
        try keys.expectGate(sumOfSquaresTag, count: x.count)
        let masks = try keys.words(x.count, bits: x.ring.bitwidth)
        let constants = try keys.words(x.count / k, bits: x.ring.bitwidth)
        return (squareSumShares(x, rowLength: k, masks: masks, constants: constants), masks)
    }

    /// Shares of x·t·y + r_out per element (t per row, y per column) from the masked x̂ = x + a, t̂ = t + b,
    /// ŷ = y + c:
    ///
    ///     x·t·y = (x̂ − a)(t̂ − b)(ŷ − c)
    ///           = x̂·(t̂ŷ − t̂c − bŷ + bc) − a·t̂ŷ + ac·t̂ + ab·ŷ − abc,
    ///
    /// with shares of a (from the sum of squares), c, b, bc, ac, ab and r_out − abc from the dealer.
    func rowColumnProductShares(_ x: RingTensor, masks a: [UInt64], rows t: RingTensor, columns y: RingTensor)
        throws -> [UInt64]
    {
        let bits = x.ring.bitwidth
        let k = y.count
        try keys.expectGate(rowColumnProductTag, count: x.count)
        let c = try keys.words(k, bits: bits)
        let b = try keys.words(t.count, bits: bits)
        let bc = try keys.words(x.count, bits: bits)
        let ac = try keys.words(x.count, bits: bits)
        let ab = try keys.words(x.count, bits: bits)
        let constant = try keys.words(x.count, bits: bits)
        let mask = x.ring.mask
        let lead: UInt64 = leads ? 1 : 0
        return [UInt64](unsafeUninitializedCapacity: x.count) { out, initialized in
            // Pointers, not arrays: seven products an element, and bounds checks would double the loop.
            withBuffers(x.values, a, bc, ac, ab, constant) { xh, a, bc, ac, ab, constant in
                withBuffers(t.values, b, y.values, c) { th, b, yh, c in
                    for row in 0..<th.count {
                        let (tRow, bRow, base) = (th[row], b[row], row * k)
                        for column in 0..<k {
                            let i = base + column
                            let ty = tRow &* yh[column]
                            let factor = lead &* ty &- tRow &* c[column] &- bRow &* yh[column] &+ bc[i]
                            out[i] =
                                (xh[i] &* factor &- a[i] &* ty &+ ac[i] &* tRow &+ ab[i] &* yh[column] &+ constant[i])
                                & mask
                        }
                    }
                }
            }
            initialized = x.count
        }
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
    /// six rounds after t. Certified (ours): z·t·γ is one product of three factors, its gate begun with Σz² (the
    /// two share z's mask) and revealed once t is known, so after t only GapARS_{2f}(z·t·γ + β·2^f) is left — three
    /// rounds after t instead of six, one truncation instead of two, and z·γ is never revealed (until session 17
    /// it was, with Σz²: a third of LayerNorm's bytes). Its value at scale 3f must lie in the gap,
    /// |z·t·γ + β| < 2^{n−2−3f}: the range certificate bounds it (`RangeEvaluator.layerNorm`).
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
        let (squares, scaling) = try sumOfSquares(z, rowLength: k, thenScalingBy: gamma)
        let t = try reciprocalSqrt(addConstant(squares, epsilonRow), table: table)
        var scaled = try scaling(rows: t)
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
