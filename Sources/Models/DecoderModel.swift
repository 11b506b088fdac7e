import Foundation

/// Where a model's weights come from: the server's checkpoint, deterministic random weights of the right shapes
/// (benchmarks of full-size models without their weights), or, for the dealer and the client, nothing but the
/// shapes, which the config gives.
public final class WeightSource: @unchecked Sendable {  // immutable after init; `kept` locks itself
    let checkpoint: Checkpoint?
    let randomSeed: UInt64?
    /// Tensors loaded once and kept with their encodings (nil on the dealer and the client, who have no values).
    let kept: KeptWeights?

    public init(checkpoint: Checkpoint?) {
        self.checkpoint = checkpoint
        randomSeed = nil
        kept = checkpoint.map { _ in KeptWeights() }
    }

    /// Random weights: norms' γ near 1, biases and β near 0, embeddings N-like with scale 0.02, matrices uniform in
    /// ±1/√(inputs) — the magnitudes of trained models, so fixed-point ranges behave realistically.
    public init(randomSeed: UInt64) {
        checkpoint = nil
        self.randomSeed = randomSeed
        kept = KeptWeights()
    }

    func random(_ name: String, count: Int, scale: Float, offset: Float = 0) -> [Float] {
        var state =
            randomSeed! ^ name.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return offset + scale * (Float(state >> 40) / Float(1 << 24) * 2 - 1)
        }
    }

    /// A vector of `count` values (the first `count` of the tensor: position tables are cut to the prompt).
    func vector(_ name: String, count: Int) throws -> WeightVector {
        guard let kept else { return WeightVector(nil, count: count) }
        return try kept.vector("\(name)#\(count)", count: count) { try load(name, count: count) }
    }

    private func load(_ name: String, count: Int) throws -> [Float] {
        if randomSeed != nil {
            let norm = name.contains("norm") || name.contains("ln_") || name.contains("LayerNorm")
            if norm && name.hasSuffix("weight") { return random(name, count: count, scale: 0.1, offset: 1) }
            return random(name, count: count, scale: name.hasSuffix("bias") ? 0.02 : 0.04)
        }
        guard let checkpoint else { preconditionFailure("no values without a checkpoint or a seed") }
        let values = try checkpoint.floats(name)
        guard values.count >= count else {
            throw CheckpointError.malformed(path: name, why: "fewer than \(count) values")
        }
        return values.count == count ? values : Array(values.prefix(count))
    }

    enum Layout { case inputsByOutputs, outputsByInputs }

    /// A linear layer stored [in, out] (GPT-2's Conv1D) or [out, in] (nn.Linear), as y = x·W (+ b).
    func linear(_ name: String, bias: String?, inputs: Int, outputs: Int, layout: Layout) throws -> LinearLayer {
        guard let kept else {
            return LinearLayer(inputs: inputs, outputs: outputs, weights: nil, bias: nil, hasBias: bias != nil)
        }
        return try kept.linear(name, count: inputs * outputs + outputs) { keep in
            try load(name, bias: bias, inputs: inputs, outputs: outputs, layout: layout, keepEncodings: keep)
        }
    }

    private func load(
        _ name: String, bias: String?, inputs: Int, outputs: Int, layout: Layout, keepEncodings: Bool
    ) throws -> LinearLayer {
        if randomSeed != nil {
            return LinearLayer(
                inputs: inputs, outputs: outputs,
                weights: random(name, count: inputs * outputs, scale: 1 / Float(inputs).squareRoot()),
                bias: bias.map { random($0, count: outputs, scale: 0.02) }, keepEncodings: keepEncodings)
        }
        guard let checkpoint else { preconditionFailure("no values without a checkpoint or a seed") }
        let stored = try checkpoint.floats(
            name, shape: layout == .inputsByOutputs ? [inputs, outputs] : [outputs, inputs])
        let weights =
            layout == .inputsByOutputs
            ? stored : (0..<(inputs * outputs)).map { stored[($0 % outputs) * inputs + $0 / outputs] }
        return LinearLayer(
            inputs: inputs, outputs: outputs, weights: weights,
            bias: try bias.map { try checkpoint.floats($0, shape: [outputs]) }, keepEncodings: keepEncodings)
    }
}

/// The server's weight tensors, loaded (read and converted, or generated) once and kept with their fixed-point
/// encodings while they fit a budget: the server runs the model's code before the online phase (range
/// certificate, weights tag, preprocessing), so the online phase then finds every kept tensor ready. Tensors past
/// the budget (a model larger than a quarter of this machine's memory) are loaded at each use, as before.
final class KeptWeights: @unchecked Sendable {  // mutable state only under `lock`
    private let lock = NSLock()
    /// Bytes a kept tensor may hold: 4 per float and 8 per encoding (one ring).
    static let bytesPerValue = 12
    private let budget: Int
    private var used = 0
    private var vectors: [String: WeightVector] = [:]
    private var layers: [String: LinearLayer] = [:]

    init(budget: Int = Int(clamping: ProcessInfo.processInfo.physicalMemory / 4)) {
        self.budget = budget
    }

