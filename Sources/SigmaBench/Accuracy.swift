import Foundation
import Protocols
import Ring

/// `sigma accuracy`: each non-linear function of the fixed-point (= secure) backend against float64, over its
/// whole input range at f = 12, in units of 2^−12.
public enum AccuracyReport {
    struct Row {
        var function: String
        var range: String
        var points: Int
        var maxError: Double
        var meanError: Double
        var note: String
    }

    public static func markdown() throws -> String {
        let ring = Ring(bitwidth: 50, scale: 12)
        let unit = 4096.0
        var rows: [Row] = []
        func measure(
            _ name: String, _ range: String, _ inputs: [Int64], note: String, secure: ([UInt64]) throws -> [UInt64],
            exact: (Double) -> Double, inputScale: Double = 4096
        ) rethrows {
            let out = try secure(inputs.map(ring.word))
            var worst = 0.0
            var total = 0.0
            for (x, y) in zip(inputs, out) {
                let error = abs(ring.decode(y) - exact(Double(x) / inputScale)) * unit
                worst = max(worst, error)
                total += error
            }
            rows.append(
                Row(
                    function: name, range: range, points: inputs.count, maxError: worst,
                    meanError: total / Double(inputs.count), note: note))
        }
        let clear = Cleartext()
        let gelu = ActivationTable.gelu()
        try measure(
            "GeLU", "−32 ≤ x < 32, every value", Array(-(1 << 17)..<(1 << 17)),
            note: "bound 31 (reference); table midpoints give ≤ 16.5",
            secure: { try clear.gelu(RingTensor(ring: ring, shape: [$0.count], values: $0)).values },
            exact: gelu.reference)
        let silu = ActivationTable.silu()
        try measure(
            "SiLU", "−64 ≤ x < 64, every value", Array(-(1 << 18)..<(1 << 18)),
            note: "10-bit table at scale 6: ≤ 16.5",
            secure: { try clear.silu(RingTensor(ring: ring, shape: [$0.count], values: $0)).values },
            exact: silu.reference)
        try measure(
            "e^{−x}", "0 ≤ x < 32, every value", Array(0..<(1 << 17)),
            note: "two 8-bit tables and a rounded product; 0 beyond the clip at 16",
            secure: {
                try clear.negativeExp(RingTensor(ring: ring, shape: [$0.count], values: $0), output: ring).values
            },
            exact: { Foundation.exp(-$0) })
        // 1/√(s/k) as LayerNorm uses it (k = 768, s at scale 2f), over variances from 2^−10 to 2^10; reported
        // relative to its value, since the outputs span many orders of magnitude.
        let rsqrtTable = ReciprocalSqrtTable(count: 768, inputScale: 24, outputScale: 12)
        var sums: [UInt64] = []
        var state: UInt64 = 7
        for octave in 0..<20 {
            for _ in 0..<2000 {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                let base = (768 * Double(1 << 24)) * Foundation.pow(2, Double(octave - 10))
                sums.append(UInt64(base * (1 + Double(state >> 11) / Double(1 << 53))))
            }
        }
        let rsqrt = try clear.reciprocalSqrt(
            RingTensor(ring: ring, shape: [sums.count], values: sums), table: rsqrtTable)
        let relative = zip(sums, rsqrt.values).map { s, t in
            abs(ring.decode(t) * (Double(s) / (768 * Double(1 << 24))).squareRoot() - 1) * unit
        }
        rows.append(
            Row(
                function: "1/√(s/k), relative error × 2^12",
                range: "LayerNorm's table (k = 768), variance 2^−10 … 2^10",
                points: sums.count, maxError: relative.max()!, meanError: relative.reduce(0, +) / Double(sums.count),
                note:
                    "13-bit float form, midpoint table: ≤ 2^−9 relative (8 units), plus ±0.5 unit of outputs as small as 128 units"
            ))
        // Softmax: rows of 128 random scores in [−8, 8); error per element and of the row sums.
        var scores: [UInt64] = []
        for _ in 0..<(200 * 128) {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            scores.append(ring.word(Int64(state >> 49) - 32768))
        }
        for coarse in [false, true] {
            let probabilities = try clear.softmax(
                RingTensor(ring: ring, shape: [scores.count], values: scores),
                rowLengths: [Int](repeating: 128, count: 200), coarseMaximum: coarse)
            var worst = 0.0, total = 0.0, worstSum = 0.0
            for row in 0..<200 {
                let x = (0..<128).map { ring.decode(scores[row * 128 + $0]) }
                let top = x.max()!
                let e = x.map { Foundation.exp($0 - top) }
                let sum = e.reduce(0, +)
                var rowSum = 0.0
                for j in 0..<128 {
                    let got = ring.decode(probabilities.values[row * 128 + j])
                    rowSum += got
                    let error = abs(got - e[j] / sum) * unit
                    worst = max(worst, error)
                    total += error
                }
                worstSum = max(worstSum, abs(rowSum - 1) * unit)
            }
            let name = coarse ? "softmax, coarse maximum (BERT)" : "softmax"
            rows.append(
                Row(
                    function: "\(name), per element", range: "200 rows of 128, scores in [−8, 8)", points: 200 * 128,
                    maxError: worst, meanError: total / Double(200 * 128),
                    note: coarse
                        ? "subtracts 2^8·max⌊x/2^8⌋ + 255 ≥ max x: e^{−d} up to 6 % smaller before the normalization"
                        : "inverse table at 6 fractional bits, sum and product rounded: ≤ y/127 + 2 units"))
            rows.append(
                Row(
                    function: "\(name), row sum − 1", range: "same rows", points: 200, maxError: worstSum,
                    meanError: .nan, note: "bound 1/127 + 2k units"))
        }

        var text = """
            # Accuracy of the fixed-point functions

            Produced by `swift run -c release sigma accuracy` (which rewrites this file with `--write docs/accuracy.md`).
            The secure protocols equal the cleartext fixed-point backend bit for bit (tested), so these are the errors
            of secure inference too. Errors are against float64 at f = 12, in units of 2^−12 (relative errors for
            1/√x, also in 2^−12).

            | function | inputs | points | max error | mean error | note |
            |---|---|---|---|---|---|

            """
        for row in rows {
            let mean = row.meanError.isNaN ? "–" : String(format: "%.2f", row.meanError)
            text +=
                "| \(row.function) | \(row.range) | \(row.points) | \(String(format: "%.2f", row.maxError)) | \(mean) | \(row.note) |\n"
        }
        return text
    }
}
