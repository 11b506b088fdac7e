import FSS
import Foundation
import Protocols
import Ring
import Testing

@Suite("LayerNorm, RMSNorm and the reciprocal square root")
struct NormTests {
    let ring = Ring(bitwidth: 50, scale: 12)

    @Test(
        "reciprocal square root: secure equals cleartext from 1 to 2^48, and is within 0.3 % of float",
        arguments: [37, 50])
    func reciprocalSqrt(bits: Int) throws {
        let ring = Ring(bitwidth: bits, scale: 12)
        var values = TestValues(seed: 9)
        var v: [UInt64] = [1, 2, 3, 255, 256, 257, (1 << UInt64(bits - 1)) - 1, 1 << UInt64(bits - 2)]
        for e in 0..<(bits - 1) {
            v.append(1 << UInt64(e)); v.append((1 << UInt64(e)) | (values.next() & ((1 << UInt64(e)) - 1)))
        }
        let table = ReciprocalSqrtTable(count: 768, inputScale: 24, outputScale: 12)
        let input = v
        let runs = try runEverywhere { b -> RingTensor in
            try b.reciprocalSqrt(try b.inputFromClient(input, shape: [input.count], ring: ring), table: table)
        }
        #expect(runs.partiesAgree)
        #expect(runs.secure == runs.clear.values)
        for (value, out) in zip(v, runs.clear.values) where value > 1 << 20 {
            let exact = 4096 * (768 * Double(1 << 24) / Double(value)).squareRoot()
            #expect(abs(Double(out) - exact) <= exact * 0.0031 + 1, "v=\(value): \(out) vs \(exact)")
        }
    }

    func floatLayerNorm(_ x: [Double], gamma: [Double], beta: [Double]) -> [Double] {
        let mean = x.reduce(0, +) / Double(x.count)
        let variance = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(x.count)
        return x.indices.map { (x[$0] - mean) / variance.squareRoot() * gamma[$0] + beta[$0] }
    }

    @Test("LayerNorm and RMSNorm: secure equals cleartext, close to float", arguments: [64, 96])
    func norms(k: Int) throws {
        let rows = 3
        var values = TestValues(seed: UInt64(k))
        let reals = (0..<(rows * k)).map { _ in Double(Int64(values.next() % 40_000) - 20_000) / 4096 + 0.3 }
        let gammaReals = (0..<k).map { _ in 0.5 + Double(values.next() % 4096) / 4096 }
        let betaReals = (0..<k).map { _ in Double(Int64(values.next() % 4096) - 2048) / 4096 }
        let ring = self.ring
        let doubled = Ring(bitwidth: 50, scale: 24)
        let x = reals.map(ring.encode)
        let gamma = gammaReals.map(ring.encode)
        let beta = betaReals.map(doubled.encode)
        let runs = try runEverywhere { b -> [RingTensor] in
            let xs = try b.inputFromClient(x, shape: [x.count], ring: ring)
            let g = try b.inputFromServer(gamma, shape: [k], ring: ring)
            let bt = try b.inputFromServer(beta, shape: [k], ring: ring)
            return [
                try b.layerNorm(xs, rowLength: k, gamma: g, beta: bt), try b.rmsNorm(xs, rowLength: k, gamma: g),
                try b.layerNorm(xs, rowLength: k, gamma: g, beta: bt, gapMean: true),
            ]
        }
        #expect(runs.p0 == runs.p1)
        #expect(runs.clear[2] == runs.clear[0])  // the mean's GapARS is exact here: same result
        for i in 0..<3 {
            let secure = zip(runs.p0[i].values, runs.masks[i].values).map { ($0 &- $1) & ring.mask }
            #expect(secure == runs.clear[i].values)
        }
        for row in 0..<rows {
            let slice = Array(reals[(row * k)..<((row + 1) * k)])
            let expected = floatLayerNorm(slice, gamma: gammaReals, beta: betaReals)
            let got = (0..<k).map { ring.decode(runs.clear[0].values[row * k + $0]) }
            let worst = zip(got, expected).map { abs($0 - $1) }.max()!
            #expect(worst < 0.02, "LayerNorm row \(row): max error \(worst)")
        }
    }
}
