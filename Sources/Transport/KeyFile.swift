import FSS
import Foundation
import Protocols

#if canImport(Glibc)
    import Glibc
#endif

/// Why a key file was refused.
public enum KeyFileError: Error, Equatable, CustomStringConvertible {
    case cannotOpen(path: String, errno: Int32)
    case notAKeyFile(String)
    case unsupportedVersion(UInt16)
    case wrongParty(expected: Party, found: Party)
    case incomplete(String)
    case alreadyConsumed(String)
    case truncated(expected: Int, actual: Int)
    case corrupted(section: Int)
    case ioFailed(call: String, errno: Int32)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let errno): "cannot open key file \(path) (errno \(errno))"
        case .notAKeyFile(let path): "\(path) is not a Sigma key file"
        case .unsupportedVersion(let v): "key file format version \(v) is not supported (this build reads 1)"
        case .wrongParty(let expected, let found):
            "this key file belongs to \(found == .p0 ? "the server" : "the client"), not \(expected == .p0 ? "the server" : "the client")"
        case .incomplete(let path): "\(path) is incomplete: the dealer did not finish writing it"
        case .alreadyConsumed(let path): "\(path) was already used by an inference; keys are single-use"
        case .truncated(let expected, let actual): "key file is truncated: \(actual) bytes, expected \(expected)"
        case .corrupted(let section): "key file section \(section) is corrupted (checksum mismatch)"
        case .ioFailed(let call, let errno): "\(call) failed on a key file (errno \(errno))"
        }
    }
}

/// What a key file says about itself: which party, which dealer session, which model.
public struct KeyFileHeader: Equatable, Sendable {
    public var party: Party
    public var sessionID: [UInt8]
    public var modelFingerprint: [UInt8]
    /// Free-form parameters of the computation (for example the model name and bitwidth).
    public var parameters: [UInt8]

    public init(party: Party, sessionID: [UInt8], modelFingerprint: [UInt8], parameters: [UInt8] = []) {
        precondition(sessionID.count == 16 && modelFingerprint.count == 32 && parameters.count <= 3000)
        self.party = party
        self.sessionID = sessionID
        self.modelFingerprint = modelFingerprint
        self.parameters = parameters
    }
}

/// The key file layout (little-endian):
///
///     0     "SIGMAKEY"   8  version (u16)   10 party (u8)   11 state (u8: 0 being written, 1 complete, 2 consumed)
///     12    section size (u32)   16 session id (16 B)   32 model fingerprint (32 B)
///     64    payload length (u64)   72 section count (u64)   80 parameters length (u16)   82 parameters
///     4096  payload: the party's key stream, in the order it is consumed
///     then  one u64 checksum per section of the payload
///
/// The payload starts on a page boundary so the mapping hands kernels aligned data.
enum KeyFileLayout {
    static let magic: [UInt8] = Array("SIGMAKEY".utf8)
    static let version: UInt16 = 1
    static let payloadOffset = 4096
    static let stateOffset = 11
    static let sectionSize = 64 << 20

    enum State: UInt8 {
        case beingWritten = 0
        case complete = 1
        case consumed = 2
    }
}

/// The dealer's writer of one party's key file: a `KeySink` that streams to disk with large writes.
public final class KeyFileWriter: KeySink {
    private let fd: Int32
    private let header: KeyFileHeader
    private var buffer: [UInt8] = []
    private var payloadLength = 0
    private var checksums: [UInt64] = []
    private var sectionHash = SectionHash()
    public let path: String

