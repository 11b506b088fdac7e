import FSS
import Ring

/// Why a party's key stream could not supply what a gate needed.
public enum KeyStreamError: Error, Equatable, CustomStringConvertible {
    /// The stream ended early: a truncated key file, or keys for a smaller computation.
    case exhausted(needed: Int, available: Int)
    /// The dealer wrote another gate here: the keys belong to another model or were generated differently.
    case outOfStep(expected: String, found: String)
    case badKey(KeyDecodingError)
    /// The key material failed its integrity check (a key file's section MAC): tampered with or damaged.
    case integrity(String)

    public var description: String {
        switch self {
        case .exhausted(let needed, let available):
            "the key stream ended: a gate needs \(needed) more bytes, \(available) remain"
        case .outOfStep(let expected, let found):
            "the key stream is out of step with the computation: expected \(expected), found \(found)"
        case .badKey(let error): "a key in the stream is malformed: \(error)"
        case .integrity(let why): why
        }
    }
}

/// Where a dealer's key stream for one party goes: memory (tests, `sigma run`) or a file.
public protocol KeySink: AnyObject {
    func write(_ bytes: [UInt8]) throws
}

/// Key material in memory.
public final class MemoryKeySink: KeySink {
    public private(set) var bytes: [UInt8] = []
    public init() {}
    public func write(_ bytes: [UInt8]) { self.bytes += bytes }
}

/// The dealer's writer of one party's keys, in exactly the order the party consumes them.
///
/// Every gate starts with a 12-byte marker (a 4-byte gate tag and the element count), so that a party whose
/// computation differs from the dealer's stops with a clear error instead of computing garbage.
///
/// A gate may be *seeded* for this party (the top bit of the marker's last byte, then a 16-byte seed): every
/// uniformly random value the party gets in that gate — its share of each additively shared value, its input
/// masks — is then expanded from the seed instead of written (`uniformWords`, `uniformBits`). That is the issue's
/// "a party's share of dealer randomness derived from a short seed"; the dealer seeds each gate for the party with
/// more key bytes so far, so both parties' keys shrink alike.
public final class KeyStreamWriter {
    let sink: KeySink
    public private(set) var bytesWritten = 0
    private var gateRandom: GateRandom?

    public init(sink: KeySink) { self.sink = sink }

    func emit(_ bytes: [UInt8]) throws {
        try sink.write(bytes)
        bytesWritten += bytes.count
    }

    /// Marks the start of a gate's keys; with `seed`, the gate is seeded for this party.
    public func beginGate(_ tag: GateTag, count: Int, seed: [UInt8]? = nil) throws {
        precondition(count < 1 << 56 && (seed?.count ?? 16) == 16)
        var bytes = tag.bytes
        bytes += (0..<8).map { UInt8(truncatingIfNeeded: UInt64(count) >> UInt64(8 * $0)) }
        gateRandom = seed.map(GateRandom.init)
        if let seed {
            bytes[11] |= GateTag.seededFlag
            bytes += seed
        }
        try emit(bytes)
    }

    /// Whether the current gate's uniform values for this party come from its seed.
    var isSeeded: Bool { gateRandom != nil }

    /// Ring words, packed to `bits` bits each. Not in a seeded gate: there, uniform values are `uniformWords`.
    public func words(_ values: [UInt64], bits: Int) throws {
        precondition(gateRandom == nil, "a seeded gate's words are uniformWords")
        try emit(BitPacking.pack(values, bits: bits))
    }

    /// Bits, packed eight to a byte (not in a seeded gate).
    public func bits(_ values: [UInt8]) throws {
        precondition(gateRandom == nil, "a seeded gate's bits are uniformBits")
        try emit(BitPacking.packBits(values))
    }

    /// `count` uniform values below 2^`bits` for this party: expanded from the gate's seed (nothing is written), or
    /// drawn from `random` and written.
    func uniformWords(_ count: Int, bits: Int, random: inout SecureRandom) throws -> [UInt64] {
        if let gateRandom { return gateRandom.random.values(count, bits: bits) }
        let values = random.values(count, bits: bits)
        try emit(BitPacking.pack(values, bits: bits))
        return values
    }

