import Foundation
import Ring

// Rotary position embedding and attention-score scaling (SIGMA App. C, §3.5).

extension RingBackend {
    /// RoPE on x laid out [positions × (heads·d)] (HF Llama's rotate-half convention): for j < d/2,
    /// out_j = x_j·cos(pθ_j) − x_{j+d/2}·sin(pθ_j) and out_{j+d/2} = x_{j+d/2}·cos(pθ_j) + x_j·sin(pθ_j), with
    /// θ_j = base^{−2j/d} and p = `firstPosition` + row. The coefficients are public and encoded with f − 3 fractional
    /// bits, so the products and their sum stay inside GapARS's range; one GapARS by f − 3 follows.
    public func rotary(_ x: RingTensor, heads: Int, headDim d: Int, firstPosition: Int = 0, base: Double = 10_000)
        throws -> RingTensor
    {
        let ring = x.ring
        let f = ring.scale
        let width = heads * d
        precondition(d % 2 == 0 && x.count % width == 0, "rows of heads × d, d even")
        let coefficientScale = Double(1 << (f - 3))
        let encode = { (value: Double) -> UInt64 in ring.word(Int64((value * coefficientScale).rounded())) }
        var values = [UInt64](repeating: 0, count: x.count)
        for row in 0..<(x.count / width) {
            let p = Double(firstPosition + row)
            for head in 0..<heads {
                let start = row * width + head * d
                for j in 0..<(d / 2) {
                    let angle = p * Foundation.pow(base, -2 * Double(j) / Double(d))
                    let (c, s) = (encode(Foundation.cos(angle)), encode(Foundation.sin(angle)))
                    let (a, b) = (x.values[start + j], x.values[start + j + d / 2])
                    values[start + j] = (a &* c &- b &* s) & ring.mask
                    values[start + j + d / 2] = (b &* c &+ a &* s) & ring.mask
                }
            }
        }
        return try gapARS(RingTensor(ring: ring, shape: x.shape, values: values), by: f - 3)
    }

    /// Attention scores QKᵀ (values at scale 2f, where f = `ring.scale` as for every product) scaled by 1/√d and
    /// brought to scale f: when log2 d is even the scale is a
    /// power of two and folds into the truncation shift (one faithful ARS by f + log2(d)/2); otherwise a faithful
    /// ARS by f, a product with ⌊2^f/√d⌋ and a second ARS by f. With `gap`, each ARS is a GapARS (exact when the
    /// scores lie in the gap, see `RangeCertificate`).
    public func scaleScores(_ scores: RingTensor, headDim d: Int, gap: Bool = false) throws -> RingTensor {
        let f = scores.ring.scale
        let logD = d.trailingZeroBitCount
        if d & (d - 1) == 0 && logD % 2 == 0 { return try arithmeticShift(scores, by: f + logD / 2, gap: gap) }
        let once = try arithmeticShift(scores, by: f, gap: gap)
        let factor = UInt64((Double(1 << f) / Double(d).squareRoot()).rounded(.down))
        return try arithmeticShift(multiply(once, byConstant: factor), by: f, gap: gap)
    }
}
