import Testing

@testable import Ring

@Suite("Fixed point and bit packing")
struct RingTests {
    @Test("encoding rounds to nearest, keeps negative values, clamps, and decodes back", arguments: [16, 37, 50, 64])
    func encoding(bits: Int) {
        let ring = Ring(bitwidth: bits, scale: 12)
        #expect(ring.encode(0) == 0)
        #expect(ring.encode(1) == 4096)
        #expect(ring.encode(-1) == ring.mask - 4095)  // two's complement of 4096, not a wrapped cast
        #expect(ring.decode(ring.encode(-1)) == -1)
        #expect(ring.encode(1.0 / 8192) == 0)  // ties to even
        #expect(ring.encode(3.0 / 8192) == 2)
        #expect(ring.encode(-0.4 / 4096) == 0)
        #expect(ring.encode(.infinity) == ring.word(ring.signedRange.upperBound))
        #expect(ring.encode(-.infinity) == ring.word(ring.signedRange.lowerBound))
        #expect(ring.encode(.nan) == 0)
        for r in stride(from: -3.0, through: 3.0, by: 0.37) {
            #expect(abs(ring.decode(ring.encode(r)) - r) <= 0.5 / 4096)
        }
        #expect(ring.signed(ring.mask) == -1)
    }

    @Test("tensors reduce, add, subtract and widen with sign extension")
    func tensors() {
        let narrow = Ring(bitwidth: 20, scale: 12)
        let wide = Ring(bitwidth: 50, scale: 12)
        let a = RingTensor(encoding: [1.5, -2.25, 0], shape: [3], ring: narrow)
        let b = RingTensor(encoding: [0.5, 0.25, -1], shape: [3], ring: narrow)
        #expect((a + b).decoded() == [2, -2, -1])
        #expect((a - b).decoded() == [1, -2.5, 1])
        #expect(a.converted(to: wide).decoded() == [1.5, -2.25, 0])
        #expect(RingTensor(ring: narrow, shape: [1], values: [1 << 21 | 5]).values == [5])
    }

    @Test("packing uses exactly ⌈count·n/8⌉ bytes and round-trips every width", arguments: 1...64)
    func packing(bits: Int) {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15 &* UInt64(bits)
        let mask: UInt64 = bits == 64 ? ~0 : (1 << UInt64(bits)) - 1
        for count in [0, 1, 2, 7, 8, 9, 63, 64, 65, 1000] {
            let values = (0..<count).map { i -> UInt64 in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return i % 5 == 0 ? mask : (i % 7 == 0 ? 0 : state & mask)
            }
            let packed = BitPacking.pack(values, bits: bits)
            #expect(packed.count == (count * bits + 7) / 8)
            // The wire format, bit by bit: value i at bits [i·n, (i+1)·n) of a little-endian bit stream.
            var reference = [UInt8](repeating: 0, count: (count * bits + 7) / 8)
            for (i, value) in values.enumerated() {
                for b in 0..<bits where (value >> UInt64(b)) & 1 == 1 {
                    reference[(i * bits + b) / 8] |= 1 << UInt8((i * bits + b) % 8)
                }
            }
            #expect(packed == reference)
            #expect(BitPacking.unpack(packed[...], count: count, bits: bits) == values)
            if bits == 1 {
                // Bits kept as bytes pack to the same wire format, and unpack back; a wrong length is refused.
                let bytes = values.map { UInt8($0) }
                #expect(BitPacking.packBits(bytes) == packed)
                #expect(packed.withUnsafeBytes { BitPacking.unpackBits($0, count: count) } == bytes)
                #expect(packed.withUnsafeBytes { BitPacking.unpackBits($0, count: count + 8) } == nil)
            }
        }
        // One of K candidates per element, read in place (the tail values too), against plain indexing.
        for (candidates, count) in [(2, 1), (2, 37), (4, 64), (8, 101)] {
            let values = (0..<(candidates * count)).map { i -> UInt64 in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return state & mask
            }
            let choices = (0..<count).map { i in UInt8((i * 7 + bits) % candidates) }
            let packed = BitPacking.pack(values, bits: bits)
            let chosen = packed.withUnsafeBytes {
                BitPacking.select($0, candidates: candidates, bits: bits, choices: choices)
            }
            #expect(chosen == (0..<count).map { values[$0 * candidates + Int(choices[$0])] })
            // A choice past the candidates, or a buffer of another size, is refused.
            #expect(
                packed.withUnsafeBytes {
                    BitPacking.select($0, candidates: candidates, bits: bits, choices: [UInt8(candidates)])
                } == nil)
            #expect(
                packed.dropLast().withUnsafeBytes {
                    BitPacking.select($0, candidates: candidates, bits: bits, choices: choices)
                } == nil)
        }
        // Higher bits of an input are ignored; a wrong length is refused.
        if bits < 64 {
            #expect(BitPacking.unpack(BitPacking.pack([~0], bits: bits)[...], count: 1, bits: bits) == [mask])
        }
        #expect(BitPacking.unpack([0, 0, 0][...], count: 5, bits: bits) == nil || (5 * bits + 7) / 8 == 3)
    }
}

