import FSS
import Foundation
import Protocols
import Ring

/// `sigma bench layers`: GeLU, SiLU, softmax, LayerNorm and RMSNorm at GPT-2's shapes (sequence length 128,
/// n = 50, f = 12), both parties in this process over loopback TCP, one core each. One block's instance is
/// measured (the median of three) and multiplied by the model's count of it (12 blocks; 25 norms); the
/// per-instance figures are reported too. GeLU/SiLU and softmax inputs are taken to occupy `activationBits` and
/// `softmaxBits` (|x| < 2^b units, what a model's range certificate proves; nil: the reference's n − f).
public enum LayerBenchmark {
    /// `only`: the layer names to measure (all when nil).
    public static func run(
        only: Set<String>? = nil, activationBits: Int? = nil, softmaxBits: Int? = nil,
        progress: (String) -> Void = { _ in }
    ) throws -> JSONValue {
        let ring = Ring(bitwidth: 50, scale: 12)
        var random = SecureRandom(insecureTestSeed: 8)
        func reals(_ count: Int, magnitude: Double, offset: Double = 0) -> [UInt64] {
            random.values(count, bits: 20).map {
                ring.encode((Double($0) / Double(1 << 20) * 2 - 1) * magnitude + offset)
            }
        }
        let (seq, width, heads) = (128, 768, 12)
        let activations = reals(seq * 4 * width, magnitude: 8)
        let triangle = seq * (seq + 1) / 2
        let scores = reals(heads * triangle, magnitude: 8)
        let hidden = reals(seq * width, magnitude: 4, offset: 0.5)
        let gamma = reals(width, magnitude: 0.5, offset: 1)
        let beta = random.values(width, bits: 20).map {
            Ring(bitwidth: 50, scale: 24).encode(Double($0) / Double(1 << 20) - 0.5)
        }

        typealias Step = @Sendable (any RingBackend, RingTensor, RingTensor) throws -> Void
        let cases: [(String, Int, [UInt64], [UInt64], Int, Step)] = [
            (
                "GeLU", activations.count, activations, [], 12,
                { b, x, _ in _ = try b.gelu(x, magnitudeBits: activationBits) }
            ),
            (
                "SiLU", activations.count, activations, [], 12,
                { b, x, _ in _ = try b.silu(x, magnitudeBits: activationBits) }
            ),
            (
                "softmax", scores.count, scores, [], 12,
                { b, x, _ in  // with the coarse maximum, as every model runs it
                    _ = try b.softmax(x, rows: seq, causal: true, magnitudeBits: softmaxBits, coarseMaximum: true)
                }
            ),
            (
                "LayerNorm", hidden.count, hidden, gamma + beta, 25,
                { b, x, w in
                    let g = RingTensor(ring: ring, shape: [width], values: Array(w.values[0..<width]))
                    let bt = RingTensor(ring: ring, shape: [width], values: Array(w.values[width...]))
                    _ = try b.layerNorm(x, rowLength: width, gamma: g, beta: bt, certified: true)
                }
            ),
            (
                "RMSNorm", hidden.count, hidden, gamma, 25,
                { b, x, w in _ = try b.rmsNorm(x, rowLength: width, gamma: w, certified: true) }
            ),
        ]
        var results: [(String, JSONValue)] = []
        RingMatrix.defaultThreads = 1
        for (name, elements, x, w, instances, step) in cases where only?.contains(name) ?? true {
            let m = try ProtocolBenchmark.measure(
                name: name, elements: elements, ring: ring, x: x, y: w, shape: [x.count], repetitions: 3, step: step)
            progress(
                "\(name): \(String(format: "%.3f", m.onlineSeconds)) s per instance "
                    + "(CPU \(String(format: "%.3f", m.cpuSeconds)) s per party), \(m.rounds) rounds, "
                    + "×\(instances) = \(String(format: "%.2f", m.onlineSeconds * Double(instances))) s")
            results.append(
                (
                    name,
                    .object([
                        ("instance", .string(instanceShape(name, seq: seq, width: width, heads: heads))),
                        ("elements_per_instance", .integer(elements)),
                        ("instances_in_gpt2", .integer(instances)),
                        ("online_seconds_per_instance", .number(m.onlineSeconds)),
                        ("cpu_seconds_per_party_per_instance", .number(m.cpuSeconds)),
                        ("online_seconds_gpt2", .number(m.onlineSeconds * Double(instances))),
                        ("bytes_sent_per_party_gpt2", .integer(m.bytesSentPerParty * instances)),
                        ("rounds_per_instance", .integer(m.rounds)),
                        (
                            "key_bytes_per_party_gpt2",
                            .object([
                                ("p0", .integer(m.keyBytes.p0 * instances)),
                                ("p1", .integer(m.keyBytes.p1 * instances)),
                            ])
                        ),
                    ])
                ))
        }
        func bits(_ b: Int?) -> String { b.map { "below 2^\($0) units (certified)" } ?? "n − f (the reference's)" }
        return .object([
            ("model", .string("GPT-2 shapes, seq 128, n=50 f=12; one instance measured, GPT-2 totals extrapolated")),
            ("activation_inputs", .string(bits(activationBits))),
            ("softmax_inputs", .string(bits(softmaxBits))),
            ("layers", .object(results)),
        ])
    }

    static func instanceShape(_ name: String, seq: Int, width: Int, heads: Int) -> String {
        switch name {
        case "softmax": "\(heads) heads × \(seq) causal rows"
        case "LayerNorm", "RMSNorm": "\(seq)×\(width) (γ, β entering as server inputs; certified, as GPT-2 runs it)"
        default: "\(seq)×\(4 * width)"
        }
    }
}
