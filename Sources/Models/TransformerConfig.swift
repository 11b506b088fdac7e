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

    /// Reads `folder/config.json`; an unsupported `model_type` or a missing field is a clear error.
    public init(folder: String) throws {
        let path = folder + "/config.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckpointError.unreadable(path: path)
        }
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
        guard hidden % heads == 0, heads % keyValueHeads == 0, layers > 0 else {
            throw CheckpointError.malformed(path: path, why: "inconsistent head counts")
        }
    }
}
