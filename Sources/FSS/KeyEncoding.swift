/// Which of the two evaluating parties a key belongs to.
public enum Party: UInt8, Sendable, CaseIterable {
    /// P0, the server (holds the weights).
    case p0 = 0
    /// P1, the client (holds the input; alone learns the output).
    case p1 = 1

    /// 0 for P0, 1 for P1, for formulas such as (−1)^b.
    @inlinable
    public var index: Int { Int(rawValue) }
}

/// Why a key encoding was refused.
public enum KeyDecodingError: Error, Equatable, CustomStringConvertible {
    case truncated(needed: Int, available: Int)
    case badMagic
    case unsupportedVersion(UInt8)
    case wrongKind(expected: UInt8, found: UInt8)
    case badParty(UInt8)
    case badParameter(String)
    case trailingBytes(Int)
    case checksumMismatch

    public var description: String {
        switch self {
        case .truncated(let needed, let available):
            "FSS key encoding is truncated: needs \(needed) bytes, has \(available)"
        case .badMagic: "not an FSS key encoding (bad magic)"
        case .unsupportedVersion(let v): "FSS key encoding version \(v) is not supported (this build reads version 2)"
        case .wrongKind(let expected, let found): "FSS key encoding holds kind \(found), expected \(expected)"
        case .badParty(let p): "FSS key encoding names party \(p); only 0 and 1 exist"
        case .badParameter(let what): "FSS key encoding has an invalid parameter: \(what)"
        case .trailingBytes(let n): "FSS key encoding has \(n) unexpected bytes after its last section"
        case .checksumMismatch: "FSS key encoding is corrupted (checksum mismatch)"
        }
    }
}

/// The common header of every encoded key batch (32 bytes, little-endian):
///
///     0  "SGFK"        4  version (1)   5  kind (1 DPF, 2 DCF)   6  party   7  input bits
///     8  payload bits  9...15 zero      16 key count (UInt64)    24 checksum of the body (UInt64)
///
/// The body follows: the key's sections, structure-of-arrays (one array per field, all keys' values together).
enum KeyHeader {
    static let size = 32
    static let magic: [UInt8] = Array("SGFK".utf8)
    /// 2: DPF batches store one root seed per party instead of one per key.
    static let version: UInt8 = 2

    static func write(
        kind: UInt8, party: Party, inputBits: Int, payloadBits: Int, count: Int, into bytes: inout [UInt8]
    ) {
        bytes.replaceSubrange(0..<4, with: magic)
        bytes[4] = version
        bytes[5] = kind
        bytes[6] = party.rawValue
        bytes[7] = UInt8(inputBits)
        bytes[8] = UInt8(payloadBits)
        storeLE(UInt64(count), at: 16, in: &bytes)
    }

    static func seal(_ bytes: inout [UInt8]) {
        let sum = bytes.withUnsafeBytes { checksum(UnsafeRawBufferPointer(rebasing: $0[size...])) }
        storeLE(sum, at: 24, in: &bytes)
    }

    struct Fields {
        var party: Party
        var inputBits: Int
        var payloadBits: Int
        var count: Int
    }

