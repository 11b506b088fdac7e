import FSS
import Foundation
import Protocols
import Testing

@testable import Transport

func temporaryPath(_ name: String) -> String {
    NSTemporaryDirectory() + "sigma-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-\(name)"
}

let fileSession = (0..<16).map { UInt8($0) }
let model = [UInt8](repeating: 0xAB, count: 32)

let dealerSecret = [UInt8](repeating: 0x5C, count: 32)

/// A key file of `count` bytes of payload for `party`, authenticated by `secret`.
func writeKeyFile(
    _ path: String, party: Party = .p1, payload: [UInt8], secret: [UInt8]? = dealerSecret,
    sectionSize: Int = 64 << 20
) throws {
    let writer = try KeyFileWriter(
        path: path,
        header: KeyFileHeader(party: party, sessionID: fileSession, modelFingerprint: model, parameters: [1, 2]),
        secret: secret, sectionSize: sectionSize)
    // Uneven pieces, as gates write them.
    var rest = payload[...]
    var size = 1
    while !rest.isEmpty {
        try writer.write(Array(rest.prefix(size)))
        rest = rest.dropFirst(size)
        size = size * 3 % 1000 + 5
    }
    try writer.finish()
}

/// The type of the file system holding `path` (/proc/mounts: the longest mount point that contains it).
func fileSystemType(_ path: String) -> String? {
    guard let mounts = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return nil }
    let entries = mounts.split(separator: "\n").map { $0.split(separator: " ") }.filter { $0.count > 2 }
    let containing = entries.filter { path.hasPrefix($0[1] == "/" ? "/" : $0[1] + "/") }
    return containing.max { $0[1].count < $1[1].count }.map { String($0[2]) }
}

@Suite("Key files", .serialized)
struct KeyFileTests {
    let payload = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

