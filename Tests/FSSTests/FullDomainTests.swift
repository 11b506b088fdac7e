import CSigmaKernels
import Testing

@testable import FSS

@Suite("Full-domain DPF evaluation and the LUT inner product")
struct FullDomainTests {
    @Test("full-domain evaluation equals point-by-point evaluation", arguments: [1, 5, 7, 8, 9, 12, 16])
    func matchesPointwise(bits: Int) {
        var random = SecureRandom(insecureTestSeed: 300 + UInt64(bits))
        let domain = 1 << bits
        // 37 keys: the vector expansion's four-node steps, each level's key boundaries and a tail of one.
        let alphas = random.values(35, bits: bits) + [0, UInt64(domain - 1)]
        let (k0, k1) = DPF.generate(alphas: alphas, inputBits: bits, random: &random)
        let everyPoint = alphas.flatMap { _ in (0..<UInt64(domain)).map { $0 } }
        for keys in [k0, k1] {
            // The first difference, not the arrays: describing two unequal arrays of millions of bits takes minutes.
            let full = keys.evaluateFullDomain()
            let pointwise = keys.evaluate(at: everyPoint, pointsPerKey: domain)
            #expect(full.count == pointwise.count)
            let first = full.indices.first { $0 >= pointwise.count || full[$0] != pointwise[$0] }
            #expect(first == nil, "key \((first ?? 0) / domain), point \((first ?? 0) % domain)")
        }
        let sum = reconstruct(k0.evaluateFullDomain(), k1.evaluateFullDomain())
        for (k, alpha) in alphas.enumerated() {
            #expect(
                sum[(k * domain)..<((k + 1) * domain)].enumerated().allSatisfy {
                    $0.element == ($0.offset == Int(alpha) ? 1 : 0)
                })
        }
    }

    @Test("inner products reconstruct ±T[x] with the sign in the counts", arguments: [3, 7, 8, 10, 13, 16])
    func lookupTable(bits: Int) {
        var random = SecureRandom(insecureTestSeed: 400 + UInt64(bits))
        let domain = UInt64(1) << UInt64(bits)
        let table = random.values(Int(domain), bits: 50)
        let n = 200
        let masks = random.values(n, bits: bits)
        let inputs = random.values(n, bits: bits - 1) + [0, domain - 1]
        let allMasks = masks + [5 % domain, 0]
        let (k0, k1) = DPF.generate(alphas: allMasks, inputBits: bits, random: &random)
        let masked = zip(inputs, allMasks).map { ($0 &+ $1) & (domain - 1) }
        let (c0, d0) = k0.fullDomainInnerProduct(table: table, offsets: masked)
        let (c1, d1) = k1.fullDomainInnerProduct(table: table, offsets: masked, threads: 2)
        for k in inputs.indices {
            let sign = (c0[k] &- c1[k]) & 3  // 1 when P0 holds the point's bit, 3 when P1 does
            #expect(sign == 1 || sign == 3)
            let value = sign == 1 ? d0[k] &- d1[k] : d1[k] &- d0[k]
            #expect(value == table[Int(inputs[k])], "b=\(bits) x=\(inputs[k]) r=\(allMasks[k])")
        }
    }
    @Test("the bit-vector inner product is the same on AVX-512, AVX2 and scalar code, with 64- and 16-bit entries")
    func bitsDotPaths() {
        var random = SecureRandom(insecureTestSeed: 41)
        for nbits in [64, 128, 256, 1_024, 8_192] {
            let table = random.values(nbits, bits: 64)
            // Dense, sparse, empty and full bit vectors.
            let patterns: [[UInt64]] = [
                random.values(nbits / 64, bits: 64),
                (0..<(nbits / 64)).map { _ in random.next(bits: 64) & random.next(bits: 64) & random.next(bits: 64) },
                [UInt64](repeating: 0, count: nbits / 64), [UInt64](repeating: ~0, count: nbits / 64),
            ]
            for words in patterns {
                var expected: UInt64 = 0
                for i in 0..<nbits where (words[i / 64] >> UInt64(i % 64)) & 1 == 1 { expected &+= table[i] }
                for width: UInt32 in [512, 256, 0] {
                    let dot = words.withUnsafeBytes { sigma_bits_dot_with(width, $0.baseAddress!, table, nbits) }
                    #expect(dot == expected, "\(nbits) bits on \(width)-bit vectors")
                }
                // 16-bit entries at the largest the lanes allow (nbits/32 of them per lane, below 2^16), so an
                // overflowing lane or a lost carry in the horizontal sum would show.
                let largest = UInt64((1 << 16) / (nbits / 32)) - 1
                let small = table.map { UInt16($0 % (largest + 1)) }
                let ones = [UInt64](repeating: ~0, count: nbits / 64)
                for pattern in [words, ones] {
                    var exact: UInt64 = 0
                    for i in 0..<nbits where (pattern[i / 64] >> UInt64(i % 64)) & 1 == 1 { exact += UInt64(small[i]) }
                    for width: UInt32 in [512, 0] {
                        let dot = pattern.withUnsafeBytes {
                            sigma_bits_dot16_with(width, $0.baseAddress!, small, nbits)
                        }
                        #expect(dot == exact, "\(nbits) bits, 16-bit entries, on \(width)-bit vectors")
                    }
                }
                let full = [UInt16](repeating: UInt16(largest), count: nbits)
                let dot = ones.withUnsafeBytes { sigma_bits_dot16_with(512, $0.baseAddress!, full, nbits) }
                #expect(dot == largest * UInt64(nbits), "every lane at its largest sum")
            }
        }
    }
}