    /// `count` uniform bits for this party, as `uniformWords`.
    func uniformBits(_ count: Int, random: inout SecureRandom) throws -> [UInt8] {
        if let gateRandom { return gateRandom.random.bits(count) }
        let values = random.bits(count)
        try emit(BitPacking.packBits(values))
        return values
    }

    /// A batch of DPF keys in their encoding.
    public func dpf(_ keys: DPFKeys) throws { try emit(keys.encoded) }

    /// A batch of DCF keys in their encoding.
    public func dcf(_ keys: DCFKeys) throws { try emit(keys.encoded) }

    /// A seed for `SecureRandom(expanding:)`.
    public func seed(_ seed: [UInt8]) throws { try emit(seed) }
}

/// A seeded gate's source of one party's uniform values (a class: `SecureRandom` is not copyable).
final class GateRandom {
    var random: SecureRandom
    init(_ seed: [UInt8]) { random = SecureRandom(expanding: seed) }
}

/// A four-character gate tag.
public struct GateTag: Equatable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]
    public init(_ name: StaticString) {
        precondition(name.utf8CodeUnitCount == 4, "gate tags have four characters")
        bytes = Array(UnsafeBufferPointer(start: name.utf8Start, count: 4))
    }
    init(bytes: [UInt8]) { self.bytes = bytes }
    public var description: String { String(decoding: bytes, as: UTF8.self) }
    /// In a gate marker's last byte: the gate is seeded for the party reading it.
    static let seededFlag: UInt8 = 0x80
}

/// Owns a copy of some bytes for views into it.
final class ByteOwner: @unchecked Sendable {  // immutable after init
    let bytes: UnsafeMutableRawBufferPointer
    init(_ array: [UInt8]) {
        bytes = .allocate(byteCount: max(array.count, 1), alignment: 64)
        array.withUnsafeBytes { bytes.copyMemory(from: $0) }
    }
    deinit { bytes.deallocate() }
}

/// Approves key bytes before a gate uses them: a key file checks each section's MAC as the reader reaches it.
public protocol KeyStreamVerifier: AnyObject, Sendable {
    /// Blocks until the bytes before `end` have passed their check, and returns how far checking has reached
    /// (at least `end`); throws if a section before `end` failed. `end` also tells how far the reader has come.
    func verified(through end: Int) throws(KeyStreamError) -> Int
    /// The reader starts a gate at `offset`: no gate uses bytes before it any more.
    func gateStarted(at offset: Int)
}

extension KeyStreamVerifier {
    public func gateStarted(at offset: Int) {}
}

/// A party's reader of its key stream: reads once, sequentially, from memory it does not copy (a mapped key
/// file, or an array for tests). With a verifier, no byte reaches a gate before it passed its integrity check.
public final class KeyStreamReader: @unchecked Sendable {  // used by one thread: the party's protocol thread
    private let base: UnsafeRawBufferPointer
    private let owner: AnyObject & Sendable
    private let verifier: KeyStreamVerifier?
    private var verifiedEnd: Int
    public private(set) var offset = 0
    /// The current gate's seed-expanded uniform values, when the gate is seeded for this party.
    private var gateRandom: GateRandom?

    /// Reads `bytes`, which `owner` keeps alive; `verifier`, if given, approves every byte before it is used.
    public init(bytes: UnsafeRawBufferPointer, owner: AnyObject & Sendable, verifier: KeyStreamVerifier? = nil) {
        base = bytes
        self.owner = owner
        self.verifier = verifier
        verifiedEnd = verifier == nil ? Int.max : 0
    }

    /// Reads a copy of `bytes`.
    public convenience init(copying bytes: [UInt8]) {
        let owner = ByteOwner(bytes)
        self.init(bytes: UnsafeRawBufferPointer(rebasing: owner.bytes[0..<bytes.count]), owner: owner)
    }

    public var remaining: Int { base.count - offset }

    private func ensureVerified(through end: Int) throws(KeyStreamError) {
        if end > verifiedEnd, let verifier { verifiedEnd = try verifier.verified(through: end) }
    }

