import Protocols
import Ring

/// A linear layer y = x·W + b: the server holds W (in × out, row-major) and b; everyone else knows only the shape.
public struct LinearLayer: Sendable {
    public let inputs: Int
    public let outputs: Int
    public let weights: [Float]?
    public let bias: [Float]?

    public init(inputs: Int, outputs: Int, weights: [Float]?, bias: [Float]?) {
        precondition(weights.map { $0.count == inputs * outputs } ?? true, "weights must be inputs × outputs")
        precondition(bias.map { $0.count == outputs } ?? true, "one bias per output")
        self.inputs = inputs
        self.outputs = outputs
        self.weights = weights
        self.bias = bias
    }

    /// The same layer without its values, as the dealer and the client see it.
    public var shapeOnly: LinearLayer { LinearLayer(inputs: inputs, outputs: outputs, weights: nil, bias: nil) }
}

/// What a model is written against, once: the float reference, the cleartext fixed-point reference, the dealer
/// and each party all run the same model code through an `Evaluator`.
public protocol Evaluator {
    associatedtype Tensor
    /// The client's input, rows × columns.
    func clientInput(_ values: [Double]?, rows: Int, columns: Int) throws -> Tensor
    /// x·W + b for x of `rows` rows.
    func linear(_ x: Tensor, _ layer: LinearLayer, rows: Int) throws -> Tensor
    func relu(_ x: Tensor) throws -> Tensor
    /// The output, to the client alone (nil elsewhere).
    func output(_ x: Tensor) throws -> [Double]?
}

/// Real arithmetic in Double: the accuracy reference.
public struct FloatEvaluator: Evaluator {
    public init() {}

    public func clientInput(_ values: [Double]?, rows: Int, columns: Int) throws -> [Double] {
        guard let values else { throw ProtocolError.missingInput("the client's input") }
        return values
    }

    public func linear(_ x: [Double], _ layer: LinearLayer, rows: Int) throws -> [Double] {
        guard let w = layer.weights, let b = layer.bias else { throw ProtocolError.missingInput("the weights") }
        var y = [Double](repeating: 0, count: rows * layer.outputs)
        for r in 0..<rows {
            for o in 0..<layer.outputs {
                var sum = Double(b[o])
                for i in 0..<layer.inputs { sum += x[r * layer.inputs + i] * Double(w[i * layer.outputs + o]) }
                y[r * layer.outputs + o] = sum
            }
        }
        return y
    }

    public func relu(_ x: [Double]) throws -> [Double] { x.map { max($0, 0) } }

    public func output(_ x: [Double]) throws -> [Double]? { x }
}

/// Fixed point on any ring backend: the cleartext reference, the dealer, or a party. Weights enter at scale f,
/// biases at scale 2f (added before the truncation); every linear layer ends with a faithful ARS by f.
public final class RingEvaluator<Backend: RingBackend>: Evaluator {
    public let backend: Backend
    public let ring: Ring

    public init(_ backend: Backend, ring: Ring) {
        self.backend = backend
        self.ring = ring
    }

    public func clientInput(_ values: [Double]?, rows: Int, columns: Int) throws -> RingTensor {
        try backend.inputFromClient(values.map(ring.encode), shape: [rows, columns], ring: ring)
    }

    public func linear(_ x: RingTensor, _ layer: LinearLayer, rows: Int) throws -> RingTensor {
        let doubled = Ring(bitwidth: ring.bitwidth, scale: 2 * ring.scale)
        let w = try backend.inputFromServer(
            layer.weights.map { ring.encode($0) }, shape: [layer.inputs, layer.outputs], ring: ring)
        let b = try backend.inputFromServer(layer.bias.map { doubled.encode($0) }, shape: [layer.outputs], ring: ring)
        let product = try backend.matmul(x, w, m: rows, k: layer.inputs, n: layer.outputs, batch: 1)
        let biasRows = RingTensor(
            ring: ring, shape: product.shape, values: (0..<product.count).map { b.values[$0 % layer.outputs] })
        return try backend.faithfulARS(backend.add(product, biasRows), by: ring.scale)
    }

    public func relu(_ x: RingTensor) throws -> RingTensor { try backend.relu(x) }

    public func output(_ x: RingTensor) throws -> [Double]? { try backend.revealToClient(x).map(ring.decode) }
}
