import Foundation

/// The float64 reference of the decoder models (GPT-2, GPT-Neo, Llama) in HuggingFace semantics: the accuracy
/// yardstick for the fixed-point and secure runs. Weights are read from a `Checkpoint` in float32 and computed in
/// float64, as the fixtures' references were.
public final class FloatTransformer {
    public let config: TransformerConfig
    let checkpoint: Checkpoint

    public init(folder: String) throws {
        config = try TransformerConfig(folder: folder)
        guard config.architecture != .bert else {
            throw CheckpointError.malformed(path: folder, why: "the float decoder runs GPT-2, GPT-Neo and Llama")
        }
        checkpoint = try Checkpoint(folder: folder)
    }

    func tensor(_ name: String, _ shape: [Int]) throws -> [Double] {
        try checkpoint.floats(name, shape: shape).map(Double.init)
    }

    /// The logits of the last position for `ids`.
    public func lastLogits(_ ids: [Int]) throws -> [Double] {
        let (d, t) = (config.hidden, ids.count)
        guard t > 0, t <= config.positions else {
            throw CheckpointError.malformed(
                path: "prompt", why: "\(t) tokens; the model takes 1 to \(config.positions)")
        }
        guard ids.allSatisfy({ (0..<config.vocabulary).contains($0) }) else {
            throw CheckpointError.malformed(path: "prompt", why: "a token id outside the vocabulary")
        }
        var x: [Double]
        switch config.architecture {
        case .gpt2, .gptNeo:
            let wte = try tensor("transformer.wte.weight", [config.vocabulary, d])
            let wpe = try tensor("transformer.wpe.weight", [config.positions, d])
            x = (0..<(t * d)).map { wte[ids[$0 / d] * d + $0 % d] + wpe[$0] }
            for layer in 0..<config.layers { x = try gptBlock(x, t: t, layer: layer) }
            x = layerNorm(
                x, rows: t, try tensor("transformer.ln_f.weight", [d]), try tensor("transformer.ln_f.bias", [d]))
            let last = Array(x[((t - 1) * d)...])
            return linear(last, rows: 1, weightsOutIn: wte, inputs: d, outputs: config.vocabulary, bias: nil)
        case .llama:
            let embed = try tensor("model.embed_tokens.weight", [config.vocabulary, d])
            x = (0..<(t * d)).map { embed[ids[$0 / d] * d + $0 % d] }
            for layer in 0..<config.layers { x = try llamaBlock(x, t: t, layer: layer) }
            x = rmsNorm(x, rows: t, try tensor("model.norm.weight", [d]))
            let head = config.tiedEmbeddings ? embed : try tensor("lm_head.weight", [config.vocabulary, d])
            return linear(
                Array(x[((t - 1) * d)...]), rows: 1, weightsOutIn: head, inputs: d, outputs: config.vocabulary,
                bias: nil)
        case .bert:
            fatalError("unreachable: rejected in init")
        }
    }