    /// Creates (or replaces) `path` with owner-only permissions.
    public init(path: String, header: KeyFileHeader) throws {
        self.path = path
        self.header = header
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw KeyFileError.cannotOpen(path: path, errno: errno) }
        try writeHeader(state: .beingWritten)
        buffer.reserveCapacity(8 << 20)
    }

    deinit { close(fd) }

    public func write(_ bytes: [UInt8]) throws {
        var rest = bytes[...]
        while !rest.isEmpty {
            let room = KeyFileLayout.sectionSize - sectionHash.count
            let piece = rest.prefix(room)
            piece.withUnsafeBytes { sectionHash.add($0) }
            buffer += piece
            payloadLength += piece.count
            rest = rest.dropFirst(piece.count)
            if sectionHash.count == KeyFileLayout.sectionSize {
                checksums.append(sectionHash.finish())
                sectionHash = SectionHash()
            }
            if buffer.count >= 8 << 20 { try flush() }
        }
    }

    /// Writes the checksums, marks the file complete and syncs it: only then may a party use it.
    public func finish() throws {
        if sectionHash.count > 0 { checksums.append(sectionHash.finish()) }
        try flush()
        var table: [UInt8] = []
        for sum in checksums { table += littleEndianBytes(sum, count: 8) }
        try writeAll(table, at: KeyFileLayout.payloadOffset + payloadLength)
        try writeHeader(state: .complete)
        guard fsync(fd) == 0 else { throw KeyFileError.ioFailed(call: "fsync", errno: errno) }
    }

    private func flush() throws {
        try writeAll(buffer, at: KeyFileLayout.payloadOffset + payloadLength - buffer.count)
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeHeader(state: KeyFileLayout.State) throws {
        var bytes = [UInt8](repeating: 0, count: KeyFileLayout.payloadOffset)
        bytes.replaceSubrange(0..<8, with: KeyFileLayout.magic)
        bytes.replaceSubrange(8..<10, with: littleEndianBytes(UInt64(KeyFileLayout.version), count: 2))
        bytes[10] = header.party.rawValue
        bytes[KeyFileLayout.stateOffset] = state.rawValue
        bytes.replaceSubrange(12..<16, with: littleEndianBytes(UInt64(KeyFileLayout.sectionSize), count: 4))
        bytes.replaceSubrange(16..<32, with: header.sessionID)
        bytes.replaceSubrange(32..<64, with: header.modelFingerprint)
        bytes.replaceSubrange(64..<72, with: littleEndianBytes(UInt64(payloadLength), count: 8))
        bytes.replaceSubrange(72..<80, with: littleEndianBytes(UInt64(checksums.count), count: 8))
        bytes.replaceSubrange(80..<82, with: littleEndianBytes(UInt64(header.parameters.count), count: 2))
        bytes.replaceSubrange(82..<(82 + header.parameters.count), with: header.parameters)
        try writeAll(bytes, at: 0)
    }

    private func writeAll(_ bytes: [UInt8], at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let written = bytes.withUnsafeBytes {
                pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(offset + done))
            }
            if written < 0 {
                if errno == EINTR { continue }
                throw KeyFileError.ioFailed(call: "pwrite", errno: errno)
            }
            done += written
        }
    }
}

/// A party's key file, mapped read-only; `reader` hands the payload to the protocols in order.
public final class KeyFile: @unchecked Sendable {  // the mapping is immutable once opened
    public let header: KeyFileHeader
    public let path: String
    private let mapping: UnsafeRawBufferPointer
    private let payloadLength: Int