    /// Whether `count` more values fit; if so they are counted as kept.
    private func reserve(_ count: Int) -> Bool {
        guard used + count * Self.bytesPerValue <= budget else { return false }
        used += count * Self.bytesPerValue
        return true
    }

    func vector(_ key: String, count: Int, load: () throws -> [Float]) throws -> WeightVector {
        lock.lock()
        defer { lock.unlock() }
        if let vector = vectors[key] { return vector }
        let keep = reserve(count)
        let vector = WeightVector(try load(), count: count, keepEncodings: keep)
        if keep { vectors[key] = vector }
        return vector
    }

    func linear(_ key: String, count: Int, load: (_ keep: Bool) throws -> LinearLayer) throws -> LinearLayer {
        lock.lock()
        defer { lock.unlock() }
        if let layer = layers[key] { return layer }
        let keep = reserve(count)
        let layer = try load(keep)
        if keep { layers[key] = layer }
        return layer
    }
}

/// A decoder-only transformer (GPT-2, GPT-Neo, Llama) as one graph, run by any `Evaluator`: the float reference,
/// the fixed-point reference, the dealer and the parties. The whole model runs under 2PC: token and position
/// embeddings, every block, the final norm and the output layer; the client receives the last position's logits.
public struct DecoderModel: Sendable {
    public let config: TransformerConfig
    let weights: WeightSource

    /// The server's model: config and weights from a HuggingFace folder.
    public init(folder: String) throws {
        config = try TransformerConfig(folder: folder)
        guard config.architecture != .bert else {
            throw CheckpointError.malformed(path: folder, why: "a decoder model is GPT-2, GPT-Neo or Llama")
        }
        weights = WeightSource(checkpoint: try Checkpoint(folder: folder))
    }

    /// The model as the dealer and the client know it: the config, no weights.
    public init(shapesOf config: TransformerConfig) {
        self.config = config
        weights = WeightSource(checkpoint: nil)
    }

    /// The server's model with random weights of the config's shapes (benchmarks).
    public init(config: TransformerConfig, randomWeights seed: UInt64) {
        self.config = config
        weights = WeightSource(randomSeed: seed)
    }

    /// Bounds every truncated product of this checkpoint over all prompts (`RangeEvaluator`): whether GapARS is exact.
    public func rangeCertificate(scale: Int) throws -> RangeCertificate {
        let bounds = RangeEvaluator(scale: scale)
        _ = try lastLogits(bounds, ids: nil, count: config.positions)
        return RangeCertificate(bounds)
    }

    /// The last position's logits for the client's `ids` (`count` tokens; nil ids except on the client).
    public func lastLogits<E: Evaluator>(_ e: E, ids: [Int]?, count t: Int) throws -> [Double]? {
        let c = config
        let d = c.hidden
        guard (1...c.positions).contains(t) else {
            throw CheckpointError.malformed(path: "prompt", why: "\(t) tokens; the model takes 1 to \(c.positions)")
        }
        if let ids, !ids.allSatisfy({ (0..<c.vocabulary).contains($0) }) {
            throw CheckpointError.malformed(path: "prompt", why: "a token id outside the vocabulary")
        }
        let llama = c.architecture == .llama
        let table = try weights.vector(
            llama ? "model.embed_tokens.weight" : "transformer.wte.weight", count: c.vocabulary * d)
        var (x, embeddingTable) = try e.embed(ids, count: t, table: table, width: d)
        if !llama { x = try e.addServerRows(x, try weights.vector("transformer.wpe.weight", count: t * d), width: d) }
        for layer in 0..<c.layers {
            x = llama ? try llamaBlock(e, x, t: t, layer: layer) : try gptBlock(e, x, t: t, layer: layer)
            ModelProgress.report(layer + 1, of: c.layers + 1)
        }
        x =
            llama
            ? try e.rmsNorm(
                x, width: d, gamma: try weights.vector("model.norm.weight", count: d), epsilon: c.normEpsilon)
            : try e.layerNorm(
                x, width: d, gamma: try weights.vector("transformer.ln_f.weight", count: d),
                beta: try weights.vector("transformer.ln_f.bias", count: d), epsilon: c.normEpsilon)
        let last = e.lastRow(x, rows: t, width: d)
        let outputTable =
            c.tiedEmbeddings
            ? embeddingTable
            : try e.serverTable(try weights.vector("lm_head.weight", count: c.vocabulary * d), width: d)
        let logits = try e.output(try e.logits(last, table: outputTable, rows: 1, width: d, vocabulary: c.vocabulary))
        ModelProgress.report(c.layers + 1, of: c.layers + 1)
        return logits
    }