    func gptBlock(_ x: [Double], t: Int, layer: Int) throws -> [Double] {
        let d = config.hidden
        let prefix = "transformer.h.\(layer)."
        let h = layerNorm(x, rows: t, try tensor(prefix + "ln_1.weight", [d]), try tensor(prefix + "ln_1.bias", [d]))
        var q: [Double], k: [Double], v: [Double], attentionOut: [Double]
        if config.architecture == .gpt2 {
            let qkv = linear(
                h, rows: t, weightsInOut: try tensor(prefix + "attn.c_attn.weight", [d, 3 * d]), inputs: d,
                outputs: 3 * d, bias: try tensor(prefix + "attn.c_attn.bias", [3 * d]))
            q = (0..<(t * d)).map { qkv[($0 / d) * 3 * d + $0 % d] }
            k = (0..<(t * d)).map { qkv[($0 / d) * 3 * d + d + $0 % d] }
            v = (0..<(t * d)).map { qkv[($0 / d) * 3 * d + 2 * d + $0 % d] }
        } else {
            let a = prefix + "attn.attention."
            q = linear(
                h, rows: t, weightsOutIn: try tensor(a + "q_proj.weight", [d, d]), inputs: d, outputs: d, bias: nil)
            k = linear(
                h, rows: t, weightsOutIn: try tensor(a + "k_proj.weight", [d, d]), inputs: d, outputs: d, bias: nil)
            v = linear(
                h, rows: t, weightsOutIn: try tensor(a + "v_proj.weight", [d, d]), inputs: d, outputs: d, bias: nil)
        }
        let local =
            config.architecture == .gptNeo && config.attentionLayers.indices.contains(layer)
            && config.attentionLayers[layer] == "local"
        let scale = config.architecture == .gpt2 ? 1 / Double(config.headDim).squareRoot() : 1
        let context = attention(q: q, k: k, v: v, t: t, scale: scale, window: local ? config.localWindow : nil)
        if config.architecture == .gpt2 {
            attentionOut = linear(
                context, rows: t, weightsInOut: try tensor(prefix + "attn.c_proj.weight", [d, d]), inputs: d,
                outputs: d, bias: try tensor(prefix + "attn.c_proj.bias", [d]))
        } else {
            attentionOut = linear(
                context, rows: t, weightsOutIn: try tensor(prefix + "attn.attention.out_proj.weight", [d, d]),
                inputs: d, outputs: d, bias: try tensor(prefix + "attn.attention.out_proj.bias", [d]))
        }
        var y = zip(x, attentionOut).map { $0 + $1 }
        let h2 = layerNorm(y, rows: t, try tensor(prefix + "ln_2.weight", [d]), try tensor(prefix + "ln_2.bias", [d]))
        let ff = config.intermediate
        let up: [Double], down: [Double]
        if config.architecture == .gpt2 {
            up = linear(
                h2, rows: t, weightsInOut: try tensor(prefix + "mlp.c_fc.weight", [d, ff]), inputs: d, outputs: ff,
                bias: try tensor(prefix + "mlp.c_fc.bias", [ff])
            ).map(geluTanh)
            down = linear(
                up, rows: t, weightsInOut: try tensor(prefix + "mlp.c_proj.weight", [ff, d]), inputs: ff, outputs: d,
                bias: try tensor(prefix + "mlp.c_proj.bias", [d]))
        } else {
            up = linear(
                h2, rows: t, weightsOutIn: try tensor(prefix + "mlp.c_fc.weight", [ff, d]), inputs: d, outputs: ff,
                bias: try tensor(prefix + "mlp.c_fc.bias", [ff])
            ).map(geluTanh)
            down = linear(
                up, rows: t, weightsOutIn: try tensor(prefix + "mlp.c_proj.weight", [d, ff]), inputs: ff, outputs: d,
                bias: try tensor(prefix + "mlp.c_proj.bias", [d]))
        }
        y = zip(y, down).map { $0 + $1 }
        return y
    }

    func llamaBlock(_ x: [Double], t: Int, layer: Int) throws -> [Double] {
        let d = config.hidden
        let dh = config.headDim
        let kv = config.keyValueHeads * dh
        let prefix = "model.layers.\(layer)."
        let h = rmsNorm(x, rows: t, try tensor(prefix + "input_layernorm.weight", [d]))
        var q = linear(
            h, rows: t, weightsOutIn: try tensor(prefix + "self_attn.q_proj.weight", [d, d]), inputs: d, outputs: d,
            bias: nil)
        var k = linear(
            h, rows: t, weightsOutIn: try tensor(prefix + "self_attn.k_proj.weight", [kv, d]), inputs: d, outputs: kv,
            bias: nil)
        let v = linear(
            h, rows: t, weightsOutIn: try tensor(prefix + "self_attn.v_proj.weight", [kv, d]), inputs: d, outputs: kv,
            bias: nil)
        q = rotary(q, t: t, heads: config.heads)
        k = rotary(k, t: t, heads: config.keyValueHeads)
        // Grouped-query attention: repeat each key/value head for its group of query heads.
        let group = config.heads / config.keyValueHeads
        let expand = { (values: [Double]) -> [Double] in
            (0..<(t * d)).map { i in
                let (row, column) = (i / d, i % d)
                return values[row * kv + (column / dh / group) * dh + column % dh]
            }
        }
        let context = attention(q: q, k: expand(k), v: expand(v), t: t, scale: 1 / Double(dh).squareRoot(), window: nil)
        let out = linear(
            context, rows: t, weightsOutIn: try tensor(prefix + "self_attn.o_proj.weight", [d, d]), inputs: d,
            outputs: d, bias: nil)
        var y = zip(x, out).map { $0 + $1 }
        let h2 = rmsNorm(y, rows: t, try tensor(prefix + "post_attention_layernorm.weight", [d]))
        let ff = config.intermediate
        let gate = linear(
            h2, rows: t, weightsOutIn: try tensor(prefix + "mlp.gate_proj.weight", [ff, d]), inputs: d, outputs: ff,
            bias: nil)
        let up = linear(
            h2, rows: t, weightsOutIn: try tensor(prefix + "mlp.up_proj.weight", [ff, d]), inputs: d, outputs: ff,
            bias: nil)
        let product = zip(gate, up).map { $0 / (1 + Foundation.exp(-$0)) * $1 }
        let down = linear(
            product, rows: t, weightsOutIn: try tensor(prefix + "mlp.down_proj.weight", [d, ff]), inputs: ff,
            outputs: d, bias: nil)
        y = zip(y, down).map { $0 + $1 }
        return y
    }