    @Test("a key file round-trips, is owner-only, and is refused once consumed")
    func roundTrip() throws {
        let path = temporaryPath("ok")
        defer { unlink(path) }
        try writeKeyFile(path, payload: payload)
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
        let file = try KeyFile(path: path, party: .p1, secret: dealerSecret)
        var expected = KeyFileHeader(party: .p1, sessionID: fileSession, modelFingerprint: model, parameters: [1, 2])
        expected.authenticated = true
        #expect(file.header == expected)
        #expect(file.payloadBytes == payload.count)
        let reader = file.reader()
        #expect(reader.remaining == payload.count)
        #expect(try reader.words(payload.count, bits: 8) == payload.map { UInt64($0) })
        #expect(throws: KeyFileError.alreadyConsumed(path)) {
            try KeyFile(path: path, party: .p1, secret: dealerSecret)
        }
    }

    @Test("the wrong party's file, a truncated file, an unfinished file and a corrupted byte are refused")
    func refusals() throws {
        let path = temporaryPath("bad")
        defer { unlink(path) }
        try writeKeyFile(path, payload: payload)
        #expect(throws: KeyFileError.wrongParty(expected: .p0, found: .p1)) {
            try KeyFile(path: path, party: .p0, secret: dealerSecret, markConsumed: false)
        }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        for (name, damaged) in [
            ("truncated", bytes.prefix(bytes.count - 1)),
            ("header only", bytes.prefix(4096)),
            ("empty", Data()),
            (
                "unfinished",
                {
                    var d = bytes; d[11] = 0; return d
                }()
            ),
            (
                "not a key file",
                {
                    var d = bytes; d[0] = 0x41; return d
                }()
            ),
        ] {
            try damaged.write(to: URL(fileURLWithPath: path))
            #expect(throws: KeyFileError.self, "\(name)") {
                try KeyFile(path: path, party: .p1, secret: dealerSecret, markConsumed: false)
            }
        }
        #expect(throws: KeyFileError.self) { try KeyFile(path: path + ".missing", party: .p1, secret: dealerSecret) }
    }

    /// Opens `path` and reads its whole payload; nil if either step refused.
    func readAll(_ path: String, secret: [UInt8]?) -> [UInt8]? {
        guard let file = try? KeyFile(path: path, party: .p1, secret: secret, markConsumed: false) else { return nil }
        return try? file.reader().words(file.payloadBytes, bits: 8).map { UInt8($0) }
    }

    @Test("every single-byte change anywhere in a key file is detected (header, payload, MACs)")
    func everyByteTampered() throws {
        let path = temporaryPath("tamper")
        defer { unlink(path) }
        let small = Array(payload.prefix(3000))
        try writeKeyFile(path, payload: small, sectionSize: 512)  // 6 sections
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(bytes.count == 4096 + 3000 + 6 * 16)
        #expect(readAll(path, secret: dealerSecret) == small)
        var undetected: [Int] = []
        for index in 0..<bytes.count {
            var damaged = bytes
            damaged[index] ^= 0x20
            try damaged.write(to: URL(fileURLWithPath: path))
            if readAll(path, secret: dealerSecret) != nil { undetected.append(index) }
        }
        #expect(undetected.isEmpty, "undetected changes at byte offsets \(undetected.prefix(10))")
    }

    @Test("a file is refused under another deployment's secret, without credentials, or unkeyed with credentials")
    func credentialsMismatch() throws {
        let path = temporaryPath("keys")
        defer { unlink(path) }
        try writeKeyFile(path, payload: payload)
        #expect(throws: KeyFileError.headerCorrupted(path)) {
            try KeyFile(path: path, party: .p1, secret: [UInt8](repeating: 1, count: 32), markConsumed: false)
        }
        #expect(throws: KeyFileError.self) { try KeyFile(path: path, party: .p1, secret: nil, markConsumed: false) }
        try writeKeyFile(path, payload: payload, secret: nil)
        #expect(readAll(path, secret: nil) == payload)
        #expect(throws: KeyFileError.self) {
            try KeyFile(path: path, party: .p1, secret: dealerSecret, markConsumed: false)
        }
    }

    @Test(
        "sections are checked as the reader reaches them: bytes before a damaged section arrive, the damaged one never")
    func checkedAsRead() throws {
        let path = temporaryPath("late")
        defer { unlink(path) }
        try writeKeyFile(path, payload: payload, sectionSize: 10_000)  // 20 sections
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[4096 + 17 * 10_000 + 5] ^= 1
        try bytes.write(to: URL(fileURLWithPath: path))
        let file = try KeyFile(path: path, party: .p1, secret: dealerSecret, markConsumed: false)
        let reader = file.reader()
        #expect(try reader.words(17 * 10_000, bits: 8) == payload.prefix(17 * 10_000).map { UInt64($0) })
        #expect(throws: KeyStreamError.integrity(KeyFileError.corrupted(section: 17).description)) {
            try reader.words(1, bits: 8)
        }
    }

    @Test("pieces larger than the write buffer go to the disk thread uncopied, between small ones, across sections")
    func largePieces() throws {
        let path = temporaryPath("large")
        defer { unlink(path) }
        let flush = KeyFileWriter.flushSize
        let sizes = [3, flush + 5, 100, 7, 2 * flush + 1, flush - 1, 1, flush]
        var state: UInt64 = 5
        let pieces = sizes.map { size in
            (0..<size).map { _ -> UInt8 in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return UInt8(truncatingIfNeeded: state >> 33)
            }
        }
        let writer = try KeyFileWriter(
            path: path,
            header: KeyFileHeader(party: .p0, sessionID: fileSession, modelFingerprint: model),
            secret: dealerSecret, sectionSize: 3 << 20)
        for piece in pieces { try writer.write(piece) }
        try writer.finish()
        let file = try KeyFile(path: path, party: .p0, secret: dealerSecret, markConsumed: false)
        let reader = file.reader()
        #expect(file.payloadBytes == sizes.reduce(0, +))
        for piece in pieces {
            #expect(try reader.words(piece.count, bits: 8) == piece.map { UInt64($0) })
        }
    }

    @Test("a cache plan keeps at most its budget cached, spread over the file, and drops the rest; bytes unchanged")
    func cachePlan() throws {
        let path = temporaryPath("plan")
        defer { unlink(path) }
        let chunk = 2 << 20  // the page cache's largest folio: smaller chunks could not leave the cache
        let plan = KeyCachePlan(budget: 4 * chunk, chunkSize: chunk, releaseDelay: 4)
        var state: UInt64 = 11
        let payload = (0..<(12 * chunk)).map { _ -> UInt8 in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
        let writer = try KeyFileWriter(
            path: path, header: KeyFileHeader(party: .p0, sessionID: fileSession, modelFingerprint: model),
            secret: dealerSecret, sectionSize: 1 << 20, cachePlan: plan)
        for start in stride(from: 0, to: payload.count, by: 5 * chunk / 2 + 3) {
            try writer.write(Array(payload[start..<min(payload.count, start + 5 * chunk / 2 + 3)]))
        }
        try writer.finish()
        plan.finish()
        #expect(plan.cachedBytes <= plan.budget && plan.cachedBytes >= plan.budget - 2 * chunk)
        // Spread: every third of the file keeps some of it (the kernel alone would keep only the last third).
        let kept = plan.cachedRanges.map(\.offset)
        let third = payload.count / 3
        for t in 0..<3 {
            let from = KeyFileLayout.payloadOffset + t * third
            #expect(kept.contains { $0 >= from && $0 < from + third }, "third \(t) keeps nothing")
        }
        // The dropped chunks left the page cache (unless the temporary directory is a tmpfs, whose pages are the
        // file itself).
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        if fileSystemType(path) != "tmpfs" {
            let size = KeyFileLayout.payloadOffset + payload.count
            let mapping = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0)!
            defer { munmap(mapping, size) }
            let page = Int(getpagesize())
            var resident = [UInt8](repeating: 0, count: (size + page - 1) / page)
            #expect(mincore(mapping, size, &resident) == 0)
            let cachedPages = resident.filter { $0 & 1 == 1 }.count
            #expect(cachedPages * page <= plan.budget + 2 * chunk + KeyFileLayout.payloadOffset)
        }
        let file = try KeyFile(path: path, party: .p0, secret: dealerSecret, markConsumed: false)
        let reader = file.reader()
        for start in stride(from: 0, to: payload.count, by: chunk) {
            #expect(try reader.words(chunk, bits: 8) == payload[start..<(start + chunk)].map { UInt64($0) })
        }
    }
}
