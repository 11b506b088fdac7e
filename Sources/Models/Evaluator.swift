import Foundation
import Protocols
import Ring

/// A linear layer y = x·W (+ b): the server holds W (in × out, row-major) and b; everyone else knows only the
/// shape and whether there is a bias.
public struct LinearLayer: Sendable {
    public let inputs: Int
    public let outputs: Int
    public let weights: [Float]?
    public let bias: [Float]?
    public let hasBias: Bool
    /// Kept encodings of W and b, for a layer a `WeightSource` keeps (nil: encode at every use).
    let encodings: (weights: WeightEncodings, bias: WeightEncodings)?

    public init(inputs: Int, outputs: Int, weights: [Float]?, bias: [Float]?, hasBias: Bool? = nil) {
        self.init(
            inputs: inputs, outputs: outputs, weights: weights, bias: bias, hasBias: hasBias, keepEncodings: false)
    }

    init(inputs: Int, outputs: Int, weights: [Float]?, bias: [Float]?, hasBias: Bool? = nil, keepEncodings: Bool) {
        precondition(weights.map { $0.count == inputs * outputs } ?? true, "weights must be inputs × outputs")
        precondition(bias.map { $0.count == outputs } ?? true, "one bias per output")
        self.inputs = inputs
        self.outputs = outputs
        self.weights = weights
        self.bias = bias
        self.hasBias = hasBias ?? (bias != nil)
        encodings = keepEncodings ? (WeightEncodings(), WeightEncodings()) : nil
    }

    /// The same layer without its values, as the dealer and the client see it.
    public var shapeOnly: LinearLayer {
        LinearLayer(inputs: inputs, outputs: outputs, weights: nil, bias: nil, hasBias: hasBias)
    }

    /// W in fixed point (nil without the values).
    func encodedWeights(_ ring: Ring) -> [UInt64]? {
        weights.map { encodings?.weights.encoded($0, ring) ?? ring.encode($0) }
    }

    /// b in fixed point (nil without the values).
    func encodedBias(_ ring: Ring) -> [UInt64]? {
        bias.map { encodings?.bias.encoded($0, ring) ?? ring.encode($0) }
    }
}

/// A vector of weights held by the server (nil values elsewhere), such as a norm's γ.
public struct WeightVector: Sendable {
    public let values: [Float]?
    public let count: Int
    /// Kept encodings, for a vector a `WeightSource` keeps (nil: encode at every use).
    let encodings: WeightEncodings?

    public init(_ values: [Float]?, count: Int) {
        self.init(values, count: count, keepEncodings: false)
    }

    init(_ values: [Float]?, count: Int, keepEncodings: Bool) {
        self.values = values
        self.count = count
        encodings = keepEncodings ? WeightEncodings() : nil
    }

    /// The values in fixed point (nil without them).
    func encoded(_ ring: Ring) -> [UInt64]? {
        values.map { encodings?.encoded($0, ring) ?? ring.encode($0) }
    }
}

/// One weight tensor's fixed-point encodings, made once per ring and kept beside its floats: the server runs the
/// model's code several times per inference (the weights tag, the preprocessing pass, the online phase), and
/// encoding GPT-2's 124 M weights each time cost ≈ 1 s of the online phase.
final class WeightEncodings: @unchecked Sendable {  // `byRing` only under `lock`
    private let lock = NSLock()
    private var byRing: [Ring: [UInt64]] = [:]

    func encoded(_ values: [Float], _ ring: Ring) -> [UInt64] {
        lock.lock()
        defer { lock.unlock() }
        if let kept = byRing[ring] { return kept }
        let words = ring.encode(values)
        byRing[ring] = words
        return words
    }
}