@Suite("DCF")
struct DCFTests {
    @Test("every input of every key, bitwidths 1...8", arguments: 1...8)
    func exhaustive(bits: Int) {
        var random = SecureRandom(insecureTestSeed: 500 + UInt64(bits))
        let domain = UInt64(1) << UInt64(bits)
        let alphas = Array(0..<domain)
        let payloads = random.values(alphas.count, bits: 20)
        let (k0, k1) = DCF.generate(
            alphas: alphas, payloads: payloads, inputBits: bits, payloadBits: 20, random: &random)
        let points = alphas.flatMap { _ in Array(0..<domain) }
        let y0 = k0.evaluate(at: points, pointsPerKey: Int(domain))
        let y1 = k1.evaluate(at: points, pointsPerKey: Int(domain))
        for j in points.indices {
            let k = j / Int(domain)
            let expected = points[j] < alphas[k] ? payloads[k] : 0
            #expect((y0[j] &+ y1[j]) & 0xFFFFF == expected, "b=\(bits) α=\(alphas[k]) x=\(points[j])")
        }
    }

    @Test(
        "random keys at wide bitwidths and 64-bit payloads",
        arguments: [(16, 64), (37, 37), (50, 50), (64, 64), (64, 1)])
    func wide(bits: Int, payloadBits: Int) {
        var random = SecureRandom(insecureTestSeed: 600 + UInt64(bits))
        let mask: UInt64 = bits == 64 ? ~0 : (1 << UInt64(bits)) - 1
        let payloadMask: UInt64 = payloadBits == 64 ? ~0 : (1 << UInt64(payloadBits)) - 1
        let alphas = random.values(100, bits: bits) + [0, mask]
        let payloads = random.values(alphas.count, bits: payloadBits)
        let (k0, k1) = DCF.generate(
            alphas: alphas, payloads: payloads, inputBits: bits, payloadBits: payloadBits,
            random: &random)
        let points: [UInt64] = alphas.flatMap { (a: UInt64) -> [UInt64] in
            [a, (a &- 1) & mask, (a &+ 1) & mask, 0, mask]
        }
        let y0 = k0.evaluate(at: points, pointsPerKey: 5)
        let y1 = k1.evaluate(at: points, pointsPerKey: 5)
        for j in points.indices {
            let expected = points[j] < alphas[j / 5] ? payloads[j / 5] : 0
            #expect((y0[j] &+ y1[j]) & payloadMask == expected)
        }
    }
}

