internal import CSigmaKernels

/// Distributed comparison functions (Boyle et al., Eurocrypt 2021, Fig. 3) with a payload in Z_{2^m}:
/// keys k_0, k_1 for (α, β) such that Eval(k_0, x) + Eval(k_1, x) = β · 1{x < α} mod 2^m.
///
/// Each tree node yields two seeds (H_0, H_1) and two payload values (H_2, H_3) of the fixed-key PRG, so
/// evaluation costs 2 AES calls per input bit, against 1 for a DPF comparison (`DPFKeys.lessThan`). The DCF is
/// the better tool when the payload is a ring element that would otherwise need a separate conversion, or when
/// one key must serve comparisons whose result is used arithmetically at many points.
///
/// Key body (n input bits, N keys), structure-of-arrays: roots N × 16 B; seed corrections n × N × 16 B (left
/// control-bit correction in bit 0); value corrections n × N × 8 B; final corrections N × 8 B; right control-bit
/// corrections n × ⌈N/8⌉ B; 8 bytes of padding. Payload words are stored in 8 bytes whatever m is.
public enum DCF {
    /// Generates keys for 1{x < α_k} · β_k with x, α_k ∈ [0, 2^inputBits) and β_k ∈ Z_{2^payloadBits}.
    public static func generate(
        alphas: [UInt64], payloads: [UInt64], inputBits: Int, payloadBits: Int, random: inout SecureRandom,
        prg: FixedKeyPRG = .shared
    ) -> (p0: DCFKeys, p1: DCFKeys) {
        precondition((1...64).contains(inputBits) && (1...64).contains(payloadBits))
        precondition(alphas.count == payloads.count, "one payload per key")
        let layout = DCFLayout(inputBits: inputBits, payloadBits: payloadBits, count: alphas.count)
        let n = layout.count
        let mask = layout.payloadMask
        var bytes0 = [UInt8](repeating: 0, count: layout.totalSize)
        var bytes1 = bytes0
        KeyHeader.write(
            kind: DCFLayout.kind, party: .p0, inputBits: inputBits, payloadBits: payloadBits, count: n,
            into: &bytes0)
        KeyHeader.write(
            kind: DCFLayout.kind, party: .p1, inputBits: inputBits, payloadBits: payloadBits, count: n,
            into: &bytes1)
        var seeds0 = random.blocks(n).map { $0.withControlBit(0) }
        var seeds1 = random.blocks(n).map { $0.withControlBit(1) }
        var valueAlpha = [UInt64](repeating: 0, count: n)
        bytes0.withUnsafeMutableBytes { out0 in
            bytes1.withUnsafeMutableBytes { out1 in
                for k in 0..<n {
                    out0.storeBytes(of: seeds0[k], toByteOffset: layout.rootsOffset + 16 * k, as: Block.self)
                    out1.storeBytes(of: seeds1[k], toByteOffset: layout.rootsOffset + 16 * k, as: Block.self)
                }
                for level in 1...inputBits {
                    let (left0, right0) = prg.hashPair(seeds0)
                    let (left1, right1) = prg.hashPair(seeds1)
                    let (vLeft0, vRight0) = prg.hashPair(seeds0, base: 2)
                    let (vLeft1, vRight1) = prg.hashPair(seeds1, base: 2)
                    let shift = UInt64(inputBits - level)
                    for k in 0..<n {
                        let a = UInt8(truncatingIfNeeded: (alphas[k] >> shift) & 1)
                        let t0 = seeds0[k].controlBit
                        let t1 = seeds1[k].controlBit
                        let (keep0, lose0) = a == 0 ? (left0[k], right0[k]) : (right0[k], left0[k])
                        let (keep1, lose1) = a == 0 ? (left1[k], right1[k]) : (right1[k], left1[k])
                        let (vKeep0, vLose0) = a == 0 ? (vLeft0[k], vRight0[k]) : (vRight0[k], vLeft0[k])
                        let (vKeep1, vLose1) = a == 0 ? (vLeft1[k], vRight1[k]) : (vRight1[k], vLeft1[k])
                        let seedCW = (lose0 ^ lose1).withControlBit(0)
                        // V_CW = (−1)^{t_1} [Convert(v_1^Lose) − Convert(v_0^Lose) − V_α], plus (−1)^{t_1} β when
                        // Lose = L (α_i = 1: every x going left here is below α).
                        var valueCW = convert(vLose1) &- convert(vLose0) &- valueAlpha[k]
                        if a == 1 { valueCW &+= payloads[k] }
                        valueCW = negateIf(t1, valueCW) & mask
                        valueAlpha[k] =
                            (valueAlpha[k] &- convert(vKeep1) &+ convert(vKeep0) &+ negateIf(t1, valueCW)) & mask
                        let tLeft = left0[k].controlBit ^ left1[k].controlBit ^ a ^ 1
                        let tRight = right0[k].controlBit ^ right1[k].controlBit ^ a
                        let stored = seedCW.withControlBit(tLeft)
                        for out in [out0, out1] {
                            out.storeBytes(of: stored, toByteOffset: layout.seedOffset(level) + 16 * k, as: Block.self)
                            out.storeBytes(
                                of: valueCW.littleEndian, toByteOffset: layout.valueOffset(level) + 8 * k,
                                as: UInt64.self)
                            if tRight != 0 { out[layout.rightBitOffset(level) + k / 8] |= 1 << UInt8(k % 8) }
                        }
                        let correction = seedCW.withControlBit(a == 0 ? tLeft : tRight)
                        seeds0[k] = keep0 ^ correction.masked(by: t0)
                        seeds1[k] = keep1 ^ correction.masked(by: t1)
                    }
                }
                for k in 0..<n {
                    // CW^(n+1) = (−1)^{t_1} [Convert(s_1) − Convert(s_0) − V_α]
                    let final =
                        negateIf(seeds1[k].controlBit, convert(seeds1[k]) &- convert(seeds0[k]) &- valueAlpha[k]) & mask
                    out0.storeBytes(of: final.littleEndian, toByteOffset: layout.finalOffset + 8 * k, as: UInt64.self)
                    out1.storeBytes(of: final.littleEndian, toByteOffset: layout.finalOffset + 8 * k, as: UInt64.self)
                }
            }
        }
        KeyHeader.seal(&bytes0)
        KeyHeader.seal(&bytes1)
        return (
            DCFKeys(unchecked: bytes0, party: .p0, layout: layout),
            DCFKeys(unchecked: bytes1, party: .p1, layout: layout)
        )
    }

