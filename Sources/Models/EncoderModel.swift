import Foundation

/// BERT (post-LN, bidirectional; MiniLM and BERT-tiny/base/large shapes) as one graph on every evaluator: token,
/// position and token-type embeddings, every layer, and mean pooling under 2PC. The client receives the pooled
/// vector and normalises it locally (sentence-transformers' all-MiniLM recipe: mean over all tokens, then L2).
public struct EncoderModel: Sendable {
    public let config: TransformerConfig
    let weights: WeightSource

    public init(folder: String) throws {
        config = try TransformerConfig(folder: folder)
        guard config.architecture == .bert else {
            throw CheckpointError.malformed(path: folder, why: "an encoder model is BERT (model_type bert)")
        }
        weights = WeightSource(checkpoint: try Checkpoint(folder: folder))
    }

    public init(shapesOf config: TransformerConfig) {
        self.config = config
        weights = WeightSource(checkpoint: nil)
    }

    /// The server's model with random weights of the config's shapes (benchmarks).
    public init(config: TransformerConfig, randomWeights seed: UInt64) {
        self.config = config
        weights = WeightSource(randomSeed: seed)
    }

    /// Tensor names with or without the "bert." prefix of BertFor… checkpoints.
    func name(_ suffix: String) -> String {
        if let checkpoint = weights.checkpoint, checkpoint.shape(suffix) == nil,
            checkpoint.shape("bert." + suffix) != nil
        {
            return "bert." + suffix
        }
        return suffix
    }

    /// Bounds every truncated product of this checkpoint over all texts (`RangeEvaluator`): whether GapARS is exact.
    public func rangeCertificate(scale: Int) throws -> RangeCertificate {
        let bounds = RangeEvaluator(scale: scale)
        _ = try pooledEmbedding(bounds, ids: nil, count: config.positions)
        return RangeCertificate(bounds)
    }

    /// The mean of the last layer's rows for the client's `ids` (`count` tokens, [CLS] … [SEP] included).
    public func pooledEmbedding<E: Evaluator>(_ e: E, ids: [Int]?, count t: Int) throws -> [Double]? {
        let c = config
        let d = c.hidden
        guard (1...c.positions).contains(t) else {
            throw CheckpointError.malformed(path: "text", why: "\(t) tokens; the model takes 1 to \(c.positions)")
        }
        var (x, _) = try e.embed(
            ids, count: t,
            table: try weights.vector(name("embeddings.word_embeddings.weight"), count: c.vocabulary * d), width: d)
        x = try e.addServerRows(
            x, try weights.vector(name("embeddings.position_embeddings.weight"), count: t * d), width: d)
        let tokenType = try weights.vector(name("embeddings.token_type_embeddings.weight"), count: d)
        x = try e.addServerRows(
            x, WeightVector(tokenType.values.map { row in (0..<(t * d)).map { row[$0 % d] } }, count: t * d), width: d)
        x = try e.layerNorm(
            x, width: d, gamma: try weights.vector(name("embeddings.LayerNorm.weight"), count: d),
            beta: try weights.vector(name("embeddings.LayerNorm.bias"), count: d), epsilon: c.normEpsilon)
        for layer in 0..<c.layers {
            x = try block(e, x, t: t, layer: layer)
            ModelProgress.report(layer + 1, of: c.layers + 1)
        }
        let pooled = try e.output(try e.meanOfRows(x, rows: t, width: d))
        ModelProgress.report(c.layers + 1, of: c.layers + 1)
        return pooled
    }

    func block<E: Evaluator>(_ e: E, _ x: E.Tensor, t: Int, layer: Int) throws -> E.Tensor {
        let c = config
        let (d, ff) = (c.hidden, c.intermediate)
        let p = name("encoder.layer.\(layer).")
        let linear = { (suffix: String, inputs: Int, outputs: Int) in
            try weights.linear(
                p + suffix + ".weight", bias: p + suffix + ".bias", inputs: inputs, outputs: outputs,
                layout: .outputsByInputs)
        }
        let q = try e.linear(x, try linear("attention.self.query", d, d), rows: t)
        let k = try e.linear(x, try linear("attention.self.key", d, d), rows: t)
        let v = try e.linear(x, try linear("attention.self.value", d, d), rows: t)
        let context = try e.attention(
            q, k, v, rows: t, heads: c.heads, kvHeads: c.heads, headDim: c.headDim, scaled: true, window: nil,
            causal: false)
        let norm = { (input: E.Tensor, suffix: String) in
            try e.layerNorm(
                input, width: d, gamma: try weights.vector(p + suffix + ".weight", count: d),
                beta: try weights.vector(p + suffix + ".bias", count: d), epsilon: c.normEpsilon)
        }
        let attended = try norm(
            e.add(x, try e.linear(context, try linear("attention.output.dense", d, d), rows: t)),
            "attention.output.LayerNorm")
        let inner = try e.geluExact(try e.linear(attended, try linear("intermediate.dense", d, ff), rows: t))
        return try norm(
            e.add(attended, try e.linear(inner, try linear("output.dense", ff, d), rows: t)), "output.LayerNorm")
    }
}
