import Foundation
import Protocols
import Ring

/// Delivers the server's masked weights Ŵ = W + R_W to the client before the online phase, once per model
/// (`Protocols/ServerWeights.swift` has the masks and why reuse is safe).
///
/// The server names the weights it serves by a tag — GMAC, under a key derived from the weight-mask seed, of every
/// weight word in model order — which the client cannot compute or test guesses against (it lacks the seed). A
/// client holding Ŵ under that tag (`MaskedWeightCache`) says so and nothing more crosses; otherwise the server
/// sends Ŵ_0, Ŵ_1, … (one message each, packed to the ring's width). Either way the online phase then sends no
/// weights.
public enum MaskedWeightSetup {
    /// Runs a model's code through a `WeightCollector` with the given visitor (`Job.collectServerWeights`).
    public typealias Collect = (_ visit: @escaping (UInt64, [UInt64]?, Int, Ring) throws -> Void) throws -> Void

    /// The server's side. Reads the weight-mask seed from the keys; with `registry`, binds the seed to these
    /// weights (`WeightMaskRegistry`) and refuses other weights under it. Returns whether Ŵ was sent.
    public static func serve(
        _ context: PartyContext, channel: Channel, collect: Collect, registry: WeightMaskRegistry?
    ) throws -> Bool {
        let seed = try context.beginPreparedWeights()
        let tag = try weightsTag(seed: seed, collect: collect)
        try registry?.bind(seedID: hmacSHA256(key: seed, data: Array("sigma weight-mask seed id 1".utf8)), to: tag)
        try channel.send(tag)
        let answer = try channel.receive()
        guard answer.count == 1, answer[0] <= 1 else { throw MaskedWeightError.protocolViolation }
        guard answer[0] == 0 else { return false }
        try collect { index, weights, count, ring in
            guard let weights, weights.count == count else { throw ProtocolError.missingInput("\(count) weights") }
            let masked = PartyContext.maskedWeights(weights, seed: seed, index: index, ring: ring)
            try channel.send(BitPacking.pack(masked, bits: ring.bitwidth))
        }
        return true
    }

    /// The client's side: takes Ŵ from `cache` when it holds the server's tag, else receives it (and stores it
    /// there). Returns whether Ŵ was received.
    public static func receive(
        _ context: PartyContext, channel: Channel, collect: Collect, cache: MaskedWeightCache?
    ) throws -> Bool {
        let tag = try channel.receive()
        guard tag.count == tagSize else { throw MaskedWeightError.protocolViolation }
        var shapes: [(count: Int, bits: Int)] = []
        try collect { _, _, count, ring in shapes.append((count, ring.bitwidth)) }
        if let cache, let stored = cache.open(tag: tag, shapes: shapes) {
            try channel.send([1])
            try context.usePreparedWeights(stored)
            return false
        }
        try channel.send([0])
        let tensors = try shapes.map { shape -> (count: Int, bits: Int, packed: [UInt8]) in
            let message = try channel.receive()
            let expected = BitPacking.byteCount(count: shape.count, bits: shape.bits)
            guard message.count == expected else {
                throw ProtocolError.malformedMessage(expected: expected, received: message.count)
            }
            return (shape.count, shape.bits, message)
        }
        try cache?.store(tensors, tag: tag)
        try context.usePreparedWeights(PackedMaskedWeights(tensors))
        return true
    }

    static let tagSize = 16

    /// GMAC of the ring width and every weight word, in model order, under HMAC(seed, label): a name for (seed, W)
    /// that reveals nothing about W to whoever lacks the seed.
    static func weightsTag(seed: [UInt8], collect: Collect) throws -> [UInt8] {
        var mac = KeyFileMAC(key: hmacSHA256(key: seed, data: Array("sigma masked weights 1".utf8))).begin(nonce: 0)
        try collect { _, weights, count, ring in
            guard let weights, weights.count == count else { throw ProtocolError.missingInput("\(count) weights") }
            withUnsafeBytes(of: UInt64(ring.bitwidth).littleEndian) { mac.add($0) }
            weights.withUnsafeBytes { mac.add($0) }
        }
        return mac.finish()
    }
}

/// Why masked weights could not be delivered or used.
public enum MaskedWeightError: Error, Equatable, CustomStringConvertible {
    case protocolViolation
    case shapeMismatch(expected: Int, found: Int)
    case exhausted
    case corruptCache(String)
    case seedBoundToOtherWeights(String)

    public var description: String {
        switch self {
        case .protocolViolation: "the peer broke the masked-weight delivery protocol"
        case .shapeMismatch(let expected, let found):
            "the masked weights hold a tensor of \(found) values where the model has \(expected)"
        case .exhausted: "the masked weights ended before the model's last weight tensor"
        case .corruptCache(let path): "\(path) is not a complete masked-weight cache file"
        case .seedBoundToOtherWeights(let path):
            "these keys' weight masks were already used for other weights (\(path)); serving these weights under "
                + "them would show the client the difference: generate keys under a new --weight-epoch"
        }
    }
}

/// Ŵ in memory, packed (the client's copy when it keeps no cache, or just received).
final class PackedMaskedWeights: MaskedWeightSource {
    private var tensors: [(count: Int, bits: Int, packed: [UInt8])]
    private var next = 0

    init(_ tensors: [(count: Int, bits: Int, packed: [UInt8])]) { self.tensors = tensors }

