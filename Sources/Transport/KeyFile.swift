import CSigmaCrypto
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
    /// The header's MAC does not match: altered, or written under another deployment's credentials.
    case headerCorrupted(String)
    case corrupted(section: Int)
    /// The file is authenticated by the deployment's credentials, and none were given (or the other way round).
    case credentialsMismatch(String)
    case ioFailed(call: String, errno: Int32)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let errno): "cannot open key file \(path) (errno \(errno))"
        case .notAKeyFile(let path): "\(path) is not a Sigma key file"
        case .unsupportedVersion(let v):
            "key file format version \(v) is not supported (this build reads \(KeyFileLayout.version))"
        case .wrongParty(let expected, let found):
            "this key file belongs to \(found == .p0 ? "the server" : "the client"), not \(expected == .p0 ? "the server" : "the client")"
        case .incomplete(let path): "\(path) is incomplete: the dealer did not finish writing it"
        case .alreadyConsumed(let path): "\(path) was already used by an inference; keys are single-use"
        case .truncated(let expected, let actual): "key file is truncated: \(actual) bytes, expected \(expected)"
        case .headerCorrupted(let path):
            "\(path): the header fails its MAC (the file was altered, or written for another deployment's credentials)"
        case .corrupted(let section): "key file section \(section) fails its MAC: the file was altered or damaged"
        case .credentialsMismatch(let why): why
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
    /// Whether the MACs are keyed by the deployment's dealer–party secret (otherwise by a public key: an
    /// integrity check against damage, not against an attacker; only with `--insecure-transport`).
    public internal(set) var authenticated = false

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
///     64    payload length (u64)   72 section count (u64)   80 parameters length (u16)
///     82    authenticated (u8)   84 parameters (≤ 3000 B)   4064 header MAC (16 B, over bytes 0..<4096 with it and the state as 0)
///     4096  payload: the party's key stream, in the order it is consumed
///     then  one 16-byte MAC per section of the payload
///
/// MACs are GMAC under K = HMAC-SHA-256(secret, "sigma key file 2" ‖ session id ‖ party), with the section index as
/// nonce (the header's: all ones). K is fresh per file (the session id is random), so no nonce repeats under a key.
/// The payload starts on a page boundary so the mapping hands kernels aligned data.
enum KeyFileLayout {
    static let magic: [UInt8] = Array("SIGMAKEY".utf8)
    static let version: UInt16 = 2
    static let payloadOffset = 4096
    static let stateOffset = 11
    static let headerMACOffset = 4064
    static let tagSize = 16
    static let defaultSectionSize = 64 << 20
    /// How far the verifier may run ahead of the reader: it faults pages in ahead of use (reading overlaps
    /// compute) without pulling in more than this much of a file larger than memory.
    static let verifyAheadSections = 8
    /// How many sections past the one being verified have their pages requested from the disk.
    static let requestAheadSections = 2

    enum State: UInt8 {
        case beingWritten = 0
        case complete = 1
        case consumed = 2
    }
}

/// The per-file MAC key and its GMAC.
struct KeyFileMAC {
    private let key: [UInt8]

    init(secret: [UInt8]?, sessionID: [UInt8], party: Party) {
        key = hmacSHA256(
            key: secret ?? [UInt8](repeating: 0, count: 32),
            data: Array("sigma key file 2".utf8) + sessionID + [party.rawValue])
    }

    /// A GMAC under a 32-byte key derived elsewhere.
    init(key: [UInt8]) {
        precondition(key.count == 32, "GMAC keys are 32 bytes (AES-256)")
        self.key = key
    }

    static let headerNonce = UInt64.max

    static func nonce(_ index: UInt64) -> [UInt8] { littleEndianBytes(index, count: 8) + [0, 0, 0, 0] }

    func tag(_ bytes: UnsafeRawBufferPointer, nonce index: UInt64) -> [UInt8] {
        var stream = begin(nonce: index)
        stream.add(bytes)
        return stream.finish()
    }

    func begin(nonce index: UInt64) -> Stream {
        let state = Self.nonce(index).withUnsafeBufferPointer { nonce in
            key.withUnsafeBufferPointer { sigma_gmac_begin($0.baseAddress, nonce.baseAddress) }
        }
        guard let state else { fatalError("out of memory starting a GMAC") }
        return Stream(state: state)
    }

