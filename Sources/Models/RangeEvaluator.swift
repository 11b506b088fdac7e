import Foundation
import Protocols

/// Bounds on every value a model can compute, from its weights alone: the certificate that lets products be
/// truncated with SIGMA's GapARS instead of the faithful ARS, and lets the comparisons inside GeLU/SiLU and softmax
/// run on the few bits their inputs can occupy rather than on n − f.
///
/// GapARS_{n,f} is exact for x ∈ [−2^{n−2}, 2^{n−2}) (SIGMA Thm 3); a product of two scale-f values has scale 2f, so
/// it is exact when the product's real value stays below 2^{n−2−2f} in magnitude (2^24 for n = 50, f = 12). This
/// evaluator runs the model once on magnitudes: each tensor is one row of per-column bounds on |value| over every
/// row, every token id and every position, and each truncated product records its bound:
///
/// - embeddings: the largest |entry| of each table column (any token), plus the largest position row;
/// - LayerNorm: |γ_i|·√d + |β_i| (a normalised row has ‖z‖₂ ≤ √d), RMSNorm: |γ_i|·√d, whatever the input;
/// - x·W + b: Σ_i |x_i|·|W_ij| + |b_j|; x ⊙ y: |x|·|y|; GeLU, SiLU: max(|x|, 0.2 or 0.3) (their minima);
/// - x·W + b straight after a norm (x = γ ⊙ z + β): by Cauchy–Schwarz, |Σ_i γ_i z_i W_ij| ≤ ‖z‖₂·‖γ ⊙ W_j‖₂, so
///   √d·‖γ ⊙ W_j‖₂ + |Σ_i β_i W_ij + b_j| plus the fixed point's rounding of each term — about √d times tighter
///   than the per-entry bound, which lets a normalised row put all of √d into every coordinate at once;
/// - attention: scores Σ_c |q_c|·|k_c| per head; probabilities sum to ≤ 1.01 (the fixed-point softmax's error), so
///   the context is ≤ 1.01·|v|; rotary: √(x_i² + x_j²) per rotated pair.
///
/// The fixed-point pipeline differs from real arithmetic by its approximations (LUTs, rsqrt ≈ 0.5 %): `RangeCertificate`
/// allows 10 % and one unit on top. The bound is worst case over all inputs, so it is loose but sound.
public final class RangeEvaluator: Evaluator {
    public typealias Tensor = Bound
    public typealias Table = [Double]

    /// Per column, a bound on |x| valid for every row; for a norm's output also the row's structure.
    public struct Bound: Sendable {
        public var columns: [Double]
        /// Set on a norm's output x = γ ⊙ z + β, whose rows have ‖z‖₂ ≤ `radius`.
        var normalized: Normalized?

        init(_ columns: [Double], normalized: Normalized? = nil) {
            self.columns = columns
            self.normalized = normalized
        }

        var largest: Double { columns.max() ?? 0 }
    }

    struct Normalized: Sendable {
        /// γ and β as the server holds them (signed; β zero for RMSNorm).
        var gamma: [Double]
        var beta: [Double]
        var radius: Double
    }

    /// The largest bound of any truncated product, in real units.
    public private(set) var largestProduct = 0.0
    /// The largest |x| entering GeLU or SiLU, in real units.
    public private(set) var largestActivationInput = 0.0
    /// The largest |score| entering softmax (after the 1/√d scaling), in real units.
    public private(set) var largestSoftmaxInput = 0.0
    /// A bound on the client's direct input (`clientInput`, the MLP), which token models do not use.
    let inputBound: Double
    /// The fixed-point scale f (for truncations of scale-f values, such as LayerNorm's row sums).
    let scale: Int
    /// One unit of the fixed point, 2^−f.
    var unit: Double { 1 / Double(1 << scale) }

    public init(scale: Int, inputBound: Double = 1) {
        self.scale = scale
        self.inputBound = inputBound
    }

