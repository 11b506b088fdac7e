/// A tensor of ring elements: a shape (row-major) and n-bit values in UInt64 containers.
public struct RingTensor: Equatable, Sendable {
    public var ring: Ring
    public var shape: [Int]
    /// Row-major values, each reduced mod 2^n.
    public var values: [UInt64]

    /// A tensor with `values` reduced mod 2^n; `values.count` must equal the product of `shape`.
    public init(ring: Ring, shape: [Int], values: consuming [UInt64]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "dimensions are non-negative")
        var reduced = consume values
        precondition(reduced.count == shape.reduce(1, *), "values must fill the shape \(shape)")
        // In place: a caller that hands its array over (the usual case) pays no copy.
        if ring.bitwidth < 64 {
            let mask = ring.mask
            reduced.withUnsafeMutableBufferPointer { buffer in
                for i in buffer.indices { buffer[i] &= mask }
            }
        }
        self.ring = ring
        self.shape = shape
        self.values = reduced
    }

    /// A tensor whose values are already reduced mod 2^n (callers that reduce as they compute: no second pass).
    public init(ring: Ring, shape: [Int], reducedValues: [UInt64]) {
        precondition(reducedValues.count == shape.reduce(1, *), "values must fill the shape \(shape)")
        assert(reducedValues.allSatisfy { $0 & ~ring.mask == 0 }, "values must be reduced mod 2^n")
        self.ring = ring
        self.shape = shape
        values = reducedValues
    }

    /// (op(a_i, b_i) mod 2^n)_i in one pass and one allocation. Inlinable: called from other modules with a closure
    /// per element, it ran as a call per element (9 % of LayerNorm's CPU in a profile).
    @inlinable
    public static func combine(_ a: [UInt64], _ b: [UInt64], mask: UInt64, _ op: (UInt64, UInt64) -> UInt64) -> [UInt64]
    {
        precondition(a.count == b.count)
        return [UInt64](unsafeUninitializedCapacity: a.count) { out, initialized in
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    for i in 0..<a.count { out[i] = op(a[i], b[i]) & mask }
                }
            }
            initialized = a.count
        }
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
        return RingTensor(
            ring: a.ring, shape: a.shape, reducedValues: combine(a.values, b.values, mask: a.ring.mask) { $0 &+ $1 })
    }

    /// Elementwise a − b mod 2^n; the result has a's shape.
    public static func - (a: RingTensor, b: RingTensor) -> RingTensor {
        precondition(a.ring.bitwidth == b.ring.bitwidth && a.count == b.count, "operands must share bitwidth and size")
        return RingTensor(
            ring: a.ring, shape: a.shape, reducedValues: combine(a.values, b.values, mask: a.ring.mask) { $0 &- $1 })
    }

    /// The same values in a ring of another bitwidth: reduced when narrower, sign-extended when wider.
    public func converted(to target: Ring) -> RingTensor {
        if target.bitwidth <= ring.bitwidth { return RingTensor(ring: target, shape: shape, values: values) }
        return RingTensor(ring: target, shape: shape, values: values.map { target.word(ring.signed($0)) })
    }
}