@Suite("Ring matrix products")
struct MatrixTests {
    /// The textbook triple loop, the oracle.
    func naive(_ a: [UInt64], _ b: [UInt64], m: Int, k: Int, n: Int) -> [UInt64] {
        var c = [UInt64](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { for kk in 0..<k { c[i * n + j] &+= a[i * k + kk] &* b[kk * n + j] } } }
        return c
    }

    @Test(
        "every supported kernel equals the triple loop, on odd shapes, batched, on one and two threads",
        arguments: MatmulKernel.allCases.filter(\.isSupported))
    func kernels(kernel: MatmulKernel) {
        var state: UInt64 = 12345
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state
        }
        // k = 0, and k past 1536 where the kernels walk 256-term blocks (several, and a ragged last block), and past
        // 4096 where each thread takes one block of rows.
        for (m, k, n) in [
            (1, 1, 1), (3, 5, 7), (4, 8, 8), (9, 17, 33), (13, 64, 40), (128, 100, 96), (2, 0, 3), (5, 256, 9),
            (6, 257, 16), (9, 700, 41), (7, 1537, 40), (4, 3072, 33), (5, 4097, 9), (3, 4400, 17),
        ] {
            let batch = 2
            let a = (0..<(batch * m * k)).map { _ in next() }
            let b = (0..<(batch * k * n)).map { _ in next() }
            var expected: [UInt64] = []
            for p in 0..<batch {
                expected += naive(
                    Array(a[(p * m * k)..<((p + 1) * m * k)]), Array(b[(p * k * n)..<((p + 1) * k * n)]), m: m, k: k,
                    n: n)
            }
            for threads in [1, 2] {
                let c = RingMatrix.multiply(a, b, m: m, k: k, n: n, batch: batch, kernel: kernel, threads: threads)
                #expect(c == expected, "\(kernel) \(m)×\(k)×\(n) on \(threads) threads")
            }
        }
    }

    @Test("A·Bᵀ with B stored transposed equals the triple loop on the transposition, on one and two threads")
    func transposedOperand() {
        var state: UInt64 = 777
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state
        }
        // Column counts around the 4-column step and the thread split; m = 1 is a tied output layer's last row.
        for (m, k, n) in [(1, 1, 1), (1, 7, 3), (3, 5, 4), (9, 17, 33), (1, 768, 1029), (12, 64, 4099), (2, 0, 5)] {
            let a = (0..<(m * k)).map { _ in next() }
            let stored = (0..<(n * k)).map { _ in next() }  // n × k
            let b = (0..<(k * n)).map { index in stored[(index % n) * k + index / n] }  // its k × n transposition
            for threads in [1, 2] {
                #expect(
                    RingMatrix.multiply(a, transposed: stored, m: m, k: k, n: n, threads: threads)
                        == naive(a, b, m: m, k: k, n: n), "\(m)×\(k)×\(n) on \(threads) threads")
            }
        }
    }
}