    func record(_ bounds: [Double]) { largestProduct = max(largestProduct, bounds.max() ?? 0) }

    func absolute(_ values: [Float]?, _ what: String) throws -> [Double] {
        guard let values else { throw ProtocolError.missingInput(what) }
        return values.map { Double(abs($0)) }
    }

    func signed(_ values: [Float]?, _ what: String) throws -> [Double] {
        guard let values else { throw ProtocolError.missingInput(what) }
        return values.map { Double($0) }
    }

    /// Per column, the largest of `values` viewed as rows of `width`.
    func columnMaxima(_ values: [Double], width: Int) -> [Double] {
        var result = [Double](repeating: 0, count: width)
        for (i, v) in values.enumerated() where v > result[i % width] { result[i % width] = v }
        return result
    }

    public func clientInput(_ values: [Double]?, rows: Int, columns: Int) throws -> Tensor {
        Bound([Double](repeating: inputBound, count: columns))
    }

    public func linear(_ x: Tensor, _ layer: LinearLayer, rows: Int) throws -> Tensor {
        guard let w = layer.weights else { throw ProtocolError.missingInput("the weights") }
        let bias = layer.bias.map { $0.map { Double($0) } } ?? [Double](repeating: 0, count: layer.outputs)
        var y: [Double]
        if let normalized = x.normalized {
            y = normalizedProduct(normalized, weights: w, inputs: layer.inputs, outputs: layer.outputs, bias: bias)
        } else {
            y = bias.map(abs)
            for i in 0..<layer.inputs where x.columns[i] > 0 {
                for o in 0..<layer.outputs { y[o] += x.columns[i] * Double(abs(w[i * layer.outputs + o])) }
            }
        }
        record(y)
        return Bound(y)
    }

    /// |(γ ⊙ z + β)·W_j + b_j| for every row with ‖z‖₂ ≤ ρ, in the fixed point: γ, β and W are each rounded to the
    /// nearest unit u (so |γ̃_i| ≤ |γ_i| + u/2, |W̃_ij| ≤ |W_ij| + u/2, |β̃_i − β_i| ≤ u/2) and each output entry of
    /// the norm is floored once (error < u):
    /// ρ·‖(|γ| + u/2) ⊙ (|W_j| + u/2)‖₂ + |Σ_i β_i W_ij + b_j| + (u/2)·Σ_i |β_i| + (3u/2)·Σ_i (|W_ij| + u/2).
    func normalizedProduct(_ x: Normalized, weights w: [Float], inputs: Int, outputs: Int, bias: [Double])
        -> [Double]
    {
        let half = unit / 2
        var squares = [Double](repeating: 0, count: outputs)
        var constant = bias
        var absoluteSums = [Double](repeating: 0, count: outputs)
        for i in 0..<inputs {
            let g = abs(x.gamma[i]) + half
            let b = x.beta[i]
            for o in 0..<outputs {
                let weight = Double(w[i * outputs + o])
                let term = g * (abs(weight) + half)
                squares[o] += term * term
                constant[o] += b * weight
                absoluteSums[o] += abs(weight) + half
            }
        }
        let betaRounding = half * x.beta.reduce(0) { $0 + abs($1) }
        return (0..<outputs).map { o in
            x.radius * squares[o].squareRoot() + abs(constant[o]) + betaRounding + 3 * half * absoluteSums[o]
        }
    }

    public func relu(_ x: Tensor) throws -> Tensor { Bound(x.columns) }
    public func output(_ x: Tensor) throws -> [Double]? { nil }

    public func embed(_ ids: [Int]?, count: Int, table: WeightVector, width: Int) throws -> (
        embedded: Tensor, table: Table
    ) {
        let magnitudes = try absolute(table.values, "the embedding table")
        return (Bound(columnMaxima(magnitudes, width: width)), magnitudes)
    }

    public func serverTable(_ table: WeightVector, width: Int) throws -> Table {
        try absolute(table.values, "the output table")
    }

