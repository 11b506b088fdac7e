import FSS
import Foundation
import Protocols
import Ring
import Testing

@Suite("Rotary embeddings and score scaling")
struct AttentionTests {
    @Test("rotary: secure equals cleartext, within 2^−7 of float RoPE")
    func rotary() throws {
        let ring = Ring(bitwidth: 48, scale: 12)
        let (rows, heads, d) = (5, 2, 8)
        var values = TestValues(seed: 4)
        let reals = (0..<(rows * heads * d)).map { _ in Double(Int64(values.next() % 16384) - 8192) / 4096 }
        let x = reals.map(ring.encode)
        let runs = try runEverywhere { b -> RingTensor in
            try b.rotary(
                try b.inputFromClient(x, shape: [x.count], ring: ring), heads: heads, headDim: d, firstPosition: 3)
        }
        #expect(runs.partiesAgree)
        #expect(runs.secure == runs.clear.values)
        for row in 0..<rows {
            for head in 0..<heads {
                for j in 0..<(d / 2) {
                    let start = row * heads * d + head * d
                    let angle = Double(3 + row) * pow(10_000, -2 * Double(j) / Double(d))
                    let (a, b) = (reals[start + j], reals[start + j + d / 2])
                    let expected = [a * cos(angle) - b * sin(angle), b * cos(angle) + a * sin(angle)]
                    let got = [
                        ring.decode(runs.clear.values[start + j]), ring.decode(runs.clear.values[start + j + d / 2]),
                    ]
                    #expect(zip(got, expected).allSatisfy { abs($0 - $1) < 1.0 / 128 }, "\(got) vs \(expected)")
                }
            }
        }
    }

    @Test("score scaling by 1/√d, folded (d = 64) and multiplied (d = 128)", arguments: [64, 128])
    func scaling(d: Int) throws {
        let ring = Ring(bitwidth: 50, scale: 12)
        let reals: [Double] = [0, 1, -1, 8, -8, 3.25, 100, -100]
        let x = reals.map(Ring(bitwidth: 50, scale: 24).encode)  // a product's values, at scale 2f
        let runs = try runEverywhere { b -> RingTensor in
            try b.scaleScores(try b.inputFromClient(x, shape: [x.count], ring: ring), headDim: d)
        }
        #expect(runs.secure == runs.clear.values)
        for (real, word) in zip(reals, runs.clear.values) {
            #expect(abs(ring.decode(word) - real / Double(d).squareRoot()) < 0.01, "\(real)")
        }
    }
}