    /// Convert: a block to a payload word. The high half is used because bit 0 of the low half carries t.
    @inline(__always)
    static func convert(_ block: Block) -> UInt64 { block.hi }

    @inline(__always)
    static func negateIf(_ bit: UInt8, _ value: UInt64) -> UInt64 { bit == 0 ? value : 0 &- value }
}

/// Where each section of a DCF key batch lives in its encoding (offsets from the start of the header).
struct DCFLayout: Equatable, Sendable {
    static let kind: UInt8 = 2
    static let padding = 8

    let inputBits: Int
    let payloadBits: Int
    let count: Int

    var payloadMask: UInt64 { payloadBits == 64 ? ~0 : (1 << UInt64(payloadBits)) - 1 }
    var bitBytes: Int { (count + 7) / 8 }
    var rootsOffset: Int { KeyHeader.size }
    func seedOffset(_ level: Int) -> Int { rootsOffset + 16 * count * level }
    func valueOffset(_ level: Int) -> Int { rootsOffset + 16 * count * (inputBits + 1) + 8 * count * (level - 1) }
    var finalOffset: Int { valueOffset(inputBits + 1) }
    func rightBitOffset(_ level: Int) -> Int { finalOffset + 8 * count + bitBytes * (level - 1) }
    var bodySize: Int { count * (16 * (inputBits + 1) + 8 * (inputBits + 1)) + bitBytes * inputBits + Self.padding }
    var totalSize: Int { KeyHeader.size + bodySize }

    static func checkedBodySize(inputBits: Int, payloadBits: Int, count: Int) throws(KeyDecodingError) -> Int {
        guard (1...64).contains(inputBits) else { throw .badParameter("DCF input bits \(inputBits)") }
        guard (1...64).contains(payloadBits) else { throw .badParameter("DCF payload bits \(payloadBits)") }
        let trees = try checkedSize(count, 24 * (inputBits + 1))
        let bits = try checkedSize((count + 7) / 8, inputBits)
        let (total, overflow) = trees.addingReportingOverflow(bits)
        guard !overflow, total < Int.max - padding else { throw .badParameter("section size overflows") }
        return total + padding
    }
}