    /// A GMAC being computed over pieces.
    struct Stream {
        fileprivate let state: OpaquePointer
        private(set) var count = 0
        mutating func add(_ bytes: UnsafeRawBufferPointer) {
            sigma_gmac_add(state, bytes.baseAddress, bytes.count)
            count += bytes.count
        }
        func finish() -> [UInt8] {
            var tag = [UInt8](repeating: 0, count: KeyFileLayout.tagSize)
            precondition(sigma_gmac_end(state, &tag) == 0, "GMAC failed in libcrypto")
            return tag
        }
    }

    /// The header's MAC: over the whole header page with the MAC field and the state byte (which changes) as 0.
    func headerTag(_ header: [UInt8]) -> [UInt8] {
        var covered = Array(header[0..<KeyFileLayout.payloadOffset])
        covered[KeyFileLayout.stateOffset] = 0
        covered.replaceSubrange(
            KeyFileLayout.headerMACOffset..<(KeyFileLayout.headerMACOffset + KeyFileLayout.tagSize),
            with: [UInt8](repeating: 0, count: KeyFileLayout.tagSize))
        return covered.withUnsafeBytes { tag($0, nonce: Self.headerNonce) }
    }
}

/// The dealer's writer of one party's key file: a `KeySink` that streams to disk with large writes, computing each
/// section's MAC on the way. The writes themselves run on a thread of their own (`OrderedWorker`): copying gigabytes
/// into the page cache costs about as much kernel time as generating the keys costs the dealer, so the two overlap.
public final class KeyFileWriter: KeySink {
    private let fd: Int32
    /// Writes (bytes, file offset) in order on its own thread.
    private let writer: OrderedWorker<(bytes: [UInt8], offset: Int)>
    private var header: KeyFileHeader
    private let mac: KeyFileMAC
    private let sectionSize: Int
    private var buffer: [UInt8] = []
    private var payloadLength = 0
    private var tags: [UInt8] = []
    private var section: KeyFileMAC.Stream
    public let path: String

    /// Creates (or replaces) `path` with owner-only permissions. `secret` is the deployment's dealer–party key
    /// (`Credentials.keyFileSecret`); nil only for `--insecure-transport` deployments.
    /// `cachePlan` chooses which written pages stay in the page cache (nil: the kernel's choice).
    public convenience init(
        path: String, header: KeyFileHeader, secret: [UInt8]?, cachePlan: KeyCachePlan? = nil
    ) throws {
        try self.init(
            path: path, header: header, secret: secret, sectionSize: KeyFileLayout.defaultSectionSize,
            cachePlan: cachePlan)
    }

