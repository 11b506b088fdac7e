internal import CRingKernels

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
        bytes.append(contentsOf: repeatElement(0, count: size))
        guard size > 0 else { return }
        values.withUnsafeBufferPointer { v in
            bytes.withUnsafeMutableBytes { raw in
                sigma_pack(
                    v.baseAddress!, v.count, UInt32(bits),
                    (raw.baseAddress! + start).assumingMemoryBound(to: UInt8.self), size)
            }
        }
    }

    /// The packed form of `values`.
    public static func pack(_ values: [UInt64], bits: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(byteCount(count: values.count, bits: bits))
        pack(values, bits: bits, into: &bytes)
        return bytes
    }

    /// Bits (each 0 or 1) in the wire format of `pack(_:bits: 1)` (bit i at bit i mod 8 of byte i / 8), without
    /// widening them to words first.
    public static func packBits(_ bits: [UInt8]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: (bits.count + 7) / 8) { bytes, initialized in
            bits.withUnsafeBufferPointer { bits in
                for byte in 0..<((bits.count + 7) / 8) {
                    var packed: UInt8 = 0
                    for j in 0..<min(8, bits.count - 8 * byte) { packed |= (bits[8 * byte + j] & 1) << UInt8(j) }
                    bytes[byte] = packed
                }
            }
            initialized = (bits.count + 7) / 8
        }
    }

    /// The inverse of `packBits`, or nil when `bytes` is not exactly `count` packed bits.
    public static func unpackBits(_ bytes: UnsafeRawBufferPointer, count: Int) -> [UInt8]? {
        guard bytes.count == (count + 7) / 8 else { return nil }
        return [UInt8](unsafeUninitializedCapacity: count) { bits, initialized in
            for i in 0..<count { bits[i] = (bytes[i >> 3] >> UInt8(i & 7)) & 1 }
            initialized = count
        }
    }

    /// Unpacks `count` values of `bits` bits from `bytes`, which must hold exactly their packed size.
    public static func unpack(_ bytes: ArraySlice<UInt8>, count: Int, bits: Int) -> [UInt64]? {
        bytes.withUnsafeBytes { unpack($0, count: count, bits: bits) }
    }

    /// The same, reading the packed bytes in place (a mapped key file, a received message).
    public static func unpack(_ bytes: UnsafeRawBufferPointer, count: Int, bits: Int) -> [UInt64]? {
        guard (1...64).contains(bits), bytes.count == byteCount(count: count, bits: bits) else { return nil }
        return [UInt64](unsafeUninitializedCapacity: count) { result, initialized in
            if count > 0 {
                sigma_unpack(
                    bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count, count, UInt32(bits),
                    result.baseAddress!)
            }
            initialized = count
        }
    }

    /// One of several candidates per element, read in place: with `candidates` = K packed values per element
    /// (element-major), value i·K + choices[i] for each i. Nil unless `bytes` holds exactly the K·count values.
    public static func select(
        _ bytes: UnsafeRawBufferPointer, candidates: Int, bits: Int, choices: [UInt8]
    ) -> [UInt64]? {
        let count = choices.count
        guard (1...64).contains(bits), bytes.count == byteCount(count: count * candidates, bits: bits),
            choices.allSatisfy({ Int($0) < candidates })
        else { return nil }
        return [UInt64](unsafeUninitializedCapacity: count) { result, initialized in
            if count > 0 {
                choices.withUnsafeBufferPointer { chosen in
                    sigma_unpack_chosen(
                        bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count, count,
                        UInt32(candidates), UInt32(bits), chosen.baseAddress!, result.baseAddress!)
                }
            }
            initialized = count
        }
    }
}