    /// Checks magic, version, kind and party; the caller checks the parameters and the exact body size.
    static func read(_ bytes: UnsafeRawBufferPointer, kind: UInt8) throws(KeyDecodingError) -> Fields {
        guard bytes.count >= size else { throw .truncated(needed: size, available: bytes.count) }
        guard Array(bytes[0..<4]) == magic else { throw .badMagic }
        guard bytes[4] == version else { throw .unsupportedVersion(bytes[4]) }
        guard bytes[5] == kind else { throw .wrongKind(expected: kind, found: bytes[5]) }
        guard let party = Party(rawValue: bytes[6]) else { throw .badParty(bytes[6]) }
        guard bytes[9..<16].allSatisfy({ $0 == 0 }) else { throw .badParameter("reserved header bytes are not zero") }
        let count = bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self).littleEndian
        guard count <= UInt64(Int.max / 1024) else { throw .badParameter("key count \(count)") }
        return Fields(party: party, inputBits: Int(bytes[7]), payloadBits: Int(bytes[8]), count: Int(count))
    }

    /// Checks the total size (computed by the caller from the header's parameters) and then the checksum.
    static func verify(_ bytes: UnsafeRawBufferPointer, bodySize: Int) throws(KeyDecodingError) {
        let needed = size + bodySize
        guard bytes.count >= needed else { throw .truncated(needed: needed, available: bytes.count) }
        guard bytes.count == needed else { throw .trailingBytes(bytes.count - needed) }
        let stored = bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self).littleEndian
        guard checksum(UnsafeRawBufferPointer(rebasing: bytes[size...])) == stored else { throw .checksumMismatch }
    }

    /// A fast 64-bit hash (multiply-xorshift over 8-byte words, four independent lanes so the multiplies overlap)
    /// that catches accidental corruption such as a flipped byte or a bad copy. Not a MAC: tampering by an
    /// adversary is the key files' concern.
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        let k: UInt64 = 0x9E37_79B9_7F4A_7C15
        var lanes: (UInt64, UInt64, UInt64, UInt64) = (
            0x243F_6A88_85A3_08D3 ^ UInt64(bytes.count), 0x1319_8A2E_0370_7344, 0xA409_3822_299F_31D0,
            0x082E_FA98_EC4E_6C89
        )
        var offset = 0
        while offset + 32 <= bytes.count {
            lanes.0 = (lanes.0 ^ bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* k
            lanes.1 = (lanes.1 ^ bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)) &* k
            lanes.2 = (lanes.2 ^ bytes.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self)) &* k
            lanes.3 = (lanes.3 ^ bytes.loadUnaligned(fromByteOffset: offset + 24, as: UInt64.self)) &* k
            lanes.0 ^= lanes.0 >> 29
            lanes.1 ^= lanes.1 >> 29
            lanes.2 ^= lanes.2 >> 29
            lanes.3 ^= lanes.3 >> 29
            offset += 32
        }
        var h =
            lanes.0 ^ (lanes.1 << 16 | lanes.1 >> 48) ^ (lanes.2 << 32 | lanes.2 >> 32)
            ^ (lanes.3 << 48 | lanes.3 >> 16)
        while offset + 8 <= bytes.count {
            h = (h ^ bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* k
            h ^= h >> 29
            offset += 8
        }
        var tail: UInt64 = 0
        for i in offset..<bytes.count { tail |= UInt64(bytes[i]) << UInt64(8 * (i - offset)) }
        h = (h ^ tail) &* 0xBF58_476D_1CE4_E5B9
        return h ^ (h >> 31)
    }

    static func storeLE(_ value: UInt64, at offset: Int, in bytes: inout [UInt8]) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> UInt64(8 * i)) }
    }
}

/// Sizes with overflow checks, for lengths computed from untrusted headers.
func checkedSize(_ factors: Int...) throws(KeyDecodingError) -> Int {
    var result = 1
    for f in factors {
        let (product, overflow) = result.multipliedReportingOverflow(by: f)
        guard !overflow else { throw .badParameter("section size overflows") }
        result = product
    }
    return result
}

/// `withUnsafeBytes` for decoders: it is not typed-throws, so the error travels back as a `Result`.
func withDecodedBytes<T>(
    _ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(KeyDecodingError) -> T
) throws(KeyDecodingError) -> T {
    let result = bytes.withUnsafeBytes { raw in Result { () throws(KeyDecodingError) -> T in try body(raw) } }
    return try result.get()
}

/// Where a key batch's bytes live: an array it owns, or memory (a mapped key file) that an owner keeps alive.
enum KeyBytes: Sendable {
    case owned([UInt8])
    case viewed(UnsafeSendable<UnsafeRawBufferPointer>, owner: AnyObject & Sendable)

    func withUnsafeBytes<T>(_ body: (UnsafeRawBufferPointer) -> T) -> T {
        switch self {
        case .owned(let array): array.withUnsafeBytes(body)
        case .viewed(let bytes, let owner): withExtendedLifetime(owner) { body(bytes.value) }
        }
    }

    var array: [UInt8] {
        switch self {
        case .owned(let array): array
        case .viewed: withUnsafeBytes { Array($0) }
        }
    }
}