    /// With a chosen section size: lets tests cover many sections with a small file.
    init(
        path: String, header: KeyFileHeader, secret: [UInt8]?, sectionSize: Int, cachePlan: KeyCachePlan? = nil
    ) throws {
        precondition(sectionSize > 0 && sectionSize <= Int(UInt32.max))
        self.path = path
        self.header = header
        self.header.authenticated = secret != nil
        self.sectionSize = sectionSize
        mac = KeyFileMAC(secret: secret, sessionID: header.sessionID, party: header.party)
        section = mac.begin(nonce: 0)
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw KeyFileError.cannotOpen(path: path, errno: errno) }
        let descriptor = fd
        let planned = cachePlan?.register(fd)
        writer = OrderedWorker(name: "sigma-key-writer") { item in
            try Self.writeAll(descriptor, item.bytes, at: item.offset)
            if let cachePlan, let planned { cachePlan.wrote(planned, offset: item.offset, length: item.bytes.count) }
        }
        try writeHeader(state: .beingWritten)
        buffer.reserveCapacity(Self.flushSize)
    }

    deinit {
        writer.stop()
        _ = section.finish()  // frees the C state
        close(fd)
    }

    static let flushSize = 8 << 20

    public func write(_ bytes: [UInt8]) throws {
        bytes.withUnsafeBytes { authenticate($0) }
        if bytes.count >= Self.flushSize {
            // A large piece (a DPF batch) goes to the disk thread as it is, without a copy into the buffer.
            try flush()
            payloadLength += bytes.count
            try writer.submit((bytes, KeyFileLayout.payloadOffset + payloadLength - bytes.count))
            return
        }
        buffer += bytes
        payloadLength += bytes.count
        if buffer.count >= Self.flushSize { try flush() }
    }

    /// Adds bytes to the running section MACs, closing a section every `sectionSize` bytes.
    private func authenticate(_ bytes: UnsafeRawBufferPointer) {
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + sectionSize - section.count)
            section.add(UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
            start = end
            if section.count == sectionSize {
                tags += section.finish()
                section = mac.begin(nonce: UInt64(tags.count / KeyFileLayout.tagSize))
            }
        }
    }

    /// Writes the MACs, marks the file complete and syncs it: only then may a party use it.
    public func finish() throws {
        if section.count > 0 {
            tags += section.finish()
            section = mac.begin(nonce: UInt64(tags.count / KeyFileLayout.tagSize))
        }
        try flush()
        try writer.drain()
        try writeAll(tags, at: KeyFileLayout.payloadOffset + payloadLength)
        try writeHeader(state: .complete)
        guard fsync(fd) == 0 else { throw KeyFileError.ioFailed(call: "fsync", errno: errno) }
    }

    /// Hands the buffer (the last `buffer.count` bytes of the payload) to the disk thread.
    private func flush() throws {
        guard !buffer.isEmpty else { return }
        try writer.submit((buffer, KeyFileLayout.payloadOffset + payloadLength - buffer.count))
        buffer = []
        buffer.reserveCapacity(Self.flushSize)
    }

    private func writeHeader(state: KeyFileLayout.State) throws {
        var bytes = [UInt8](repeating: 0, count: KeyFileLayout.payloadOffset)
        bytes.replaceSubrange(0..<8, with: KeyFileLayout.magic)
        bytes.replaceSubrange(8..<10, with: littleEndianBytes(UInt64(KeyFileLayout.version), count: 2))
        bytes[10] = header.party.rawValue
        bytes[KeyFileLayout.stateOffset] = state.rawValue
        bytes.replaceSubrange(12..<16, with: littleEndianBytes(UInt64(sectionSize), count: 4))
        bytes.replaceSubrange(16..<32, with: header.sessionID)
        bytes.replaceSubrange(32..<64, with: header.modelFingerprint)
        bytes.replaceSubrange(64..<72, with: littleEndianBytes(UInt64(payloadLength), count: 8))
        bytes.replaceSubrange(72..<80, with: littleEndianBytes(UInt64(tags.count / KeyFileLayout.tagSize), count: 8))
        bytes.replaceSubrange(80..<82, with: littleEndianBytes(UInt64(header.parameters.count), count: 2))
        bytes[82] = header.authenticated ? 1 : 0
        bytes.replaceSubrange(84..<(84 + header.parameters.count), with: header.parameters)
        let tag = mac.headerTag(bytes)
        bytes.replaceSubrange(
            KeyFileLayout.headerMACOffset..<(KeyFileLayout.headerMACOffset + KeyFileLayout.tagSize), with: tag)
        try writeAll(bytes, at: 0)
    }

    private func writeAll(_ bytes: [UInt8], at offset: Int) throws { try Self.writeAll(fd, bytes, at: offset) }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int) throws(KeyFileError) {
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

/// A party's key file, mapped read-only; `reader` hands the payload to the protocols in order, each section only
/// after its MAC was checked.
public final class KeyFile: @unchecked Sendable {  // the mapping is immutable once opened
    public let header: KeyFileHeader
    public let path: String
    private let verifier: SectionVerifier

    /// Opens `path` for `party`: checks magic, version, party, completeness, size and the header's MAC, marks the
    /// file consumed (keys are single-use), maps it, and starts checking the sections' MACs in the background,
    /// ahead of the reader. `secret` is the deployment's dealer–party key (nil only with `--insecure-transport`).
    /// Never traps on a malformed file.
    public init(path: String, party: Party, secret: [UInt8]?, markConsumed: Bool = true) throws {
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
        switch (head[82], secret != nil) {
        case (1, true), (0, false): break
        case (1, false):
            throw KeyFileError.credentialsMismatch(
                "\(path) is authenticated by the deployment's credentials: pass --credentials")
        case (0, true):
            throw KeyFileError.credentialsMismatch(
                "\(path) was written without credentials (an --insecure-transport dealer); refusing it with credentials"
            )
        default: throw KeyFileError.notAKeyFile(path)
        }
        let sessionID = Array(head[16..<32])
        let mac = KeyFileMAC(secret: secret, sessionID: sessionID, party: owner)
        let storedHeaderTag = Array(
            head[KeyFileLayout.headerMACOffset..<(KeyFileLayout.headerMACOffset + KeyFileLayout.tagSize)])
        guard constantTimeEqual(mac.headerTag(head), storedHeaderTag) else {
            throw KeyFileError.headerCorrupted(path)
        }
        let sectionSize = Int(readLittleEndian(head, at: 12, count: 4))
        let payloadLength = Int(clamping: readLittleEndian(head, at: 64, count: 8))
        let sections = Int(clamping: readLittleEndian(head, at: 72, count: 8))
        let parametersLength = Int(readLittleEndian(head, at: 80, count: 2))
        guard sectionSize > 0, parametersLength <= 3000, payloadLength <= Int.max / 2,
            sections == (payloadLength + sectionSize - 1) / sectionSize
        else { throw KeyFileError.notAKeyFile(path) }
        let expected = KeyFileLayout.payloadOffset + payloadLength + KeyFileLayout.tagSize * sections
        guard size == expected else { throw KeyFileError.truncated(expected: expected, actual: size) }
        var parsed = KeyFileHeader(
            party: owner, sessionID: sessionID, modelFingerprint: Array(head[32..<64]),
            parameters: Array(head[84..<(84 + parametersLength)]))
        parsed.authenticated = secret != nil
        header = parsed

        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw KeyFileError.ioFailed(call: "mmap", errno: errno)
        }
        madvise(base, size, MADV_SEQUENTIAL)
        verifier = SectionVerifier(
            mapping: UnsafeRawBufferPointer(start: base, count: size), payloadLength: payloadLength,
            sectionSize: sectionSize, mac: mac, file: dup(fd))
        if markConsumed {
            var consumed = KeyFileLayout.State.consumed.rawValue
            guard pwrite(fd, &consumed, 1, off_t(KeyFileLayout.stateOffset)) == 1, fsync(fd) == 0 else {
                throw KeyFileError.ioFailed(call: "pwrite", errno: errno)
            }
        }
        verifier.start()
    }

    deinit { verifier.cancel() }

    /// The payload as a key stream, read in place; each byte is handed out only after its section's MAC passed.
    public func reader() -> KeyStreamReader {
        KeyStreamReader(bytes: verifier.payload, owner: self, verifier: verifier)
    }

    public var payloadBytes: Int { verifier.payload.count }
}

