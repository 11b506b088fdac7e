import FSS
import Foundation
import Protocols
import Ring
import Testing

@Suite("Softmax")
struct SoftmaxTests {
    let ring = Ring(bitwidth: 50, scale: 12)

    /// Scores in [−12, 12) at scale 12, with ties, an all-equal row and a row of one large and many small values.
    func scores(_ lengths: [Int], seed: UInt64) -> [UInt64] {
        var values = TestValues(seed: seed)
        var out: [UInt64] = []
        for (row, length) in lengths.enumerated() {
            for j in 0..<length {
                switch row % 4 {
                case 0: out.append(ring.word(-3 * 4096))  // all equal
                case 1: out.append(ring.word(Int64(j % 3) * 2048))  // ties
                case 2: out.append(ring.word(j == 0 ? 40 * 4096 : -40 * 4096))  // one winner, the rest beyond the clip
                default: out.append(ring.word(Int64(values.next() % (24 * 4096)) - 12 * 4096))
                }
            }
        }
        return out
    }

    func floatSoftmax(_ x: [Double]) -> [Double] {
        let top = x.max()!
        let e = x.map { Foundation.exp($0 - top) }
        let sum = e.reduce(0, +)
        return e.map { $0 / sum }
    }

    @Test(
        "secure softmax equals cleartext on rows of many lengths, and is close to float; exact and coarse maximum",
        arguments: [
            [1, 2, 3, 5], [127, 128, 129, 64], [1024],
        ], [false, true])
    func rows(lengths: [Int], coarseMaximum: Bool) throws {
        let x = scores(lengths, seed: UInt64(lengths.count))
        let scoreRing = ring
        let runs = try runEverywhere { b -> RingTensor in
            try b.softmax(
                try b.inputFromClient(x, shape: [x.count], ring: scoreRing), rowLengths: lengths,
                coarseMaximum: coarseMaximum)
        }
        #expect(runs.partiesAgree)
        #expect(runs.secure == runs.clear.values)
        var start = 0
        for length in lengths {
            let row = Array(runs.clear.values[start..<(start + length)]).map(ring.decode)
            let expected = floatSoftmax(Array(x[start..<(start + length)]).map(ring.decode))
            // The inverse table reads the row sum S rounded to 6 fractional bits: 1/S is off by at most
            // 1/(128S − 1) ≤ 1/127 relative; e^{−d} and the final truncation add at most 2 units per element.
            let unit = 1.0 / 4096
            for (secure, exact) in zip(row, expected) {
                #expect(abs(secure - exact) <= exact / 127 + 2 * unit, "row of \(length): \(secure) vs \(exact)")
            }
            let sum = row.reduce(0, +)
            #expect(abs(sum - 1) <= 1.0 / 127 + 2 * unit * Double(length), "row of \(length) sums to \(sum)")
            start += length
        }
    }

    @Test("causal softmax equals full softmax with −∞ above the diagonal, bit for bit")
    func causal() throws {
        let k = 9
        var values = TestValues(seed: 5)
        let full = (0..<(2 * k * k)).map { _ in ring.word(Int64(values.next() % (16 * 4096)) - 8 * 4096) }
        var triangle: [UInt64] = []
        var masked = full
        for matrix in 0..<2 {
            for row in 0..<k {
                for column in 0..<k {
                    let index = matrix * k * k + row * k + column
                    if column <= row { triangle.append(full[index]) } else { masked[index] = ring.word(-(1 << 30)) }
                }
            }
        }
        let scoreRing = ring
        let packed = triangle
        let withMask = masked
        let causalRuns = try runEverywhere { b -> RingTensor in
            try b.softmax(try b.inputFromClient(packed, shape: [packed.count], ring: scoreRing), rows: k, causal: true)
        }
        let maskedRuns = try runEverywhere { b -> RingTensor in
            try b.softmax(
                try b.inputFromClient(withMask, shape: [withMask.count], ring: scoreRing), rows: k, causal: false)
        }
        #expect(causalRuns.secure == causalRuns.clear.values)
        #expect(causalRuns.clear.values == maskedRuns.clear.values)
        #expect(maskedRuns.secure == maskedRuns.clear.values)
    }