    private func take(_ count: Int) throws(KeyStreamError) -> UnsafeRawBufferPointer {
        guard count <= remaining else { throw .exhausted(needed: count, available: remaining) }
        try ensureVerified(through: offset + count)
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: base[offset..<(offset + count)])
    }

    /// Checks the marker of the next gate.
    public func expectGate(_ tag: GateTag, count: Int) throws(KeyStreamError) {
        verifier?.gateStarted(at: offset)
        let marker = try take(12)
        let foundTag = GateTag(bytes: Array(marker[0..<4]))
        let seeded = marker[11] & GateTag.seededFlag != 0
        let foundCount =
            (0..<8).reduce(UInt64(0)) { $0 | UInt64(marker[4 + $1]) << UInt64(8 * $1) } & ((1 << 63) - 1)
        guard foundTag == tag, foundCount == UInt64(count) else {
            throw .outOfStep(expected: "\(tag) of \(count)", found: "\(foundTag) of \(foundCount)")
        }
        gateRandom = seeded ? GateRandom(Array(try take(16))) : nil
    }

    public func words(_ count: Int, bits: Int) throws(KeyStreamError) -> [UInt64] {
        if let gateRandom { return gateRandom.random.values(count, bits: bits) }
        let bytes = try take(BitPacking.byteCount(count: count, bits: bits))
        guard let values = BitPacking.unpack(bytes, count: count, bits: bits) else {
            throw .exhausted(needed: count, available: 0)
        }
        return values
    }

    /// For each element i, the candidate choices[i] of `candidates` values written element-major by
    /// `KeyStreamWriter.words`: only the chosen values are unpacked.
    public func chosenWords(candidates: Int, bits: Int, choices: [UInt8]) throws(KeyStreamError) -> [UInt64] {
        if let gateRandom {
            let all = gateRandom.random.values(choices.count * candidates, bits: bits)
            return choices.enumerated().map { i, choice in
                precondition(Int(choice) < candidates, "a choice past the \(candidates) candidates")
                return all[i * candidates + Int(choice)]
            }
        }
        let bytes = try take(BitPacking.byteCount(count: choices.count * candidates, bits: bits))
        guard let values = BitPacking.select(bytes, candidates: candidates, bits: bits, choices: choices) else {
            preconditionFailure("a choice past the \(candidates) candidates")
        }
        return values
    }

    /// A seed written by `KeyStreamWriter.seed`.
    public func seed() throws(KeyStreamError) -> [UInt8] { Array(try take(16)) }

    public func bits(_ count: Int) throws(KeyStreamError) -> [UInt8] {
        if let gateRandom { return gateRandom.random.bits(count) }
        guard let bits = BitPacking.unpackBits(try take((count + 7) / 8), count: count) else {
            throw .exhausted(needed: count, available: 0)
        }
        return bits
    }

    /// A DCF key batch (copied: DCFs serve small tensors only).
    public func dcf() throws(KeyStreamError) -> DCFKeys {
        try keyBatch(headerSize: DCFKeys.encodedHeaderSize, size: DCFKeys.encodedSize) {
            (bytes) throws(KeyDecodingError) in try DCFKeys(decoding: Array(bytes))
        }
    }

    /// A DPF key batch, viewed in place.
    public func dpf() throws(KeyStreamError) -> DPFKeys {
        try keyBatch(headerSize: DPFKeys.encodedHeaderSize, size: DPFKeys.encodedSize) {
            (bytes) throws(KeyDecodingError) in try DPFKeys(viewing: bytes, owner: owner)
        }
    }

    /// A key batch whose size its header tells: the header verified first, then the whole batch taken.
    private func keyBatch<Keys>(
        headerSize: Int, size: (UnsafeRawBufferPointer) throws(KeyDecodingError) -> Int,
        decode: (UnsafeRawBufferPointer) throws(KeyDecodingError) -> Keys
    ) throws(KeyStreamError) -> Keys {
        try ensureVerified(through: min(base.count, offset + headerSize))
        let header = UnsafeRawBufferPointer(rebasing: base[offset...])
        let count: Int
        do { count = try size(header) } catch { throw .badKey(error) }
        let bytes = try take(count)
        do { return try decode(bytes) } catch { throw .badKey(error) }
    }
}