/// Checks a mapped key file's section MACs on its own thread, in order, staying a bounded distance ahead of the
/// reader (the first touch of each page happens here, so disk reads overlap the protocol's compute), and releases
/// the pages of sections the reader has left behind (a file larger than memory streams through).
final class SectionVerifier: KeyStreamVerifier, @unchecked Sendable {  // mutable state guarded by `condition`
    let payload: UnsafeRawBufferPointer
    private let mapping: UnsafeRawBufferPointer
    private let sectionSize: Int
    private let sections: Int
    private let mac: KeyFileMAC
    private let condition = NSCondition()
    private var verifiedSections = 0
    private var readerEnd = 0
    private var failedSection: Int?
    private var cancelled = false

    /// The file, to drop consumed sections from the page cache (-1: none).
    private let file: Int32

    init(mapping: UnsafeRawBufferPointer, payloadLength: Int, sectionSize: Int, mac: KeyFileMAC, file: Int32 = -1) {
        self.file = file
        self.mapping = mapping
        payload = UnsafeRawBufferPointer(
            rebasing: mapping[KeyFileLayout.payloadOffset..<(KeyFileLayout.payloadOffset + payloadLength)])
        self.sectionSize = sectionSize
        sections = (payloadLength + sectionSize - 1) / sectionSize
        self.mac = mac
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: mapping.baseAddress), mapping.count)
        if file >= 0 { close(file) }
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "sigma-key-verifier"
        thread.start()
    }

    func cancel() {
        condition.withLock {
            cancelled = true
            condition.broadcast()
        }
    }

    func verified(through end: Int) throws(KeyStreamError) -> Int {
        condition.lock()
        defer { condition.unlock() }
        readerEnd = max(readerEnd, end)
        condition.broadcast()
        while verifiedBytes < end && failedSection == nil && !cancelled { condition.wait() }
        if verifiedBytes >= end { return verifiedBytes }
        if let failedSection {
            throw .integrity(KeyFileError.corrupted(section: failedSection).description)
        }
        throw .integrity("the key file was closed while in use")
    }

    private var verifiedBytes: Int { min(verifiedSections * sectionSize, payload.count) }

    private func run() {
        var released = 0
        for section in 0..<sections {
            condition.lock()
            while !cancelled && section - readerEnd / sectionSize >= KeyFileLayout.verifyAheadSections {
                condition.wait()
            }
            let stop = cancelled
            let readerSection = readerEnd / sectionSize
            condition.unlock()
            if stop { return }
            // Sections two behind the reader are done with; their pages go back (re-read from the file if a gate
            // still holds a view into them, so this is only ever a cost, never a wrong byte).
            if readerSection - 2 > released {
                let start = released * sectionSize
                let end = (readerSection - 2) * sectionSize
                madvise(UnsafeMutableRawPointer(mutating: payload.baseAddress! + start), end - start, MADV_DONTNEED)
                // And out of the page cache: keys are single-use, and when both parties' files exceed memory the
                // kernel would otherwise evict the sections still to come (written last, so older in its LRU
                // than the ones just read) and read every byte from disk.
                // The range is widened to whole 2 MiB pieces of the file (the largest folio, aligned to its size):
                // a folio that straddles the range's edge would otherwise stay.
                if file >= 0 {
                    let folio = 2 << 20
                    let from = (KeyFileLayout.payloadOffset + start) / folio * folio
                    let to = (KeyFileLayout.payloadOffset + end) / folio * folio
                    _ = posix_fadvise(file, off_t(from), off_t(to - from), POSIX_FADV_DONTNEED)
                }
                released = readerSection - 2
            }
            let start = section * sectionSize
            // The next sections' missing pages are requested now, all at once: faulting them in one by one waits
            // on the disk for each readahead window, which halves its throughput when only some chunks of the
            // file are cached (`KeyCachePlan`).
            let ahead = min(payload.count, start + (1 + KeyFileLayout.requestAheadSections) * sectionSize)
            if ahead > start + sectionSize {
                let from = start + sectionSize
                madvise(UnsafeMutableRawPointer(mutating: payload.baseAddress! + from), ahead - from, MADV_WILLNEED)
            }
            let piece = UnsafeRawBufferPointer(rebasing: payload[start..<min(start + sectionSize, payload.count)])
            let tag = mac.tag(piece, nonce: UInt64(section))
            let storedOffset = KeyFileLayout.payloadOffset + payload.count + KeyFileLayout.tagSize * section
            let stored = Array(UnsafeRawBufferPointer(rebasing: mapping[storedOffset..<(storedOffset + 16)]))
            let good = constantTimeEqual(tag, stored)
            condition.withLock {
                if good { verifiedSections += 1 } else { failedSection = section }
                condition.broadcast()
            }
            if !good { return }
        }
    }
}

/// HMAC-SHA-256 (a key-derivation function here: the label goes in `data`).
func hmacSHA256(key: [UInt8], data: [UInt8]) -> [UInt8] {
    var derived = [UInt8](repeating: 0, count: 32)
    let status = key.withUnsafeBufferPointer { k in
        data.withUnsafeBytes { sigma_hmac_sha256(k.baseAddress, k.count, $0.baseAddress, $0.count, &derived) }
    }
    precondition(status == 0, "HMAC-SHA-256 failed in libcrypto")
    return derived
}

func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.count == b.count && sigma_equal_constant_time(a, b, a.count) == 1
}

func littleEndianBytes(_ value: UInt64, count: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: value >> UInt64(8 * $0)) }
}

func readLittleEndian(_ bytes: [UInt8], at offset: Int, count: Int) -> UInt64 {
    (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << UInt64(8 * $1) }
}