@Suite("Key encoding")
struct KeyEncodingTests {
    @Test(
        "a batch of N b-bit DPF keys takes N(16(b−7) + 16) bytes plus b−8 bits per key, and one 16-byte root seed",
        arguments: [1, 3, 4, 7, 8, 9, 16, 17, 38, 64])
    func sizes(bits: Int) {
        for count in [1, 8, 64, 1000] {
            let perKey = 16 * (bits - 7) + 16
            let expected =
                bits <= 7
                ? KeyHeader.size + count * max(1, (1 << bits) / 8)
                : KeyHeader.size + 16 + count * perKey + (bits - 8) * ((count + 7) / 8) + DPFLayout.padding
            #expect(DPFKeys.encodedSize(inputBits: bits, count: count) == expected, "b=\(bits) N=\(count)")
            var random = SecureRandom(insecureTestSeed: 1)
            let (k0, _) = DPF.generate(alphas: [UInt64](repeating: 1, count: count), inputBits: bits, random: &random)
            #expect(k0.encoded.count == expected)
            if bits > 7 && count % 8 == 0 {
                // 16 B per key below the reference's 16(b−7) + 32 + ⌈(b−7)/8⌉, beyond the batch's 56 bytes.
                #expect(
                    expected - KeyHeader.size - 16 - DPFLayout.padding
                        <= count * (16 * (bits - 7) + 32 + (bits - 7 + 7) / 8 - 16))
            }
        }
    }

    @Test("DPF and DCF keys round-trip through their encoding")
    func roundTrip() throws {
        var random = SecureRandom(insecureTestSeed: 2)
        let alphas = random.values(33, bits: 20)
        let (k0, k1) = DPF.generate(alphas: alphas, inputBits: 20, random: &random)
        let decoded = try DPFKeys(decoding: k1.encoded)
        #expect(decoded.party == .p1 && decoded.inputBits == 20 && decoded.count == 33)
        let points = random.values(33, bits: 20)
        #expect(
            reconstruct(k0.lessThan(at: points), decoded.lessThan(at: points))
                == zip(points, alphas).map { $0 < $1 ? 1 : 0 })
        let (d0, _) = DCF.generate(alphas: alphas, payloads: alphas, inputBits: 20, payloadBits: 40, random: &random)
        let dcf = try DCFKeys(decoding: d0.encoded)
        #expect(dcf.party == .p0 && dcf.payloadBits == 40 && dcf.evaluate(at: points) == d0.evaluate(at: points))
    }

    @Test("every truncation and every single flipped byte is rejected with an error")
    func corruption() {
        var random = SecureRandom(insecureTestSeed: 3)
        let (dpf, _) = DPF.generate(alphas: [1, 2, 3], inputBits: 12, random: &random)
        let (table, _) = DPF.generate(alphas: [1, 2, 3], inputBits: 5, random: &random)
        let (dcf, _) = DCF.generate(alphas: [1, 2], payloads: [7, 8], inputBits: 9, payloadBits: 16, random: &random)
        let encodings: [(String, [UInt8], ([UInt8]) throws -> Void)] = [
            ("DPF", dpf.encoded, { _ = try DPFKeys(decoding: $0) }),
            ("DPF table", table.encoded, { _ = try DPFKeys(decoding: $0) }),
            ("DCF", dcf.encoded, { _ = try DCFKeys(decoding: $0) }),
        ]
        for (name, bytes, decode) in encodings {
            #expect(throws: Never.self) { try decode(bytes) }
            for length in 0..<bytes.count {
                #expect(throws: KeyDecodingError.self, "\(name) cut to \(length)") {
                    try decode(Array(bytes[0..<length]))
                }
            }
            #expect(throws: KeyDecodingError.trailingBytes(1)) { try decode(bytes + [0]) }
            for position in bytes.indices {
                var corrupted = bytes
                corrupted[position] ^= 0x10
                #expect(throws: KeyDecodingError.self, "\(name) byte \(position)") { try decode(corrupted) }
            }
        }
        // Kinds are not interchangeable, and an absurd count is refused without allocating.
        #expect(throws: KeyDecodingError.wrongKind(expected: 2, found: 1)) { try DCFKeys(decoding: dpf.encoded) }
        var huge = dpf.encoded
        for i in 16..<24 { huge[i] = 0xFF }
        #expect(throws: KeyDecodingError.self) { try DPFKeys(decoding: huge) }
    }
}
