import CSigmaCrypto
import Testing

@testable import Transport

@Suite("GMAC for key files")
struct GMACTests {
    func tag(openssl: Bool, key: [UInt8], nonce: [UInt8], data: [UInt8], cuts: [Int]) -> [UInt8] {
        var tag = [UInt8](repeating: 0, count: 16)
        let bounds = [0] + cuts + [data.count]
        let status = data.withUnsafeBytes { bytes in
            let base = bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!
            let pieces: [UnsafeRawPointer?] = (0..<(bounds.count - 1)).map { base + bounds[$0] }
            let lengths = (0..<(bounds.count - 1)).map { bounds[$0 + 1] - bounds[$0] }
            return sigma_gmac_with(openssl ? 1 : 0, key, nonce, pieces, lengths, lengths.count, &tag)
        }
        #expect(status == 0)
        return tag
    }

    @Test("the known answer of the GCM specification (test case 13: AES-256, zero key and nonce, no data)")
    func knownAnswer() {
        let expected: [UInt8] = [
            0x53, 0x0f, 0x8a, 0xfb, 0xc7, 0x45, 0x36, 0xb9, 0xa9, 0x63, 0xb4, 0xf1, 0xc4, 0xcb, 0x73, 0x8b,
        ]
        for openssl in [true, false] {
            #expect(
                tag(
                    openssl: openssl, key: [UInt8](repeating: 0, count: 32), nonce: [UInt8](repeating: 0, count: 12),
                    data: [], cuts: []) == expected)
        }
    }

    /// The shim's own GHASH (32 blocks a step on VPCLMULQDQ, single blocks at the ends, partial blocks carried
    /// between pieces) against OpenSSL's GCM, at lengths around every block and step boundary, in pieces cut
    /// anywhere.
    @Test("the shim's GHASH gives OpenSSL's tags, whatever the length and however the data is cut")
    func sameAsOpenSSL() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        let lengths = [0, 1, 15, 16, 17, 511, 512, 513, 527, 1_023, 1_024, 1_025, 4_096 + 13, 100_003]
        for length in lengths {
            let key = (0..<32).map { _ in UInt8(truncatingIfNeeded: next()) }
            let nonce = (0..<12).map { _ in UInt8(truncatingIfNeeded: next()) }
            let data = (0..<length).map { _ in UInt8(truncatingIfNeeded: next()) }
            let cutSets: [[Int]] =
                length == 0
                ? [[]]
                : [
                    [], [length / 2], [1, length - 1].filter { $0 <= length }.sorted(),
                    [Int(next() % UInt64(length + 1)), Int(next() % UInt64(length + 1))].sorted(),
                ]
            for cuts in cutSets {
                let reference = tag(openssl: true, key: key, nonce: nonce, data: data, cuts: [])
                #expect(
                    tag(openssl: false, key: key, nonce: nonce, data: data, cuts: cuts) == reference,
                    "\(length) bytes cut at \(cuts)")
            }
            if length > 0 {
                var flipped = data
                flipped[Int(next() % UInt64(length))] ^= 1
                #expect(
                    tag(openssl: false, key: key, nonce: nonce, data: flipped, cuts: [])
                        != tag(openssl: false, key: key, nonce: nonce, data: data, cuts: []))
            }
        }
    }
}
