import Ring

/// A multilayer perceptron with ReLU between its linear layers: the built-in model of `sigma run` until the
/// transformer graphs exist.
public struct MLP: Sendable {
    public let layers: [LinearLayer]
    /// The ring the secure computation runs in.
    public let ring: Ring

    public init(layers: [LinearLayer], ring: Ring = Ring(bitwidth: 50, scale: 12)) {
        precondition(!layers.isEmpty && zip(layers, layers.dropFirst()).allSatisfy { $0.outputs == $1.inputs })
        self.layers = layers
        self.ring = ring
    }

    public var inputWidth: Int { layers[0].inputs }
    public var outputWidth: Int { layers[layers.count - 1].outputs }

    /// The model as the dealer and the client see it: shapes, no values.
    public var shapeOnly: MLP { MLP(layers: layers.map(\.shapeOnly), ring: ring) }

    /// x → Linear → ReLU → … → Linear, on `rows` inputs.
    public func forward<E: Evaluator>(_ evaluator: E, input: [Double]?, rows: Int = 1) throws -> [Double]? {
        var x = try evaluator.clientInput(input, rows: rows, columns: inputWidth)
        for (i, layer) in layers.enumerated() {
            x = try evaluator.linear(x, layer, rows: rows)
            if i + 1 < layers.count { x = try evaluator.relu(x) }
        }
        return try evaluator.output(x)
    }

    /// The built-in demo model: 16 → 64 → 64 → 10 with deterministic pseudo-random weights (He-scaled), n = 50,
    /// f = 12.
    public static func demo() -> MLP {
        var state: UInt64 = 0x5151_6A6A_7B7B_8C8C
        func uniform() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(state >> 40) / Float(1 << 24) * 2 - 1
        }
        let widths = [16, 64, 64, 10]
        let layers = (0..<3).map { i -> LinearLayer in
            let scale = (6 / Float(widths[i])).squareRoot()
            return LinearLayer(
                inputs: widths[i], outputs: widths[i + 1],
                weights: (0..<(widths[i] * widths[i + 1])).map { _ in uniform() * scale },
                bias: (0..<widths[i + 1]).map { _ in uniform() * 0.1 })
        }
        return MLP(layers: layers)
    }

    /// A built-in input for the demo.
    public static let demoInput: [Double] = (0..<16).map { (i: Int) -> Double in
        let step = Double(i % 5) * 0.4
        return step - 0.8 + Double(i) / 32
    }

    /// A 32-byte name for the computation (architecture, shapes and ring), compared by both parties before they
    /// exchange anything.
    public var fingerprint: [UInt8] {
        var description = "mlp;n=\(ring.bitwidth);f=\(ring.scale)"
        for layer in layers { description += ";\(layer.inputs)x\(layer.outputs)" }
        return fingerprint32(description)
    }
}

/// Four independent 64-bit FNV-1a hashes of `text`, as 32 bytes. Names a computation; it is not a MAC.
public func fingerprint32(_ text: String) -> [UInt8] {
    (0..<4).flatMap { lane -> [UInt8] in
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(lane)
        for byte in text.utf8 {
            h ^= UInt64(byte)
            h = h &* 0x100_0000_01b3
        }
        return (0..<8).map { UInt8(truncatingIfNeeded: h >> UInt64(8 * $0)) }
    }
}
