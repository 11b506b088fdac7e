/// The ring Z_{2^n} with n-bit values in UInt64 containers, and the fixed-point encoding on it.
///
/// A real r is encoded as x = round(r · 2^f) mod 2^n in two's complement (SIGMA §3.1). The reference converts by
/// casting `r · 2^f` straight to an unsigned 64-bit integer, which is undefined for negative values (and turned
/// them all into −1 on this CPU); here the conversion goes through a signed integer, rounding to nearest and
/// clamping to the representable range.
public struct Ring: Hashable, Sendable, CustomStringConvertible {
    /// n: values live in [0, 2^n).
    public let bitwidth: Int
    /// f: fractional bits of the fixed-point encoding.
    public let scale: Int

    /// A ring of `bitwidth` (1...64) bits with `scale` (0 ..< bitwidth) fractional bits; SIGMA uses f = 12.
    public init(bitwidth: Int, scale: Int = 12) {
        precondition((1...64).contains(bitwidth), "ring bitwidth must be 1...64")
        precondition((0..<bitwidth).contains(scale), "scale must be below the bitwidth")
        self.bitwidth = bitwidth
        self.scale = scale
    }

    /// 2^n − 1.
    @inlinable
    public var mask: UInt64 { bitwidth == 64 ? ~0 : (1 << UInt64(bitwidth)) &- 1 }

    /// x mod 2^n.
    @inlinable
    public func reduce(_ x: UInt64) -> UInt64 { x & mask }

    /// The signed value of an n-bit two's-complement word.
    @inlinable
    public func signed(_ x: UInt64) -> Int64 {
        let shift = UInt64(64 - bitwidth)
        return Int64(bitPattern: x << shift) >> Int64(shift)
    }

    /// The n-bit word of a signed integer (wrapping).
    @inlinable
    public func word(_ value: Int64) -> UInt64 { UInt64(bitPattern: value) & mask }

    /// The largest and smallest signed values: 2^{n−1} − 1 and −2^{n−1}.
    public var signedRange: ClosedRange<Int64> {
        bitwidth == 64
            ? Int64.min...Int64.max : -(Int64(1) << Int64(bitwidth - 1))...((Int64(1) << Int64(bitwidth - 1)) - 1)
    }

    /// round(r · 2^f), clamped to the signed range, as an n-bit word. NaN encodes as 0.
    public func encode(_ r: Double) -> UInt64 {
        guard !r.isNaN else { return 0 }
        let scaled = (r * Double(sign: .plus, exponent: scale, significand: 1)).rounded(.toNearestOrEven)
        let range = signedRange
        if scaled >= Double(range.upperBound) { return word(range.upperBound) }
        if scaled <= Double(range.lowerBound) { return word(range.lowerBound) }
        return word(Int64(scaled))
    }

    /// The real number an n-bit word stands for: signed(x) / 2^f.
    public func decode(_ x: UInt64) -> Double {
        Double(signed(x)) * Double(sign: .plus, exponent: -scale, significand: 1)
    }

    public func encode(_ values: [Double]) -> [UInt64] { values.map(encode) }
    public func encode(_ values: [Float]) -> [UInt64] { values.map { encode(Double($0)) } }
    public func decode(_ words: [UInt64]) -> [Double] { words.map(decode) }

    public var description: String { "Z_2^\(bitwidth) (scale \(scale))" }
}
