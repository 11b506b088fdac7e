import FSS
import Protocols
import Ring
import Testing

@Suite("GeLU and SiLU")
struct ActivationTests {
    /// Inputs around every boundary of the protocol: 0, ±1, the clip bound S and its neighbours, the table's
    /// last entry, and the largest magnitudes the m effective bits (or the certified 2^b) allow.
    func edgeInputs(_ table: ActivationTable, ring: Ring, magnitudeBits: Int?) -> [UInt64] {
        let s = Int64((1 << table.indexBits) - 1) << Int64(table.scale - 6)
        let m = table.inputBits(ring: ring, magnitudeBits: magnitudeBits)
        let largest = magnitudeBits.map { (Int64(1) << Int64($0)) - 1 } ?? (Int64(1) << Int64(m - 1)) - s - 1
        let values: [Int64] = [
            0, 1, -1, 63, 64, -64, -65, s, s - 1, s + 1, -s, -s - 1, -s + 1, largest, -largest, largest - 64,
            -largest + 64, 4096, -4096,
        ]
        return values.filter { $0.magnitude <= largest.magnitude }.map(ring.word)
    }

    @Test(
        "secure GeLU and SiLU equal the cleartext fixed point bit for bit, at the reference's width and at certified ones",
        arguments: [
            ("GeLU", 50, nil), ("GeLU", 37, nil), ("SiLU", 48, nil), ("GeLU", 50, 17), ("GeLU", 50, 10),
            ("SiLU", 48, 18), ("SiLU", 48, 16),
        ] as [(String, Int, Int?)])
    func secureEqualsCleartext(name: String, bits: Int, magnitudeBits: Int?) throws {
        let ring = Ring(bitwidth: bits, scale: 12)
        let table = name == "GeLU" ? ActivationTable.gelu() : ActivationTable.silu()
        let m = table.inputBits(ring: ring, magnitudeBits: magnitudeBits)
        var values = TestValues(seed: UInt64(bits + (magnitudeBits ?? 0)))
        // Mostly the interesting range (|x| < 32), some far out.
        let x =
            values.signed(400, magnitudeBits: min(17, magnitudeBits ?? 17), ring: ring)
            + values.signed(100, magnitudeBits: magnitudeBits ?? bits - 14, ring: ring)
            + edgeInputs(table, ring: ring, magnitudeBits: magnitudeBits)
        let runs = try runEverywhere { b -> RingTensor in
            try b.activation(try b.inputFromClient(x, shape: [x.count], ring: ring), table, inputBits: m)
        }
        #expect(runs.partiesAgree)
        #expect(runs.secure == runs.clear.values, "\(name) n=\(bits) b=\(magnitudeBits ?? 0) m=\(m)")
        #expect(runs.p0Statistics.rounds == 1 + 4, "the input, then four rounds")
    }

    @Test("the certified width: m = max(b, c + f − 6) + 2, never above n − f + 1, and it is needed")
    func certifiedWidth() throws {
        let ring = Ring(bitwidth: 50, scale: 12)
        let gelu = ActivationTable.gelu()
        #expect(gelu.inputBits(ring: ring, magnitudeBits: nil) == 39)
        #expect(gelu.inputBits(ring: ring, magnitudeBits: 17) == 19)
        #expect(gelu.inputBits(ring: ring, magnitudeBits: 10) == 16, "x ± S must fit: S < 2^14")
        #expect(gelu.inputBits(ring: ring, magnitudeBits: 40) == 39)
        #expect(ActivationTable.silu().inputBits(ring: ring, magnitudeBits: 10) == 18)
        // One bit too few for b = 17: x ± S wraps for |x| near 2^17, the range test fails and the index (56 here,
        // where δ ≠ 0) is taken as inside the clip, so the secure result leaves the cleartext.
        let x = [(Int64(1) << 17) - 12800, -(Int64(1) << 17) + 12800, 5000].map(ring.word)
        let runs = try runEverywhere { b -> RingTensor in
            try b.activation(try b.inputFromClient(x, shape: [x.count], ring: ring), gelu, inputBits: 18)
        }
        #expect(runs.secure[2] == runs.clear.values[2])
        #expect(runs.secure[0..<2] != runs.clear.values[0..<2])
    }

    /// max |fixed − float| over every 16-bit input x (|x| < 8 at f = 12), in units of 2^−12.
    func worstError(_ table: ActivationTable) -> (max: Double, mean: Double) {
        let ring = Ring(bitwidth: 50, scale: 12)
        let inputs = (-32768..<32768).map { ring.word(Int64($0)) }
        let fixed = try! Cleartext().activation(
            RingTensor(ring: ring, shape: [inputs.count], values: inputs), table, inputBits: 39)
        var worst = 0.0
        var total = 0.0
        for (i, word) in inputs.enumerated() {
            let error = abs(ring.decode(fixed.values[i]) - table.reference(ring.decode(word))) * 4096
            worst = max(worst, error)
            total += error
        }
        return (worst, total / Double(inputs.count))
    }

    @Test("cleartext GeLU is within 31 units of float64 over every 16-bit input (the reference's bound)")
    func geluAccuracy() {
        let (worst, mean) = worstError(.gelu())
        #expect(worst <= 31, "max \(worst), mean \(mean)")
        #expect(worst <= 16.5, "the midpoint table's analytic bound (see the SiLU test): max \(worst)")
        #expect(mean < 8, "mean \(mean)")
    }

    /// Each table entry serves one step of 2^−6 and is the midpoint of δ's range there; |δ'| ≤ 1/2, so the error is
    /// at most 2^−6 · 1/2 / 2 = 16 units, plus half a unit of table rounding.
    @Test("cleartext SiLU is within 16.5 units (the table's resolution) over every 16-bit input")
    func siluAccuracy() {
        let (worst, mean) = worstError(.silu())
        #expect(worst <= 16.5, "max \(worst), mean \(mean)")
    }
}
