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
public final class KeyStreamWriter {
    let sink: KeySink
    public private(set) var bytesWritten = 0

    public init(sink: KeySink) { self.sink = sink }

    func emit(_ bytes: [UInt8]) throws {
        try sink.write(bytes)
        bytesWritten += bytes.count
    }

    /// Marks the start of a gate's keys.
    public func beginGate(_ tag: GateTag, count: Int) throws {
        var bytes = tag.bytes
        bytes += (0..<8).map { UInt8(truncatingIfNeeded: UInt64(count) >> UInt64(8 * $0)) }
        try emit(bytes)
    }

    /// Ring words, packed to `bits` bits each.
    public func words(_ values: [UInt64], bits: Int) throws { try emit(BitPacking.pack(values, bits: bits)) }

    /// Bits, packed eight to a byte.
    public func bits(_ values: [UInt8]) throws { try emit(BitPacking.pack(values.map { UInt64($0) }, bits: 1)) }

    /// A batch of DPF keys in their encoding.
    public func dpf(_ keys: DPFKeys) throws { try emit(keys.encoded) }

    /// A seed for `SecureRandom(expanding:)`.
    public func seed(_ seed: [UInt8]) throws { try emit(seed) }
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
        let foundCount = (0..<8).reduce(UInt64(0)) { $0 | UInt64(marker[4 + $1]) << UInt64(8 * $1) }
        guard foundTag == tag, foundCount == UInt64(count) else {
            throw .outOfStep(expected: "\(tag) of \(count)", found: "\(foundTag) of \(foundCount)")
        }
    }

    public func words(_ count: Int, bits: Int) throws(KeyStreamError) -> [UInt64] {
        let bytes = try take(BitPacking.byteCount(count: count, bits: bits))
        guard let values = BitPacking.unpack(bytes, count: count, bits: bits) else {
            throw .exhausted(needed: count, available: 0)
        }
        return values
    }

    /// For each element i, the candidate choices[i] of `candidates` values written element-major by
    /// `KeyStreamWriter.words`: only the chosen values are unpacked.
    public func chosenWords(candidates: Int, bits: Int, choices: [UInt8]) throws(KeyStreamError) -> [UInt64] {
        let bytes = try take(BitPacking.byteCount(count: choices.count * candidates, bits: bits))
        guard let values = BitPacking.select(bytes, candidates: candidates, bits: bits, choices: choices) else {
            preconditionFailure("a choice past the \(candidates) candidates")
        }
        return values
    }

    /// A seed written by `KeyStreamWriter.seed`.
    public func seed() throws(KeyStreamError) -> [UInt8] { Array(try take(16)) }

    public func bits(_ count: Int) throws(KeyStreamError) -> [UInt8] {
        try words(count, bits: 1).map { UInt8($0) }
    }

    /// A DPF key batch, viewed in place.
    public func dpf() throws(KeyStreamError) -> DPFKeys {
        try ensureVerified(through: min(base.count, offset + DPFKeys.encodedHeaderSize))
        let header = UnsafeRawBufferPointer(rebasing: base[offset...])
        let size: Int
        do { size = try DPFKeys.encodedSize(of: header) } catch { throw .badKey(error) }
        let bytes = try take(size)
        do { return try DPFKeys(viewing: bytes, owner: owner) } catch { throw .badKey(error) }
    }
}