    public func addServerRows(_ x: Tensor, _ rows: WeightVector, width: Int) throws -> Tensor {
        add(x, Bound(columnMaxima(try absolute(rows.values, "the position table"), width: width)))
    }

    public func logits(_ x: Tensor, table: Table, rows: Int, width: Int, vocabulary: Int) throws -> Tensor {
        let y = (0..<vocabulary).map { v in
            (0..<width).reduce(0.0) { $0 + x.columns[$1] * table[v * width + $1] }
        }
        record(y)
        return Bound(y)
    }

    public func add(_ x: Tensor, _ y: Tensor) -> Tensor { Bound(zip(x.columns, y.columns).map { $0 + $1 }) }

    public func multiply(_ x: Tensor, _ y: Tensor) throws -> Tensor {
        let z = zip(x.columns, y.columns).map { $0 * $1 }
        record(z)
        return Bound(z)
    }

    public func layerNorm(_ x: Tensor, width: Int, gamma: WeightVector, beta: WeightVector, epsilon: Double) throws
        -> Tensor
    {
        // The mean's truncated value: Σx at scale f (a shift by log2 k) or Σx·2^{f+6}/k at scale 2f + 6
        // (`RingBackend.meanExtraBits`, certified); in the units of a scale-2f product, k·max|x|/2^f or
        // max|x|·2^6.
        let largest = x.largest
        record([width & (width - 1) == 0 ? Double(width) * largest / Double(1 << scale) : largest * 64])
        let root = Double(width).squareRoot() * 1.01
        let gammas = try signed(gamma.values, "γ")
        let betas = try signed(beta.values, "β")
        let output = zip(gammas, betas).map { abs($0) * root + abs($1) }
        recordNormalization(centered: 2 * largest, gammas: gammas.map(abs), output: output)
        return Bound(output, normalized: Normalized(gamma: gammas, beta: betas, radius: root))
    }

    public func rmsNorm(_ x: Tensor, width: Int, gamma: WeightVector, epsilon: Double) throws -> Tensor {
        let root = Double(width).squareRoot() * 1.01
        let gammas = try signed(gamma.values, "γ")
        let output = gammas.map { abs($0) * root }
        recordNormalization(centered: x.largest, gammas: gammas.map(abs), output: output)
        return Bound(
            output,
            normalized: Normalized(gamma: gammas, beta: [Double](repeating: 0, count: width), radius: root))
    }

    /// The certified norm's tail (`RingBackend.normalize`): z·γ at scale 2f (|z| ≤ `centered`) must not wrap, and
    /// z·t·γ + β at scale 3f, truncated by 2f, must lie in the gap — in the units of a scale-2f product, a bound
    /// B·2^f on the output.
    func recordNormalization(centered: Double, gammas: [Double], output: [Double]) {
        record(gammas.map { centered * $0 })
        record(output.map { $0 * Double(1 << scale) })
    }

    func activation(_ x: Tensor, minimum: Double) -> Tensor {
        largestActivationInput = max(largestActivationInput, x.largest)
        return Bound(x.columns.map { max($0, minimum) })
    }

    public func gelu(_ x: Tensor) throws -> Tensor { activation(x, minimum: 0.2) }
    public func silu(_ x: Tensor) throws -> Tensor { activation(x, minimum: 0.3) }
    public func geluExact(_ x: Tensor) throws -> Tensor { activation(x, minimum: 0.2) }

    public func rotary(_ x: Tensor, heads: Int, headDim: Int, theta: Double) throws -> Tensor {
        let half = headDim / 2
        var y = x.columns
        for head in 0..<heads {
            for i in 0..<half {
                let (a, b) = (head * headDim + i, head * headDim + i + half)
                let bound = (x.columns[a] * x.columns[a] + x.columns[b] * x.columns[b]).squareRoot()
                (y[a], y[b]) = (bound, bound)
            }
        }
        record(y)
        return Bound(y)
    }

