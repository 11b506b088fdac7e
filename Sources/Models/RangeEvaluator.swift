import Foundation
import Protocols

/// Bounds on every value a model can compute, from its weights alone: the certificate that lets products be
/// truncated with SIGMA's GapARS instead of the faithful ARS.
///
/// GapARS_{n,f} is exact for x ∈ [−2^{n−2}, 2^{n−2}) (SIGMA Thm 3); a product of two scale-f values has scale 2f, so
/// it is exact when the product's real value stays below 2^{n−2−2f} in magnitude (2^24 for n = 50, f = 12). This
/// evaluator runs the model once on magnitudes: each tensor is one row of per-column bounds on |value| over every
/// row, every token id and every position, and each truncated product records its bound:
///
/// - embeddings: the largest |entry| of each table column (any token), plus the largest position row;
/// - LayerNorm: |γ_i|·√d + |β_i| (a normalised row has ‖z‖₂ ≤ √d), RMSNorm: |γ_i|·√d, whatever the input;
/// - x·W + b: Σ_i |x_i|·|W_ij| + |b_j|; x ⊙ y: |x|·|y|; GeLU, SiLU: max(|x|, 0.2 or 0.3) (their minima);
/// - attention: scores Σ_c |q_c|·|k_c| per head; probabilities sum to ≤ 1.01 (the fixed-point softmax's error), so
///   the context is ≤ 1.01·|v|; rotary: √(x_i² + x_j²) per rotated pair.
///
/// The fixed-point pipeline differs from real arithmetic by its approximations (LUTs, rsqrt ≈ 0.5 %): `RangeCertificate`
/// allows 10 % and one unit on top. The bound is worst case over all inputs, so it is loose but sound.
public final class RangeEvaluator: Evaluator {
    /// A bound on |x| per column, valid for every row.
    public typealias Tensor = [Double]
    public typealias Table = [Double]

    /// The largest bound of any truncated product, in real units.
    public private(set) var largestProduct = 0.0
    /// A bound on the client's direct input (`clientInput`, the MLP), which token models do not use.
    let inputBound: Double
    /// The fixed-point scale f (for truncations of scale-f values, such as LayerNorm's row sums).
    let scale: Int

    public init(scale: Int, inputBound: Double = 1) {
        self.scale = scale
        self.inputBound = inputBound
    }

    func record(_ bounds: [Double]) { largestProduct = max(largestProduct, bounds.max() ?? 0) }

    func absolute(_ values: [Float]?, _ what: String) throws -> [Double] {
        guard let values else { throw ProtocolError.missingInput(what) }
        return values.map { Double(abs($0)) }
    }

    /// Per column, the largest of `values` viewed as rows of `width`.
    func columnMaxima(_ values: [Double], width: Int) -> [Double] {
        var result = [Double](repeating: 0, count: width)
        for (i, v) in values.enumerated() where v > result[i % width] { result[i % width] = v }
        return result
    }

    public func clientInput(_ values: [Double]?, rows: Int, columns: Int) throws -> Tensor {
        [Double](repeating: inputBound, count: columns)
    }

    public func linear(_ x: Tensor, _ layer: LinearLayer, rows: Int) throws -> Tensor {
        guard let w = layer.weights else { throw ProtocolError.missingInput("the weights") }
        var y = layer.bias.map { $0.map { Double(abs($0)) } } ?? [Double](repeating: 0, count: layer.outputs)
        for i in 0..<layer.inputs where x[i] > 0 {
            for o in 0..<layer.outputs { y[o] += x[i] * Double(abs(w[i * layer.outputs + o])) }
        }
        record(y)
        return y
    }

    public func relu(_ x: Tensor) throws -> Tensor { x }
    public func output(_ x: Tensor) throws -> [Double]? { nil }

    public func embed(_ ids: [Int]?, count: Int, table: WeightVector, width: Int) throws -> (
        embedded: Tensor, table: Tensor
    ) {
        let magnitudes = try absolute(table.values, "the embedding table")
        return (columnMaxima(magnitudes, width: width), magnitudes)
    }

    public func serverTable(_ table: WeightVector, width: Int) throws -> Tensor {
        try absolute(table.values, "the output table")
    }

    public func addServerRows(_ x: Tensor, _ rows: WeightVector, width: Int) throws -> Tensor {
        add(x, columnMaxima(try absolute(rows.values, "the position table"), width: width))
    }

    public func logits(_ x: Tensor, table: Tensor, rows: Int, width: Int, vocabulary: Int) throws -> Tensor {
        let y = (0..<vocabulary).map { v in (0..<width).reduce(0.0) { $0 + x[$1] * table[v * width + $1] } }
        record(y)
        return y
    }