/// What a model is written against, once: the float reference, the cleartext fixed-point reference, the dealer
/// and each party all run the same model code through an `Evaluator`.
public protocol Evaluator {
    associatedtype Tensor
    /// A table of the server's [rows × width] (embeddings, an output layer), as this evaluator holds it.
    associatedtype Table
    /// The client's input, rows × columns.
    func clientInput(_ values: [Double]?, rows: Int, columns: Int) throws -> Tensor
    /// x·W + b for x of `rows` rows.
    func linear(_ x: Tensor, _ layer: LinearLayer, rows: Int) throws -> Tensor
    func relu(_ x: Tensor) throws -> Tensor
    /// The output, to the client alone (nil elsewhere).
    func output(_ x: Tensor) throws -> [Double]?
    /// Token embeddings of the client's ids (`count` tokens) from the server's table [vocabulary × width]; the
    /// returned table tensor can serve again as a tied output layer.
    func embed(_ ids: [Int]?, count: Int, table: WeightVector, width: Int) throws -> (embedded: Tensor, table: Table)
    /// A [rows × width] table of the server's (an untied output layer).
    func serverTable(_ table: WeightVector, width: Int) throws -> Table
    /// x + the server's rows (`rows` × width), such as learned position embeddings.
    func addServerRows(_ x: Tensor, _ rows: WeightVector, width: Int) throws -> Tensor
    /// x · tableᵀ for a [vocabulary × width] table tensor from `embed` (a tied output layer).
    func logits(_ x: Tensor, table: Table, rows: Int, width: Int, vocabulary: Int) throws -> Tensor
    func add(_ x: Tensor, _ y: Tensor) -> Tensor
    /// x ⊙ y, at the model's scale.
    func multiply(_ x: Tensor, _ y: Tensor) throws -> Tensor
    func layerNorm(_ x: Tensor, width: Int, gamma: WeightVector, beta: WeightVector, epsilon: Double) throws -> Tensor
    func rmsNorm(_ x: Tensor, width: Int, gamma: WeightVector, epsilon: Double) throws -> Tensor
    func gelu(_ x: Tensor) throws -> Tensor
    func silu(_ x: Tensor) throws -> Tensor
    /// RoPE on x [rows × heads·headDim].
    func rotary(_ x: Tensor, heads: Int, headDim: Int, theta: Double) throws -> Tensor
    /// Multi-head attention on q [rows × heads·headDim], k and v [rows × kvHeads·headDim]; scores scaled by
    /// 1/√headDim when `scaled`; causal: query i sees keys max(0, i − window + 1) … i; otherwise every key.
    func attention(
        _ q: Tensor, _ k: Tensor, _ v: Tensor, rows: Int, heads: Int, kvHeads: Int, headDim: Int, scaled: Bool,
        window: Int?, causal: Bool
    ) throws -> Tensor
    /// GeLU with erf (BERT); `gelu` is the tanh form of GPT-2's `gelu_new`. The fixed-point table serves both.
    func geluExact(_ x: Tensor) throws -> Tensor
    /// The mean of the rows: [rows × width] → [1 × width].
    func meanOfRows(_ x: Tensor, rows: Int, width: Int) throws -> Tensor
    /// The last of `rows` rows.
    func lastRow(_ x: Tensor, rows: Int, width: Int) -> Tensor
    /// Columns [start, start + count) of each row of width `width`.
    func columns(_ x: Tensor, rows: Int, width: Int, start: Int, count: Int) -> Tensor
}

/// Real arithmetic in Double: the accuracy reference.
public struct FloatEvaluator: Evaluator {
    public init() {}

    public func clientInput(_ values: [Double]?, rows: Int, columns: Int) throws -> [Double] {
        guard let values else { throw ProtocolError.missingInput("the client's input") }
        return values
    }

    public func linear(_ x: [Double], _ layer: LinearLayer, rows: Int) throws -> [Double] {
        guard let w = layer.weights else { throw ProtocolError.missingInput("the weights") }
        var y = [Double](repeating: 0, count: rows * layer.outputs)
        for r in 0..<rows {
            for i in 0..<layer.inputs {
                let xi = x[r * layer.inputs + i]
                for o in 0..<layer.outputs { y[r * layer.outputs + o] += xi * Double(w[i * layer.outputs + o]) }
            }
            if let b = layer.bias { for o in 0..<layer.outputs { y[r * layer.outputs + o] += Double(b[o]) } }
        }
        return y
    }