    @Test(
        "softmax on a certified width (inputs below 2^b) equals the cleartext and the reference width, bit for bit",
        arguments: [17, 20, 10])
    func certifiedWidth(magnitudeBits b: Int) throws {
        #expect(Cleartext().softmaxEffectiveBits(ring: ring, magnitudeBits: b) == max(b + 2, 18))
        #expect(Cleartext().softmaxEffectiveBits(ring: ring, magnitudeBits: nil) == 40)
        let largest = (Int64(1) << Int64(b)) - 1
        var values = TestValues(seed: UInt64(b))
        let lengths = [1, 2, 7, 128, 33]
        var x: [UInt64] = []
        for (row, length) in lengths.enumerated() {
            for j in 0..<length {
                let value: Int64
                switch row % 3 {
                case 0: value = j == 0 ? largest : -largest  // the widest difference, 2^{b+1} − 2
                case 1: value = -largest + Int64(j)
                default: value = Int64(values.next() % UInt64(2 * largest + 1)) - largest
                }
                x.append(ring.word(value))
            }
        }
        let scoreRing = ring
        let input = x
        let certified = try runEverywhere { b2 -> RingTensor in
            try b2.softmax(
                try b2.inputFromClient(input, shape: [input.count], ring: scoreRing), rowLengths: lengths,
                magnitudeBits: b)
        }
        let reference = try Cleartext().softmax(
            RingTensor(ring: ring, shape: [x.count], values: x), rowLengths: lengths)
        #expect(certified.partiesAgree)
        #expect(certified.secure == certified.clear.values)
        #expect(certified.clear.values == reference.values)
        // Certified b gives shorter comparison keys than the reference's n − f + 2.
        let uncertified = try runEverywhere { b2 -> RingTensor in
            try b2.softmax(
                try b2.inputFromClient(input, shape: [input.count], ring: scoreRing), rowLengths: lengths)
        }
        #expect(certified.keyBytes < uncertified.keyBytes)
        // The coarse maximum: the same agreement.
        let coarse = try runEverywhere { b2 -> RingTensor in
            try b2.softmax(
                try b2.inputFromClient(input, shape: [input.count], ring: scoreRing), rowLengths: lengths,
                magnitudeBits: b, coarseMaximum: true)
        }
        #expect(coarse.partiesAgree)
        #expect(coarse.secure == coarse.clear.values)
    }

    @Test("the coarse maximum takes a fifth or more fewer key bytes than the exact one at BERT's score width")
    func coarseMaximumKeys() throws {
        // 40 rows of 128 scores (past the one-round truncation limit, as the scores of a model are), below 2^17.
        let lengths = [Int](repeating: 128, count: 40)
        var values = TestValues(seed: 17)
        let x = (0..<5120).map { _ in ring.word(Int64(values.next() % (1 << 17)) - (1 << 16)) }
        #expect(x.count > oneRoundTruncationLimit)
        let scoreRing = ring
        func keyBytes(coarse: Bool) throws -> Int {
            let runs = try runEverywhere { b -> RingTensor in
                try b.softmax(
                    try b.inputFromClient(x, shape: [x.count], ring: scoreRing), rowLengths: lengths,
                    magnitudeBits: 17, coarseMaximum: coarse)
            }
            #expect(runs.secure == runs.clear.values)
            return runs.keyBytes
        }
        // Two comparisons per score 8 bits shorter (16 B per bit) against one 8-bit truncation.
        #expect(Double(try keyBytes(coarse: true)) < 0.8 * Double(try keyBytes(coarse: false)))
    }

    @Test("cleartext e^{−x} over every 16-bit input is within 3 units of float64")
    func negativeExpAccuracy() throws {
        let inputs = (0..<65536).map { UInt64($0) }
        let e = try Cleartext().negativeExp(RingTensor(ring: ring, shape: [inputs.count], values: inputs), output: ring)
        let errors = inputs.indices.map {
            abs(ring.decode(e.values[$0]) - Foundation.exp(-Double(inputs[$0]) / 4096)) * 4096
        }
        #expect(errors.max()! <= 3, "max \(errors.max()!)")
    }
}