    /// Causal attention over heads of q, k, v ([t × hidden] each), optionally within a local window.
    func attention(q: [Double], k: [Double], v: [Double], t: Int, scale: Double, window: Int?) -> [Double] {
        let (d, dh) = (config.hidden, config.headDim)
        var out = [Double](repeating: 0, count: t * d)
        for head in 0..<config.heads {
            for i in 0..<t {
                let first = window.map { max(0, i - $0 + 1) } ?? 0
                var scores = (first...i).map { j in
                    (0..<dh).reduce(0.0) { $0 + q[i * d + head * dh + $1] * k[j * d + head * dh + $1] } * scale
                }
                let top = scores.max()!
                scores = scores.map { Foundation.exp($0 - top) }
                let total = scores.reduce(0, +)
                for (offset, weight) in scores.enumerated() {
                    let j = first + offset
                    for c in 0..<dh { out[i * d + head * dh + c] += weight / total * v[j * d + head * dh + c] }
                }
            }
        }
        return out
    }

    /// HF Llama rotate-half RoPE on [t × heads·dh].
    func rotary(_ x: [Double], t: Int, heads: Int) -> [Double] {
        let dh = config.headDim
        var out = x
        for p in 0..<t {
            for head in 0..<heads {
                let base = p * heads * dh + head * dh
                for j in 0..<(dh / 2) {
                    let angle = Double(p) * Foundation.pow(config.ropeTheta, -2 * Double(j) / Double(dh))
                    let (a, b) = (x[base + j], x[base + j + dh / 2])
                    out[base + j] = a * Foundation.cos(angle) - b * Foundation.sin(angle)
                    out[base + j + dh / 2] = b * Foundation.cos(angle) + a * Foundation.sin(angle)
                }
            }
        }
        return out
    }

    func layerNorm(_ x: [Double], rows: Int, _ gamma: [Double], _ beta: [Double]) -> [Double] {
        let d = gamma.count
        var out = x
        for r in 0..<rows {
            let row = x[(r * d)..<((r + 1) * d)]
            let mean = row.reduce(0, +) / Double(d)
            let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(d)
            let inverse = 1 / (variance + config.normEpsilon).squareRoot()
            for c in 0..<d { out[r * d + c] = (x[r * d + c] - mean) * inverse * gamma[c] + beta[c] }
        }
        return out
    }

    func rmsNorm(_ x: [Double], rows: Int, _ gamma: [Double]) -> [Double] {
        let d = gamma.count
        var out = x
        for r in 0..<rows {
            let meanSquare = x[(r * d)..<((r + 1) * d)].reduce(0) { $0 + $1 * $1 } / Double(d)
            let inverse = 1 / (meanSquare + config.normEpsilon).squareRoot()
            for c in 0..<d { out[r * d + c] = x[r * d + c] * inverse * gamma[c] }
        }
        return out
    }

    /// y = x·W + b with W stored [in, out] (GPT-2's Conv1D).
    func linear(_ x: [Double], rows: Int, weightsInOut w: [Double], inputs: Int, outputs: Int, bias: [Double]?)
        -> [Double]
    {
        var y = [Double](repeating: 0, count: rows * outputs)
        for r in 0..<rows {
            for i in 0..<inputs {
                let xi = x[r * inputs + i]
                for o in 0..<outputs { y[r * outputs + o] += xi * w[i * outputs + o] }
            }
            if let bias { for o in 0..<outputs { y[r * outputs + o] += bias[o] } }
        }
        return y
    }

    /// y = x·Wᵀ + b with W stored [out, in] (nn.Linear).
    func linear(_ x: [Double], rows: Int, weightsOutIn w: [Double], inputs: Int, outputs: Int, bias: [Double]?)
        -> [Double]
    {
        var y = [Double](repeating: 0, count: rows * outputs)
        for r in 0..<rows {
            for o in 0..<outputs {
                var sum = bias?[o] ?? 0
                for i in 0..<inputs { sum += x[r * inputs + i] * w[o * inputs + i] }
                y[r * outputs + o] = sum
            }
        }
        return y
    }

    /// gelu_new: 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))).
    func geluTanh(_ x: Double) -> Double {
        0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
    }
}