    /// Opens `path` for `party`: checks magic, version, party, completeness, size and section checksums, then
    /// marks the file consumed (keys are single-use) and maps it. Never traps on a malformed file.
    public init(path: String, party: Party, markConsumed: Bool = true) throws {
        self.path = path
        let fd = open(path, markConsumed ? O_RDWR : O_RDONLY)
        guard fd >= 0 else { throw KeyFileError.cannotOpen(path: path, errno: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw KeyFileError.ioFailed(call: "fstat", errno: errno) }
        let size = Int(info.st_size)
        guard size >= KeyFileLayout.payloadOffset else { throw KeyFileError.notAKeyFile(path) }
        var head = [UInt8](repeating: 0, count: KeyFileLayout.payloadOffset)
        guard head.withUnsafeMutableBytes({ pread(fd, $0.baseAddress!, $0.count, 0) }) == head.count else {
            throw KeyFileError.notAKeyFile(path)
        }
        guard Array(head[0..<8]) == KeyFileLayout.magic else { throw KeyFileError.notAKeyFile(path) }
        let version = UInt16(readLittleEndian(head, at: 8, count: 2))
        guard version == KeyFileLayout.version else { throw KeyFileError.unsupportedVersion(version) }
        guard let owner = Party(rawValue: head[10]) else { throw KeyFileError.notAKeyFile(path) }
        guard owner == party else { throw KeyFileError.wrongParty(expected: party, found: owner) }
        switch KeyFileLayout.State(rawValue: head[KeyFileLayout.stateOffset]) {
        case .complete: break
        case .consumed: throw KeyFileError.alreadyConsumed(path)
        case .beingWritten, nil: throw KeyFileError.incomplete(path)
        }
        let sectionSize = Int(readLittleEndian(head, at: 12, count: 4))
        let payloadLength = Int(clamping: readLittleEndian(head, at: 64, count: 8))
        let sections = Int(clamping: readLittleEndian(head, at: 72, count: 8))
        let parametersLength = Int(readLittleEndian(head, at: 80, count: 2))
        guard sectionSize > 0, parametersLength <= 3000,
            sections == (payloadLength + sectionSize - 1) / sectionSize,
            payloadLength <= Int.max / 2, sections <= Int.max / 16
        else { throw KeyFileError.notAKeyFile(path) }
        let expected = KeyFileLayout.payloadOffset + payloadLength + 8 * sections
        guard size == expected else { throw KeyFileError.truncated(expected: expected, actual: size) }
        header = KeyFileHeader(
            party: owner, sessionID: Array(head[16..<32]), modelFingerprint: Array(head[32..<64]),
            parameters: Array(head[82..<(82 + parametersLength)]))
        self.payloadLength = payloadLength

        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw KeyFileError.ioFailed(call: "mmap", errno: errno)
        }
        madvise(base, size, MADV_SEQUENTIAL)
        mapping = UnsafeRawBufferPointer(start: base, count: size)
        let payload = UnsafeRawBufferPointer(rebasing: mapping[KeyFileLayout.payloadOffset...])
        for section in 0..<sections {
            let start = section * sectionSize
            let piece = UnsafeRawBufferPointer(rebasing: payload[start..<min(start + sectionSize, payloadLength)])
            var hash = SectionHash()
            hash.add(piece)
            let stored = mapping.loadUnaligned(
                fromByteOffset: KeyFileLayout.payloadOffset + payloadLength + 8 * section, as: UInt64.self)
            guard hash.finish() == UInt64(littleEndian: stored) else {
                munmap(base, size)
                throw KeyFileError.corrupted(section: section)
            }
        }
        if markConsumed {
            var consumed = KeyFileLayout.State.consumed.rawValue
            guard pwrite(fd, &consumed, 1, off_t(KeyFileLayout.stateOffset)) == 1, fsync(fd) == 0 else {
                munmap(base, size)
                throw KeyFileError.ioFailed(call: "pwrite", errno: errno)
            }
        }
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: mapping.baseAddress), mapping.count) }

    /// The payload as a key stream, read in place.
    public func reader() -> KeyStreamReader {
        KeyStreamReader(
            bytes: UnsafeRawBufferPointer(
                rebasing: mapping[KeyFileLayout.payloadOffset..<(KeyFileLayout.payloadOffset + payloadLength)]),
            owner: self)
    }

    public var payloadBytes: Int { payloadLength }
}

/// The checksum of one key-file section (multiply-xorshift over 8-byte words): catches corruption and truncation
/// within a section. Not a MAC; authenticated key files are issue 7.
struct SectionHash {
    private var state: UInt64 = 0x243F_6A88_85A3_08D3
    private var pending: [UInt8] = []
    private(set) var count = 0

    /// Byte by byte: for the few bytes around a word boundary.
    private mutating func addSlowly<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        count += bytes.count
        for byte in bytes {
            pending.append(byte)
            if pending.count == 8 {
                let word = pending.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                state = (state ^ word) &* 0x9E37_79B9_7F4A_7C15
                state ^= state >> 29
                pending.removeAll(keepingCapacity: true)
            }
        }
    }

    mutating func add(_ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        if !pending.isEmpty {
            offset = min(8 - pending.count, bytes.count)
            addSlowly(bytes[0..<offset])
            if !pending.isEmpty { return }
        }
        let start = offset
        while offset + 8 <= bytes.count {
            state = (state ^ bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* 0x9E37_79B9_7F4A_7C15
            state ^= state >> 29
            offset += 8
        }
        count += offset - start
        addSlowly(bytes[offset...])
    }

    func finish() -> UInt64 {
        var tail: UInt64 = 0
        for (i, byte) in pending.enumerated() { tail |= UInt64(byte) << UInt64(8 * i) }
        let h = (state ^ tail ^ UInt64(count)) &* 0xBF58_476D_1CE4_E5B9
        return h ^ (h >> 31)
    }
}

func littleEndianBytes(_ value: UInt64, count: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: value >> UInt64(8 * $0)) }
}

func readLittleEndian(_ bytes: [UInt8], at offset: Int, count: Int) -> UInt64 {
    (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << UInt64(8 * $1) }
}