/// One party's keys for a batch of DCFs, in their encoded form.
public struct DCFKeys: Sendable {
    public let party: Party
    let layout: DCFLayout
    /// The versioned encoding: a 32-byte header, then the sections (see `DCF`).
    public let encoded: [UInt8]

    public var inputBits: Int { layout.inputBits }
    public var payloadBits: Int { layout.payloadBits }
    public var count: Int { layout.count }

    init(unchecked encoded: [UInt8], party: Party, layout: DCFLayout) {
        self.encoded = encoded
        self.party = party
        self.layout = layout
    }

    public static let encodedHeaderSize = KeyHeader.size

    /// The whole encoding's size from its header (checked), so a reader knows how many bytes to take.
    public static func encodedSize(of bytes: UnsafeRawBufferPointer) throws(KeyDecodingError) -> Int {
        let fields = try KeyHeader.read(bytes, kind: DCFLayout.kind)
        return KeyHeader.size
            + (try DCFLayout.checkedBodySize(
                inputBits: fields.inputBits, payloadBits: fields.payloadBits, count: fields.count))
    }

    /// Decodes and validates an encoding: header, exact size and checksum. Never traps on bad input.
    public init(decoding encoded: [UInt8]) throws(KeyDecodingError) {
        let fields = try withDecodedBytes(encoded) { bytes throws(KeyDecodingError) in
            let fields = try KeyHeader.read(bytes, kind: DCFLayout.kind)
            let body = try DCFLayout.checkedBodySize(
                inputBits: fields.inputBits, payloadBits: fields.payloadBits, count: fields.count)
            try KeyHeader.verify(bytes, bodySize: body)
            return fields
        }
        self.init(
            unchecked: encoded, party: fields.party,
            layout: DCFLayout(inputBits: fields.inputBits, payloadBits: fields.payloadBits, count: fields.count))
    }

    /// Shares (mod 2^m) of β_k · 1{x < α_k} at every point; `points[k·E + e]` is evaluated under key k.
    public func evaluate(at points: [UInt64], pointsPerKey e: Int = 1, prg: FixedKeyPRG = .shared) -> [UInt64] {
        precondition(e > 0 && points.count == count * e, "points must be count × pointsPerKey")
        let m = points.count
        let mask = layout.payloadMask
        let sign = party == .p0
        var result = [UInt64](repeating: 0, count: m)
        encoded.withUnsafeBytes { bytes in
            var seeds = (0..<m).map {
                bytes.loadUnaligned(fromByteOffset: layout.rootsOffset + 16 * ($0 / e), as: Block.self)
            }
            var directions = [UInt8](repeating: 0, count: m)
            for level in 1...layout.inputBits {
                let shift = UInt64(layout.inputBits - level)
                for j in 0..<m { directions[j] = UInt8(truncatingIfNeeded: (points[j] >> shift) & 1) }
                let children = prg.hash(seeds, select: directions)
                let values = prg.hash(seeds, select: directions, base: 2)
                for j in 0..<m {
                    let k = j / e
                    let t = seeds[j].controlBit
                    let stored = bytes.loadUnaligned(fromByteOffset: layout.seedOffset(level) + 16 * k, as: Block.self)
                    let valueCW = UInt64(
                        littleEndian: bytes.loadUnaligned(
                            fromByteOffset: layout.valueOffset(level) + 8 * k, as: UInt64.self))
                    let rightBit = (bytes[layout.rightBitOffset(level) + k / 8] >> UInt8(k % 8)) & 1
                    let correction = directions[j] == 0 ? stored : stored.withControlBit(rightBit)
                    let share = DCF.convert(values[j]) &+ (t == 1 ? valueCW : 0)
                    result[j] = sign ? result[j] &+ share : result[j] &- share
                    seeds[j] = children[j] ^ correction.masked(by: t)
                }
            }
            for j in 0..<m {
                let final = UInt64(
                    littleEndian: bytes.loadUnaligned(
                        fromByteOffset: layout.finalOffset + 8 * (j / e), as: UInt64.self))
                let share = DCF.convert(seeds[j]) &+ (seeds[j].controlBit == 1 ? final : 0)
                result[j] = (sign ? result[j] &+ share : result[j] &- share) & mask
            }
        }
        return result
    }
}
