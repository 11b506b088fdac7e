import COpenSSL
import CSigmaKernels
import Testing

@testable import FSS

func bytes(hex: String) -> [UInt8] { hexadecimalBytes(hex) }

func blocks(from raw: [UInt8]) -> [Block] {
    raw.withUnsafeBytes { r in (0..<raw.count / 16).map { r.loadUnaligned(fromByteOffset: 16 * $0, as: Block.self) } }
}

func rawBytes(_ blocks: [Block]) -> [UInt8] { blocks.withUnsafeBytes { Array($0) } }

/// AES-128-ECB from OpenSSL: the oracle.
func openSSLEncrypt(key: [UInt8], _ plaintext: [UInt8]) -> [UInt8] {
    let ctx = EVP_CIPHER_CTX_new()!
    defer { EVP_CIPHER_CTX_free(ctx) }
    #expect(EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), nil, key, nil) == 1)
    EVP_CIPHER_CTX_set_padding(ctx, 0)
    var out = [UInt8](repeating: 0, count: plaintext.count + 16)
    var length: Int32 = 0
    #expect(EVP_EncryptUpdate(ctx, &out, &length, plaintext, Int32(plaintext.count)) == 1)
    return Array(out[0..<Int(length)])
}

let supportedBackends = AESBackend.allCases.filter(\.isSupported)

@Suite("AES-128 kernels")
struct AESTests {
    @Test("FIPS-197 known answers", arguments: supportedBackends)
    func fips197(backend: AESBackend) {
        let vectors = [
            (
                "000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff",
                "69c4e0d86a7b0430d8cdb78070b4c55a"
            ),
            (
                "2b7e151628aed2a6abf7158809cf4f3c", "3243f6a8885a308d313198a2e0370734",
                "3925841d02dc09fbdc118597196a0b32"
            ),
        ]
        for (key, plain, cipher) in vectors {
            let aes = AES128(key: bytes(hex: key))
            // Repeat the block so the wide paths (16 in flight) and the tails both see it.
            for count in [1, 8, 16, 17, 35] {
                let input = blocks(from: Array([[UInt8]](repeating: bytes(hex: plain), count: count).joined()))
                let output = aes.encrypt(input, backend: backend)
                #expect(output.allSatisfy { rawBytes([$0]) == bytes(hex: cipher) }, "\(backend) count \(count)")
            }
        }
    }

    @Test("equals OpenSSL EVP AES-128-ECB on random data", arguments: supportedBackends)
    func openSSLOracle(backend: AESBackend) {
        var random = SecureRandom(insecureTestSeed: 7)
        for count in [1, 3, 15, 16, 31, 100, 1000] {
            let key = rawBytes([random.nextBlock()])
            let input = random.blocks(count)
            let ours = rawBytes(AES128(key: key).encrypt(input, backend: backend))
            #expect(ours == openSSLEncrypt(key: key, rawBytes(input)), "\(backend) count \(count)")
        }
    }

    @Test("counter-mode keystream is AES of consecutive 128-bit counters, carrying into the high word")
    func keystream() {
        let aes = AES128(key: bytes(hex: "000102030405060708090a0b0c0d0e0f"))
        let start = Block(lo: ~0 - 2, hi: 41)
        var stream = [Block](repeating: .zero, count: 300)
        stream.withUnsafeMutableBytes { aes.keystream(counter: start, into: $0) }
        let counters = (0..<300).map { i -> Block in
            let (lo, carry) = start.lo.addingReportingOverflow(UInt64(i))
            return Block(lo: lo, hi: start.hi + (carry ? 1 : 0))
        }
        #expect(stream == aes.encrypt(counters, backend: .portable))
        #expect(counters[3].hi == 42)
    }

    @Test("backend detection reports a working choice")
    func detection() {
        #expect(AESBackend.portable.isSupported)
        #expect(AESBackend.best.isSupported)
        #expect(AESBackend.allCases.filter(\.isSupported).first == AESBackend.best)
    }
}

@Suite("Fixed-key hash PRG")
struct PRGTests {
    /// G_c(x) = H(x ⊕ τ_c), H(x) = AES_k(σ(x)) ⊕ σ(x), σ(hi, lo) = (hi ⊕ lo, hi), τ_c = c, from the definition.
    func reference(_ x: Block, key c: Int) -> Block {
        let aes = AES128(key: FixedKeyPRG.fixedKey)
        let tweaked = x ^ Block(lo: UInt64(c), hi: 0)
        let s = Block(lo: tweaked.hi, hi: tweaked.hi ^ tweaked.lo)
        return aes.encrypt([s], backend: .portable)[0] ^ s
    }

    @Test("hash and hashPair match the definition on every backend", arguments: supportedBackends)
    func definition(backend: AESBackend) {
        let prg = FixedKeyPRG(backend: backend)
        var random = SecureRandom(insecureTestSeed: 11)
        let input = random.blocks(37)
        let select = random.values(37, bits: 1).map { UInt8($0) }
        for base in [0, 2] {
            let selected = prg.hash(input, select: select, base: base)
            let (left, right) = prg.hashPair(input, base: base)
            for i in input.indices {
                #expect(selected[i] == reference(input[i], key: base + Int(select[i])))
                #expect(left[i] == reference(input[i], key: base))
                #expect(right[i] == reference(input[i], key: base + 1))
            }
        }
        #expect(prg.hashPair(input).left != prg.hashPair(input).right)
    }
}
