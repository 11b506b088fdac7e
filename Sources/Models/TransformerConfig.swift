import Foundation

/// A transformer's shape and hyperparameters, from a HuggingFace `config.json`.
public struct TransformerConfig: Equatable, Sendable {
    public enum Architecture: String, Sendable {
        case gpt2, gptNeo = "gpt_neo", llama, bert
    }

    public var architecture: Architecture
    public var layers: Int
    public var hidden: Int
    public var heads: Int
    public var keyValueHeads: Int
    public var intermediate: Int
    public var vocabulary: Int
    public var positions: Int
    public var normEpsilon: Double
    public var ropeTheta: Double
    /// GPT-Neo: "global" or "local" per layer, and the local window.
    public var attentionLayers: [String]
    public var localWindow: Int
    public var tiedEmbeddings: Bool

    public var headDim: Int { hidden / heads }

    /// A configuration from its fields (for the named shapes below).
    public init(
        architecture: Architecture, layers: Int, hidden: Int, heads: Int, keyValueHeads: Int? = nil, intermediate: Int,
        vocabulary: Int, positions: Int, normEpsilon: Double = 1e-5, ropeTheta: Double = 10_000,
        attentionLayers: [String] = [], localWindow: Int = 256, tiedEmbeddings: Bool? = nil
    ) {
        self.architecture = architecture
        self.layers = layers
        self.hidden = hidden
        self.heads = heads
        self.keyValueHeads = keyValueHeads ?? heads
        self.intermediate = intermediate
        self.vocabulary = vocabulary
        self.positions = positions
        self.normEpsilon = normEpsilon
        self.ropeTheta = ropeTheta
        self.attentionLayers = attentionLayers
        self.localWindow = localWindow
        self.tiedEmbeddings = tiedEmbeddings ?? (architecture != .llama)
    }

    /// The reference's models by name (SIGMA §3.7), for benchmarks with random weights of the real shapes.
    public static let named: [String: TransformerConfig] = [
        "bert-tiny": TransformerConfig(
            architecture: .bert, layers: 2, hidden: 128, heads: 2, intermediate: 512, vocabulary: 30522, positions: 512,
            normEpsilon: 1e-12),
        "bert-base": TransformerConfig(
            architecture: .bert, layers: 12, hidden: 768, heads: 12, intermediate: 3072, vocabulary: 30522,
            positions: 512,
            normEpsilon: 1e-12),
        "bert-large": TransformerConfig(
            architecture: .bert, layers: 24, hidden: 1024, heads: 16, intermediate: 4096, vocabulary: 30522,
            positions: 512, normEpsilon: 1e-12),
        "gpt2": TransformerConfig(
            architecture: .gpt2, layers: 12, hidden: 768, heads: 12, intermediate: 3072, vocabulary: 50257,
            positions: 1024),
        "gpt-neo-1.3b": TransformerConfig(
            architecture: .gptNeo, layers: 24, hidden: 2048, heads: 16, intermediate: 8192, vocabulary: 50257,
            positions: 2048, attentionLayers: (0..<24).map { $0 % 2 == 0 ? "global" : "local" }, localWindow: 256),
        "llama2-7b": TransformerConfig(
            architecture: .llama, layers: 32, hidden: 4096, heads: 32, intermediate: 11008, vocabulary: 32000,
            positions: 4096),
        "llama2-13b": TransformerConfig(
            architecture: .llama, layers: 40, hidden: 5120, heads: 40, intermediate: 13824, vocabulary: 32000,
            positions: 4096),
    ]

    /// Reads `folder/config.json`; an unsupported `model_type` or a missing field is a clear error.
    public init(folder: String) throws {
        let path = folder + "/config.json"
        let data = try readFile(path, limit: 16 << 20)
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CheckpointError.malformed(path: path, why: "not a JSON object")
        }
        func integer(_ keys: String...) throws -> Int {
            for key in keys { if let value = json[key] as? Int { return value } }
            throw CheckpointError.malformed(path: path, why: "missing \(keys.joined(separator: " or "))")
        }
        guard let type = json["model_type"] as? String, let architecture = Architecture(rawValue: type) else {
            throw CheckpointError.malformed(
                path: path, why: "unsupported model_type '\(json["model_type"] ?? "none")' (gpt2, gpt_neo, llama, bert)"
            )
        }
        self.architecture = architecture
        layers = try integer("n_layer", "num_layers", "num_hidden_layers")
        hidden = try integer("n_embd", "hidden_size")
        heads = try integer("n_head", "num_heads", "num_attention_heads")
        keyValueHeads = (json["num_key_value_heads"] as? Int) ?? heads
        intermediate = (json["n_inner"] as? Int) ?? (json["intermediate_size"] as? Int) ?? 4 * hidden
        vocabulary = try integer("vocab_size")
        positions = try integer("n_positions", "max_position_embeddings")
        normEpsilon =
            (json["layer_norm_epsilon"] as? Double) ?? (json["rms_norm_eps"] as? Double)
            ?? (json["layer_norm_eps"] as? Double) ?? 1e-5
        let rope = (json["rope_parameters"] as? [String: Any])?["rope_theta"] as? Double
        ropeTheta = (json["rope_theta"] as? Double) ?? rope ?? 10_000
        attentionLayers = (json["attention_layers"] as? [String]) ?? []
        localWindow = (json["window_size"] as? Int) ?? 256
        tiedEmbeddings = (json["tie_word_embeddings"] as? Bool) ?? (architecture != .llama)
        // Bounds before any arithmetic or allocation uses these numbers (found by fuzzing: zero heads divided by
        // zero). The limits are far above every real model and keep a hostile file from asking for absurd memory.
        let bounded: [(String, Int, Int)] = [
            ("layers", layers, 1024), ("hidden size", hidden, 1 << 16), ("heads", heads, 1024),
            ("key/value heads", keyValueHeads, 1024), ("intermediate size", intermediate, 1 << 20),
            ("vocabulary", vocabulary, 1 << 22), ("positions", positions, 1 << 20),
            ("window size", localWindow, 1 << 20),
        ]
        for (name, value, limit) in bounded where !(1...limit).contains(value) {
            throw CheckpointError.malformed(path: path, why: "\(name) \(value) is outside 1…\(limit)")
        }
        guard normEpsilon.isFinite, normEpsilon > 0, ropeTheta.isFinite, ropeTheta > 0 else {
            throw CheckpointError.malformed(path: path, why: "the norm epsilon and rope theta must be positive numbers")
        }
        guard attentionLayers.allSatisfy({ $0 == "global" || $0 == "local" }) else {
            throw CheckpointError.malformed(path: path, why: "attention_layers may hold only \"global\" and \"local\"")
        }
        guard hidden % heads == 0, heads % keyValueHeads == 0 else {
            throw CheckpointError.malformed(path: path, why: "inconsistent head counts")
        }
    }
}