    public func relu(_ x: [Double]) throws -> [Double] { x.map { max($0, 0) } }

    public func output(_ x: [Double]) throws -> [Double]? { x }
}

/// How products (scale 2f) are truncated back to scale f.
public enum ProductTruncation: String, Sendable, CaseIterable {
    /// SIGMA's GapARS: exact when every product lies in [−2^{n−2}, 2^{n−2}), which `RangeCertificate` proves from a
    /// checkpoint's weights; 131 B of key per element at n = 50 against 666 B, 2 exchanges against 4. SIGMA itself
    /// uses the faithful ARS after linear layers; this is one of Sigma's departures (docs/performance.md).
    case gap
    /// The faithful ARS: exact for every n-bit value, whatever the weights or the input.
    case faithful
}

/// The bits the inputs of GeLU/SiLU and of softmax occupy, as a `RangeCertificate` proves them: every |x| < 2^b
/// in units of 2^−f. Public, like the model's shapes: the dealer sizes the comparison keys by them (nil: only what
/// the preceding truncation implies, the reference's n − f). They reveal about the weights no more than the
/// certificate's two bounds, rounded to a power of two.
public struct InputWidths: Sendable, Equatable {
    public var activation: Int?
    public var softmax: Int?

    public init(activation: Int? = nil, softmax: Int? = nil) {
        self.activation = activation
        self.softmax = softmax
    }

    /// What the certificate proves.
    public init(_ certificate: RangeCertificate) {
        self.init(activation: certificate.activationMagnitudeBits, softmax: certificate.softmaxMagnitudeBits)
    }
}

/// Fixed point on any ring backend: the cleartext reference, the dealer, or a party. Weights enter at scale f,
/// biases at scale 2f (added before the truncation); every product ends with an ARS by f (`truncation`).
public final class RingEvaluator<Backend: RingBackend>: Evaluator {
    public let backend: Backend
    public let ring: Ring
    public let truncation: ProductTruncation
    public let widths: InputWidths

    /// `truncation` defaults to the faithful ARS, exact for any input; token models pass `.gap` once their
    /// `RangeCertificate` allows it, and the `widths` it proves.
    public init(
        _ backend: Backend, ring: Ring, truncation: ProductTruncation = .faithful, widths: InputWidths = InputWidths()
    ) {
        self.backend = backend
        self.ring = ring
        self.truncation = truncation
        self.widths = widths
    }

    /// ARS by f of a product at scale 2f.
    func truncate(_ x: RingTensor) throws -> RingTensor {
        try backend.arithmeticShift(x, by: ring.scale, gap: truncation == .gap)
    }

    public func clientInput(_ values: [Double]?, rows: Int, columns: Int) throws -> RingTensor {
        backend.enterLayer(.input)
        return try backend.inputFromClient(values.map(ring.encode), shape: [rows, columns], ring: ring)
    }

    public func linear(_ x: RingTensor, _ layer: LinearLayer, rows: Int) throws -> RingTensor {
        backend.enterLayer(.matmul)
        let (k, n) = (layer.inputs, layer.outputs)
        let weights = try backend.maskServerWeights(layer.encodedWeights(ring), count: k * n, ring: ring)
        // The bias (at scale 2f) joins the server's share of the product: no round, no key.
        let bias = layer.hasBias ? layer.encodedBias(doubled) : nil
        if layer.hasBias, layer.weights != nil, bias == nil { throw ProtocolError.missingInput("the bias") }
        let product = try backend.matmulMaskedWeights(x, weights, m: rows, k: k, n: n, bias: bias)
        backend.enterLayer(.truncation)
        return try truncate(product)
    }

    public func relu(_ x: RingTensor) throws -> RingTensor {
        backend.enterLayer(.activation)
        return try backend.relu(x)
    }

    public func output(_ x: RingTensor) throws -> [Double]? {
        backend.enterLayer(.output)
        return try backend.revealToClient(x).map(ring.decode)
    }
}