    public func attention(
        _ q: Tensor, _ k: Tensor, _ v: Tensor, rows: Int, heads: Int, kvHeads: Int, headDim: Int, scaled: Bool,
        window: Int?, causal: Bool
    ) throws -> Tensor {
        let group = heads / kvHeads
        var context = [Double](repeating: 0, count: heads * headDim)
        for head in 0..<heads {
            let kvHead = head / group
            let score = (0..<headDim).reduce(0.0) {
                $0 + q.columns[head * headDim + $1] * k.columns[kvHead * headDim + $1]
            }
            record([score])
            largestSoftmaxInput = max(largestSoftmaxInput, scaled ? score / Double(headDim).squareRoot() : score)
            for c in 0..<headDim { context[head * headDim + c] = 1.01 * v.columns[kvHead * headDim + c] }
        }
        record(context)
        return Bound(context)
    }

    public func meanOfRows(_ x: Tensor, rows: Int, width: Int) throws -> Tensor {
        record(x.columns)
        return Bound(x.columns)
    }

    /// A row of a norm's output is still one.
    public func lastRow(_ x: Tensor, rows: Int, width: Int) -> Tensor { x }

    public func columns(_ x: Tensor, rows: Int, width: Int, start: Int, count: Int) -> Tensor {
        Bound(Array(x.columns[start..<(start + count)]))
    }
}

/// What `RangeEvaluator` proved about a model: the largest truncated product, and the bitwidth from which GapARS is
/// exact for every input; the largest inputs of its activations and softmaxes, and the bits they occupy.
public struct RangeCertificate: Sendable, Equatable {
    /// A bound on every truncated product, in real units.
    public let largestProduct: Double
    /// A bound on every GeLU/SiLU input and every softmax input (scaled scores), in real units.
    public let largestActivationInput: Double
    public let largestSoftmaxInput: Double
    /// The fixed-point scale f.
    public let scale: Int

    public init(
        largestProduct: Double, largestActivationInput: Double = .infinity, largestSoftmaxInput: Double = .infinity,
        scale: Int
    ) {
        self.largestProduct = largestProduct
        self.largestActivationInput = largestActivationInput
        self.largestSoftmaxInput = largestSoftmaxInput
        self.scale = scale
    }

    init(_ bounds: RangeEvaluator) {
        self.init(
            largestProduct: bounds.largestProduct, largestActivationInput: bounds.largestActivationInput,
            largestSoftmaxInput: bounds.largestSoftmaxInput, scale: bounds.scale)
    }

    /// The smallest n with 1.1·B + 1 < 2^{n−2−2f}: GapARS is exact at this bitwidth and above.
    public var minimumBitwidth: Int {
        let needed = 1.1 * largestProduct + 1
        return Int(Foundation.log2(needed).rounded(.down)) + 1 + 2 + 2 * scale
    }

    public func allowsGap(bitwidth n: Int) -> Bool { n >= minimumBitwidth }

    /// The smallest b with (1.1·B + 1)·2^f < 2^b: every activation input is below 2^b in units of 2^−f, with the same
    /// allowance for the fixed point's departures as the products.
    public var activationMagnitudeBits: Int { Self.magnitudeBits(largestActivationInput, scale: scale) }
    /// The same for the softmax inputs.
    public var softmaxMagnitudeBits: Int { Self.magnitudeBits(largestSoftmaxInput, scale: scale) }

    static func magnitudeBits(_ bound: Double, scale: Int) -> Int {
        guard bound.isFinite else { return 64 }
        return Int(Foundation.log2((1.1 * bound + 1) * Double(1 << scale)).rounded(.down)) + 1
    }

    /// Whether the certificate covers activation and softmax inputs below 2^b units (`InputWidths`).
    public func allows(_ widths: InputWidths) -> Bool {
        widths.activation.map { $0 >= activationMagnitudeBits } ?? true
            && widths.softmax.map { $0 >= softmaxMagnitudeBits } ?? true
    }
}