    func next(count: Int, bits: Int) throws -> [UInt64] {
        guard next < tensors.count else { throw MaskedWeightError.exhausted }
        let tensor = tensors[next]
        tensors[next].packed = []  // used once per inference: free as we go
        next += 1
        guard tensor.count == count, tensor.bits == bits,
            let values = BitPacking.unpack(tensor.packed[...], count: count, bits: bits)
        else { throw MaskedWeightError.shapeMismatch(expected: count, found: tensor.count) }
        return values
    }
}

/// The client's directory of masked weights, one file per tag (`<tag>.sigmaw`, owner-only): a magic line, then per
/// tensor its length, its bitwidth and its packed words. Files are written under a temporary name and renamed, so
/// a file that exists is complete; lengths are checked again as the model reads it.
public struct MaskedWeightCache: Sendable {
    public let directory: String
    static let magic = Array("SIGMAW01".utf8)
    /// Per tensor: its length (8 bytes, little-endian) and its bitwidth (1 byte), then the packed words.
    static let tensorHeaderSize = 9

    public init(directory: String) throws {
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        self.directory = directory
    }

    public func path(_ tag: [UInt8]) -> String { directory + "/" + hex(tag) + ".sigmaw" }

    /// The file for `tag` if it holds exactly these tensors (lengths and widths, checked by walking its headers);
    /// nil if it is absent, and a damaged file is removed so that the weights are fetched again.
    func open(tag: [UInt8], shapes: [(count: Int, bits: Int)]) -> MaskedWeightSource? {
        let path = path(tag)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let handle = FileHandle(forReadingAtPath: path), Self.holds(shapes, handle: handle) else {
            try? FileManager.default.removeItem(atPath: path)
            return nil
        }
        return CachedMaskedWeights(handle: handle, path: path)
    }

    /// Whether the file behind `handle` is the magic and then exactly `shapes`; leaves it positioned after the magic.
    static func holds(_ shapes: [(count: Int, bits: Int)], handle: FileHandle) -> Bool {
        guard (try? handle.read(upToCount: magic.count)).map({ Array($0) }) == magic else { return false }
        var offset = UInt64(magic.count)
        for shape in shapes {
            guard (try? handle.seek(toOffset: offset)) != nil,
                let header = (try? handle.read(upToCount: tensorHeaderSize)).map({ Array($0) }),
                header.count == tensorHeaderSize,
                readLittleEndian(header, at: 0, count: 8) == UInt64(shape.count), Int(header[8]) == shape.bits
            else { return false }
            offset += UInt64(tensorHeaderSize) + UInt64(BitPacking.byteCount(count: shape.count, bits: shape.bits))
        }
        guard (try? handle.seekToEnd()) == offset, (try? handle.seek(toOffset: UInt64(magic.count))) != nil else {
            return false
        }
        return true
    }

    func store(_ tensors: [(count: Int, bits: Int, packed: [UInt8])], tag: [UInt8]) throws {
        let target = path(tag)
        let temporary = target + ".partial-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: nil, attributes: [.posixPermissions: 0o600]),
            let handle = FileHandle(forWritingAtPath: temporary)
        else { throw MaskedWeightError.corruptCache(temporary) }
        defer { try? FileManager.default.removeItem(atPath: temporary) }
        try handle.write(contentsOf: Self.magic)
        for tensor in tensors {
            try handle.write(contentsOf: littleEndianBytes(UInt64(tensor.count), count: 8) + [UInt8(tensor.bits)])
            try handle.write(contentsOf: tensor.packed)
        }
        try handle.synchronize()
        try handle.close()
        guard rename(temporary, target) == 0 else { throw MaskedWeightError.corruptCache(target) }
    }
}

/// Reads a cache file tensor by tensor as the model asks for them.
final class CachedMaskedWeights: MaskedWeightSource {
    private let handle: FileHandle
    private let path: String

    init(handle: FileHandle, path: String) {
        self.handle = handle
        self.path = path
    }

    deinit { try? handle.close() }

    func next(count: Int, bits: Int) throws -> [UInt64] {
        let size = MaskedWeightCache.tensorHeaderSize
        guard let header = try handle.read(upToCount: size).map(Array.init), header.count == size else {
            throw MaskedWeightError.exhausted
        }
        let storedCount = Int(clamping: readLittleEndian(header, at: 0, count: 8))
        guard storedCount == count, Int(header[8]) == bits else {
            throw MaskedWeightError.shapeMismatch(expected: count, found: storedCount)
        }
        let length = BitPacking.byteCount(count: count, bits: bits)
        guard let packed = try handle.read(upToCount: length).map(Array.init), packed.count == length,
            let values = BitPacking.unpack(packed[...], count: count, bits: bits)
        else { throw MaskedWeightError.corruptCache(path) }
        return values
    }
}

/// The server's record of which weights each weight-mask seed has served (one line per seed: its id and the weights'
/// tag, both hex; owner-only), so that one seed never masks two different sets of weights.
public struct WeightMaskRegistry: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// Records that the seed `seedID` serves the weights `tag`; throws if it already served others.
    public func bind(seedID: [UInt8], to tag: [UInt8]) throws {
        let id = hex(seedID)
        let existing = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        for line in existing.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count == 2, fields[0] == id else { continue }
            guard fields[1] == hex(tag) else { throw MaskedWeightError.seedBoundToOtherWeights(path) }
            return
        }
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
            else { throw MaskedWeightError.corruptCache(path) }
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw MaskedWeightError.corruptCache(path) }
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Array("\(id) \(hex(tag))\n".utf8))
    }
}
