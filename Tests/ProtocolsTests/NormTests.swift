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

    @Test(
        "LayerNorm and RMSNorm, SIGMA's order and certified: secure equals cleartext, close to float, constant rows too",
        arguments: [64, 96])
    func norms(k: Int) throws {
        var values = TestValues(seed: UInt64(k))
        var reals = (0..<(3 * k)).map { _ in Double(Int64(values.next() % 40_000) - 20_000) / 4096 + 0.3 }
        reals += [Double](repeating: 1.75, count: k)  // a constant row: z = 0, the output is β
        reals += (0..<k).map { _ in Double(Int64(values.next() % 2_000_000) - 1_000_000) / 4096 }  // |x| up to 244
        let rows = reals.count / k
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
                try b.layerNorm(xs, rowLength: k, gamma: g, beta: bt, certified: true),
                try b.rmsNorm(xs, rowLength: k, gamma: g, certified: true),
            ]
        }
        #expect(runs.p0 == runs.p1)
        for i in 0..<4 {
            let secure = zip(runs.p0[i].values, runs.masks[i].values).map { ($0 &- $1) & ring.mask }
            #expect(secure == runs.clear[i].values, "variant \(i)")
        }
        #expect(runs.clear[2] != runs.clear[0], "the certified order truncates once: other roundings")
        for row in 0..<rows {
            let slice = Array(reals[(row * k)..<((row + 1) * k)])
            let mean = slice.reduce(0, +) / Double(k)
            let expected = floatLayerNorm(slice, gamma: gammaReals, beta: betaReals)
            let root = (slice.map { $0 * $0 }.reduce(0, +) / Double(k)).squareRoot()
            let expectedRMS = slice.indices.map { slice[$0] / root * gammaReals[$0] }
            let constant = slice.allSatisfy { $0 == mean }
            for (variant, reference) in [(0, expected), (2, expected), (1, expectedRMS), (3, expectedRMS)] {
                // LayerNorm of a constant row is β; otherwise the error scales with the output: the 13-bit float
                // form of Σz² (≤ 1/512 at a bucket's midpoint) and t = 1/σ rounded at scale f (half a unit of t, a
                // relative σ/2^{f+1}: 1.7 % for the row of σ ≈ 140), plus a few units of the truncations.
                let wanted = constant && variant % 2 == 0 ? betaReals : reference
                let centered = variant % 2 == 0 ? slice.map { $0 - mean } : slice
                let sigma = (centered.map { $0 * $0 }.reduce(0, +) / Double(k)).squareRoot()
                for column in 0..<k {
                    let got = ring.decode(runs.clear[variant].values[row * k + column])
                    let bound = 0.01 + (0.0025 + sigma / Double(1 << 13)) * abs(wanted[column])
                    #expect(
                        abs(got - wanted[column]) < bound,
                        "row \(row), column \(column), variant \(variant): \(got) vs \(wanted[column])")
                }
            }
        }
    }

    @Test(
        "the certified tail saves three rounds of LayerNorm and of RMSNorm (10 and 9 against 15 and 12) and reveals two n-bit words per element; per-row truncations take one round"
    )
    func certifiedRounds() throws {
        // 129 rows of 32: the per-element truncations are past the one-round limit (two rounds, as in a model),
        // the per-row ones within it.
        let (k, ring) = (32, ring)
        let x = (0..<(129 * k)).map { ring.encode(Double($0 % 7) - 2.5) }
        #expect(x.count > oneRoundTruncationLimit)
        let gamma = [UInt64](repeating: ring.encode(1), count: k)
        let beta = [UInt64](repeating: 0, count: k)
        func statistics(
            _ norm: @escaping @Sendable (any RingBackend, RingTensor, RingTensor, RingTensor) throws -> Void
        ) throws -> ChannelStatistics {
            let runs = try runEverywhere { b -> Int in
                let xs = try b.inputFromClient(x, shape: [x.count], ring: ring)
                let g = try b.inputFromServer(gamma, shape: [k], ring: ring)
                let bt = try b.inputFromServer(beta, shape: [k], ring: ring)
                try norm(b, xs, g, bt)
                return 0
            }
            return runs.p0Statistics
        }
        func rounds(_ norm: @escaping @Sendable (any RingBackend, RingTensor, RingTensor, RingTensor) throws -> Void)
            throws -> Int
        { try statistics(norm).rounds }
        let inputs = try rounds { _, _, _, _ in }
        // LayerNorm: the mean (faithful ARS: 3 rounds, GapARS: 1 — per row, so the carry comes from a DCF), Σz² (1),
        // 1/√ (5), then SIGMA's tail (6) or ours (3). RMSNorm: no mean.
        #expect(try rounds { b, x, g, bt in _ = try b.layerNorm(x, rowLength: k, gamma: g, beta: bt) } == inputs + 15)
        #expect(
            try rounds { b, x, g, bt in _ = try b.layerNorm(x, rowLength: k, gamma: g, beta: bt, certified: true) }
                == inputs + 10)
        #expect(try rounds { b, x, g, _ in _ = try b.rmsNorm(x, rowLength: k, gamma: g) } == inputs + 12)
        #expect(
            try rounds { b, x, g, _ in _ = try b.rmsNorm(x, rowLength: k, gamma: g, certified: true) } == inputs + 9)
        // Per element, the certified tail reveals z·t·γ and the output (n bits each) and the carry's masked bit:
        // z·γ is not revealed. Per row, a few n-bit values and the 1/√'s bits: under 64 bytes.
        let inputBytes = try statistics { _, _, _, _ in }.bytesSent
        let certifiedBytes =
            try statistics { b, x, g, bt in _ = try b.layerNorm(x, rowLength: k, gamma: g, beta: bt, certified: true) }
            .bytesSent - inputBytes
        let rows = x.count / k
        #expect(certifiedBytes <= (x.count * (2 * ring.bitwidth + 1) + 7) / 8 + 64 * rows)
        #expect(certifiedBytes > x.count * 2 * ring.bitwidth / 8)
    }
}
