import FSS
import Protocols
import Ring
import Testing

@Suite("GeLU and SiLU")
struct ActivationTests {
    /// Inputs around every boundary of the protocol: 0, ±1, the clip bound S and its neighbours, the table's
    /// last entry, and the largest magnitude the effective bitwidth allows.
    func edgeInputs(_ table: ActivationTable, ring: Ring) -> [UInt64] {
        let s = Int64((1 << table.indexBits) - 1) << Int64(table.scale - 6)
        let m = ring.bitwidth - ring.scale + 1
        let largest = (Int64(1) << Int64(m - 1)) - s - 1
        let values: [Int64] = [
            0, 1, -1, 63, 64, -64, -65, s, s - 1, s + 1, -s, -s - 1, -s + 1, largest, -largest, 4096, -4096,
        ]
        return values.map(ring.word)
    }

    @Test(
        "secure GeLU and SiLU equal the cleartext fixed point bit for bit",
        arguments: [("GeLU", 50), ("GeLU", 37), ("SiLU", 48)])
    func secureEqualsCleartext(name: String, bits: Int) throws {
        let ring = Ring(bitwidth: bits, scale: 12)
        let table = name == "GeLU" ? ActivationTable.gelu() : ActivationTable.silu()
        var values = TestValues(seed: UInt64(bits))
        // Mostly the interesting range (|x| < 32), some far out.
        let x =
            values.signed(400, magnitudeBits: 17, ring: ring) + values.signed(100, magnitudeBits: bits - 14, ring: ring)
            + edgeInputs(table, ring: ring)
        let runs = try runEverywhere { b -> RingTensor in
            try b.activation(try b.inputFromClient(x, shape: [x.count], ring: ring), table)
        }
        #expect(runs.partiesAgree)
        #expect(runs.secure == runs.clear.values, "\(name) n=\(bits)")
        #expect(runs.p0Statistics.rounds == 1 + 4, "the input, then four rounds")
    }

    /// max |fixed − float| over every 16-bit input x (|x| < 8 at f = 12), in units of 2^−12.
    func worstError(_ table: ActivationTable) -> (max: Double, mean: Double) {
        let ring = Ring(bitwidth: 50, scale: 12)
        let inputs = (-32768..<32768).map { ring.word(Int64($0)) }
        let fixed = try! Cleartext().activation(RingTensor(ring: ring, shape: [inputs.count], values: inputs), table)
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