    func gptBlock<E: Evaluator>(_ e: E, _ x: E.Tensor, t: Int, layer: Int) throws -> E.Tensor {
        let c = config
        let (d, ff) = (c.hidden, c.intermediate)
        let p = "transformer.h.\(layer)."
        let h = try e.layerNorm(
            x, width: d, gamma: try weights.vector(p + "ln_1.weight", count: d),
            beta: try weights.vector(p + "ln_1.bias", count: d),
            epsilon: c.normEpsilon)
        let q: E.Tensor, k: E.Tensor, v: E.Tensor, projection: LinearLayer, up: LinearLayer, down: LinearLayer
        if c.architecture == .gpt2 {
            let qkv = try e.linear(
                h,
                try weights.linear(
                    p + "attn.c_attn.weight", bias: p + "attn.c_attn.bias", inputs: d, outputs: 3 * d,
                    layout: .inputsByOutputs), rows: t)
            q = e.columns(qkv, rows: t, width: 3 * d, start: 0, count: d)
            k = e.columns(qkv, rows: t, width: 3 * d, start: d, count: d)
            v = e.columns(qkv, rows: t, width: 3 * d, start: 2 * d, count: d)
            projection = try weights.linear(
                p + "attn.c_proj.weight", bias: p + "attn.c_proj.bias", inputs: d, outputs: d, layout: .inputsByOutputs)
            up = try weights.linear(
                p + "mlp.c_fc.weight", bias: p + "mlp.c_fc.bias", inputs: d, outputs: ff, layout: .inputsByOutputs)
            down = try weights.linear(
                p + "mlp.c_proj.weight", bias: p + "mlp.c_proj.bias", inputs: ff, outputs: d, layout: .inputsByOutputs)
        } else {
            let a = p + "attn.attention."
            q = try e.linear(
                h, try weights.linear(a + "q_proj.weight", bias: nil, inputs: d, outputs: d, layout: .outputsByInputs),
                rows: t)
            k = try e.linear(
                h, try weights.linear(a + "k_proj.weight", bias: nil, inputs: d, outputs: d, layout: .outputsByInputs),
                rows: t)
            v = try e.linear(
                h, try weights.linear(a + "v_proj.weight", bias: nil, inputs: d, outputs: d, layout: .outputsByInputs),
                rows: t)
            projection = try weights.linear(
                a + "out_proj.weight", bias: a + "out_proj.bias", inputs: d, outputs: d, layout: .outputsByInputs)
            up = try weights.linear(
                p + "mlp.c_fc.weight", bias: p + "mlp.c_fc.bias", inputs: d, outputs: ff, layout: .outputsByInputs)
            down = try weights.linear(
                p + "mlp.c_proj.weight", bias: p + "mlp.c_proj.bias", inputs: ff, outputs: d, layout: .outputsByInputs)
        }
        let local =
            c.architecture == .gptNeo && c.attentionLayers.indices.contains(layer)
            && c.attentionLayers[layer] == "local"
        let context = try e.attention(
            q, k, v, rows: t, heads: c.heads, kvHeads: c.heads, headDim: c.headDim, scaled: c.architecture == .gpt2,
            window: local ? c.localWindow : nil, causal: true)
        var y = e.add(x, try e.linear(context, projection, rows: t))
        let h2 = try e.layerNorm(
            y, width: d, gamma: try weights.vector(p + "ln_2.weight", count: d),
            beta: try weights.vector(p + "ln_2.bias", count: d),
            epsilon: c.normEpsilon)
        y = e.add(y, try e.linear(try e.gelu(try e.linear(h2, up, rows: t)), down, rows: t))
        return y
    }

    func llamaBlock<E: Evaluator>(_ e: E, _ x: E.Tensor, t: Int, layer: Int) throws -> E.Tensor {
        let c = config
        let (d, ff, kv) = (c.hidden, c.intermediate, c.keyValueHeads * c.headDim)
        let p = "model.layers.\(layer)."
        let h = try e.rmsNorm(
            x, width: d, gamma: try weights.vector(p + "input_layernorm.weight", count: d), epsilon: c.normEpsilon)
        let linear = { (name: String, inputs: Int, outputs: Int) in
            try weights.linear(p + name, bias: nil, inputs: inputs, outputs: outputs, layout: .outputsByInputs)
        }
        let q = try e.rotary(
            try e.linear(h, try linear("self_attn.q_proj.weight", d, d), rows: t), heads: c.heads, headDim: c.headDim,
            theta: c.ropeTheta)
        let k = try e.rotary(
            try e.linear(h, try linear("self_attn.k_proj.weight", d, kv), rows: t), heads: c.keyValueHeads,
            headDim: c.headDim, theta: c.ropeTheta)
        let v = try e.linear(h, try linear("self_attn.v_proj.weight", d, kv), rows: t)
        let context = try e.attention(
            q, k, v, rows: t, heads: c.heads, kvHeads: c.keyValueHeads, headDim: c.headDim, scaled: true, window: nil,
            causal: true)
        var y = e.add(x, try e.linear(context, try linear("self_attn.o_proj.weight", d, d), rows: t))
        let h2 = try e.rmsNorm(
            y, width: d, gamma: try weights.vector(p + "post_attention_layernorm.weight", count: d),
            epsilon: c.normEpsilon)
        let gate = try e.silu(try e.linear(h2, try linear("mlp.gate_proj.weight", d, ff), rows: t))
        let up = try e.linear(h2, try linear("mlp.up_proj.weight", d, ff), rows: t)
        y = e.add(y, try e.linear(try e.multiply(gate, up), try linear("mlp.down_proj.weight", ff, d), rows: t))
        return y
    }
}
