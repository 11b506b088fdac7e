/// A tensor of ring elements: a shape (row-major) and n-bit values in UInt64 containers.
public struct RingTensor: Equatable, Sendable {
    public var ring: Ring
    public var shape: [Int]
    /// Row-major values, each reduced mod 2^n.
    public var values: [UInt64]

    /// A tensor with `values` reduced mod 2^n; `values.count` must equal the product of `shape`.
    public init(ring: Ring, shape: [Int], values: [UInt64]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "dimensions are non-negative")
        precondition(values.count == shape.reduce(1, *), "values must fill the shape \(shape)")
        self.ring = ring
        self.shape = shape
        self.values = ring.bitwidth == 64 ? values : values.map { $0 & ring.mask }
    }

    /// A tensor of zeros.
    public init(zeros shape: [Int], ring: Ring) {
        self.init(ring: ring, shape: shape, values: [UInt64](repeating: 0, count: shape.reduce(1, *)))
    }

    /// The fixed-point encoding of real values.
    public init(encoding reals: [Double], shape: [Int], ring: Ring) {
        self.init(ring: ring, shape: shape, values: ring.encode(reals))
    }

    public var count: Int { values.count }

    /// The real values this tensor encodes.
    public func decoded() -> [Double] { ring.decode(values) }

    /// Elementwise a + b mod 2^n; the result has a's shape (shapes are layout metadata: the counts must agree).
    public static func + (a: RingTensor, b: RingTensor) -> RingTensor {
        precondition(a.ring.bitwidth == b.ring.bitwidth && a.count == b.count, "operands must share bitwidth and size")
        return RingTensor(ring: a.ring, shape: a.shape, values: zip(a.values, b.values).map { $0 &+ $1 })
    }

    /// Elementwise a − b mod 2^n; the result has a's shape.
    public static func - (a: RingTensor, b: RingTensor) -> RingTensor {
        precondition(a.ring.bitwidth == b.ring.bitwidth && a.count == b.count, "operands must share bitwidth and size")
        return RingTensor(ring: a.ring, shape: a.shape, values: zip(a.values, b.values).map { $0 &- $1 })
    }

    /// The same values in a ring of another bitwidth: reduced when narrower, sign-extended when wider.
    public func converted(to target: Ring) -> RingTensor {
        if target.bitwidth <= ring.bitwidth { return RingTensor(ring: target, shape: shape, values: values) }
        return RingTensor(ring: target, shape: shape, values: values.map { target.word(ring.signed($0)) })
    }
}
