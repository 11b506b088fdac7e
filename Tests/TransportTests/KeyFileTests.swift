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

/// A key file of `count` bytes of payload for `party`.
func writeKeyFile(_ path: String, party: Party = .p1, payload: [UInt8]) throws {
    let writer = try KeyFileWriter(
        path: path,
        header: KeyFileHeader(party: party, sessionID: fileSession, modelFingerprint: model, parameters: [1, 2]))
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
        let file = try KeyFile(path: path, party: .p1)
        #expect(
            file.header
                == KeyFileHeader(party: .p1, sessionID: fileSession, modelFingerprint: model, parameters: [1, 2]))
        #expect(file.payloadBytes == payload.count)
        let reader = file.reader()
        #expect(reader.remaining == payload.count)
        #expect(throws: KeyFileError.alreadyConsumed(path)) { try KeyFile(path: path, party: .p1) }
    }

    @Test("the wrong party's file, a truncated file, an unfinished file and a corrupted byte are refused")
    func refusals() throws {
        let path = temporaryPath("bad")
        defer { unlink(path) }
        try writeKeyFile(path, payload: payload)
        #expect(throws: KeyFileError.wrongParty(expected: .p0, found: .p1)) {
            try KeyFile(path: path, party: .p0, markConsumed: false)
        }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        for (name, damaged) in [
            ("truncated", bytes.prefix(bytes.count - 1)),
            ("header only", bytes.prefix(4096)),
            ("empty", Data()),
            (
                "corrupted payload",
                {
                    var d = bytes; d[4096 + 12345] ^= 1; return d
                }()
            ),
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
            #expect(throws: KeyFileError.self, "\(name)") { try KeyFile(path: path, party: .p1, markConsumed: false) }
        }
        #expect(throws: KeyFileError.self) { try KeyFile(path: path + ".missing", party: .p1) }
    }
}
