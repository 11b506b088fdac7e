/// Packing of n-bit values into exactly ⌈count · n / 8⌉ bytes, for the wire: value i occupies bits
/// [i·n, (i+1)·n) of a little-endian bit stream. SIGMA's GPU code packs this way; on the CPU the reference sends
/// whole 64-bit words, which costs up to 64/n times the bytes.
public enum BitPacking {
    /// The packed size of `count` values of `bits` bits.
    @inlinable
    public static func byteCount(count: Int, bits: Int) -> Int { (count * bits + 7) / 8 }

    /// Appends `values` (each below 2^bits; higher bits are ignored) to `bytes`, packed.
    public static func pack(_ values: [UInt64], bits: Int, into bytes: inout [UInt8]) {
        precondition((1...64).contains(bits))
        let start = bytes.count
        let size = byteCount(count: values.count, bits: bits)
        bytes.append(contentsOf: repeatElement(0, count: size + 8))  // slack for whole-word stores
        let mask: UInt64 = bits == 64 ? ~0 : (1 << UInt64(bits)) &- 1
        bytes.withUnsafeMutableBytes { raw in
            let out = raw.baseAddress! + start
            var accumulator: UInt64 = 0
            var filled = 0
            var offset = 0
            for value in values {
                let v = value & mask
                accumulator |= v << UInt64(filled)
                if filled + bits >= 64 {
                    out.storeBytes(of: accumulator.littleEndian, toByteOffset: offset, as: UInt64.self)
                    offset += 8
                    accumulator = filled == 0 ? 0 : v >> UInt64(64 - filled)
                    filled = filled + bits - 64
                } else {
                    filled += bits
                }
            }
            if filled > 0 { out.storeBytes(of: accumulator.littleEndian, toByteOffset: offset, as: UInt64.self) }
        }
        bytes.removeLast(8)
    }

    /// The packed form of `values`.
    public static func pack(_ values: [UInt64], bits: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(byteCount(count: values.count, bits: bits) + 8)
        pack(values, bits: bits, into: &bytes)
        return bytes
    }

    /// Unpacks `count` values of `bits` bits from `bytes`, which must hold exactly their packed size.
    public static func unpack(_ bytes: ArraySlice<UInt8>, count: Int, bits: Int) -> [UInt64]? {
        guard (1...64).contains(bits), bytes.count == byteCount(count: count, bits: bits) else { return nil }
        var result = [UInt64](repeating: 0, count: count)
        let mask: UInt64 = bits == 64 ? ~0 : (1 << UInt64(bits)) &- 1
        var padded = Array(bytes)
        padded.append(contentsOf: repeatElement(0, count: 16))
        padded.withUnsafeBytes { raw in
            for i in 0..<count {
                let bit = i * bits
                let lo = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: bit / 8, as: UInt64.self))
                let shift = UInt64(bit % 8)
                var v = lo >> shift
                if shift + UInt64(bits) > 64 {
                    let hi = UInt64(raw[bit / 8 + 8])
                    v |= hi << (64 - shift)
                }
                result[i] = v & mask
            }
        }
        return result
    }
}