    public func add(_ x: Tensor, _ y: Tensor) -> Tensor { zip(x, y).map { $0 + $1 } }

    public func multiply(_ x: Tensor, _ y: Tensor) throws -> Tensor {
        let z = zip(x, y).map { $0 * $1 }
        record(z)
        return z
    }

    public func layerNorm(_ x: Tensor, width: Int, gamma: WeightVector, beta: WeightVector, epsilon: Double) throws
        -> Tensor
    {
        // The mean's truncated value: Σx at scale f (a shift by log2 k) or Σx·2^{f+6}/k at scale 2f + 6
        // (`RingBackend.meanExtraBits`, certified); in the units of a scale-2f product, k·max|x|/2^f or
        // max|x|·2^6.
        let largest = x.max() ?? 0
        record([width & (width - 1) == 0 ? Double(width) * largest / Double(1 << scale) : largest * 64])
        let root = Double(width).squareRoot() * 1.01
        let gammas = try absolute(gamma.values, "γ")
        let output = zip(gammas, try absolute(beta.values, "β")).map { $0 * root + $1 }
        recordNormalization(centered: 2 * largest, gammas: gammas, output: output)
        return output
    }

    public func rmsNorm(_ x: Tensor, width: Int, gamma: WeightVector, epsilon: Double) throws -> Tensor {
        let root = Double(width).squareRoot() * 1.01
        let gammas = try absolute(gamma.values, "γ")
        let output = gammas.map { $0 * root }
        recordNormalization(centered: x.max() ?? 0, gammas: gammas, output: output)
        return output
    }

    /// The certified norm's tail (`RingBackend.normalize`): z·γ at scale 2f (|z| ≤ `centered`) must not wrap, and
    /// z·t·γ + β at scale 3f, truncated by 2f, must lie in the gap — in the units of a scale-2f product, a bound
    /// B·2^f on the output.
    func recordNormalization(centered: Double, gammas: [Double], output: [Double]) {
        record(gammas.map { centered * $0 })
        record(output.map { $0 * Double(1 << scale) })
    }

    public func gelu(_ x: Tensor) throws -> Tensor { x.map { max($0, 0.2) } }
    public func silu(_ x: Tensor) throws -> Tensor { x.map { max($0, 0.3) } }
    public func geluExact(_ x: Tensor) throws -> Tensor { x.map { max($0, 0.2) } }

    public func rotary(_ x: Tensor, heads: Int, headDim: Int, theta: Double) throws -> Tensor {
        let half = headDim / 2
        var y = x
        for head in 0..<heads {
            for i in 0..<half {
                let (a, b) = (head * headDim + i, head * headDim + i + half)
                let bound = (x[a] * x[a] + x[b] * x[b]).squareRoot()
                (y[a], y[b]) = (bound, bound)
            }
        }
        record(y)
        return y
    }

    public func attention(
        _ q: Tensor, _ k: Tensor, _ v: Tensor, rows: Int, heads: Int, kvHeads: Int, headDim: Int, scaled: Bool,
        window: Int?, causal: Bool
    ) throws -> Tensor {
        let group = heads / kvHeads
        var context = [Double](repeating: 0, count: heads * headDim)
        for head in 0..<heads {
            let kvHead = head / group
            let score = (0..<headDim).reduce(0.0) { $0 + q[head * headDim + $1] * k[kvHead * headDim + $1] }
            record([score])
            for c in 0..<headDim { context[head * headDim + c] = 1.01 * v[kvHead * headDim + c] }
        }
        record(context)
        return context
    }

    public func meanOfRows(_ x: Tensor, rows: Int, width: Int) throws -> Tensor {
        record(x)
        return x
    }

    public func lastRow(_ x: Tensor, rows: Int, width: Int) -> Tensor { x }

    public func columns(_ x: Tensor, rows: Int, width: Int, start: Int, count: Int) -> Tensor {
        Array(x[start..<(start + count)])
    }
}

/// What `RangeEvaluator` proved about a model: the largest truncated product, and the bitwidth from which GapARS is
/// exact for every input.
public struct RangeCertificate: Sendable, Equatable {
    /// A bound on every truncated product, in real units.
    public let largestProduct: Double
    /// The fixed-point scale f.
    public let scale: Int

    public init(largestProduct: Double, scale: Int) {
        self.largestProduct = largestProduct
        self.scale = scale
    }

    /// The smallest n with 1.1·B + 1 < 2^{n−2−2f}: GapARS is exact at this bitwidth and above.
    public var minimumBitwidth: Int {
        let needed = 1.1 * largestProduct + 1
        return Int(Foundation.log2(needed).rounded(.down)) + 1 + 2 + 2 * scale
    }

    public func allowsGap(bitwidth n: Int) -> Bool { n >= minimumBitwidth }
}
