import Foundation
import Models
import Testing

func referenceLogits(_ model: String, prompt: Int) throws -> [Float] {
    let data = try Data(contentsOf: fixtures.appendingPathComponent("models/\(model)/logits_\(prompt).f32"))
    return data.withUnsafeBytes { raw in
        (0..<(data.count / 4)).map {
            Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)))
        }
    }
}

@Suite("Checkpoints and the float reference", .serialized)
struct CheckpointTests {
    @Test("config.json of each fixture", arguments: ["gpt2-tiny", "gptneo-tiny", "llama-tiny"])
    func config(model: String) throws {
        let config = try TransformerConfig(folder: fixtures.appendingPathComponent("models/\(model)").path)
        #expect(config.layers == 2 && config.hidden == 128 && config.heads == 4 && config.vocabulary == 50257)
        #expect(config.intermediate == (model == "llama-tiny" ? 344 : 512))
        if model == "gptneo-tiny" {
            #expect(config.attentionLayers == ["global", "local"] && config.localWindow == 64)
        }
        if model == "llama-tiny" { #expect(!config.tiedEmbeddings && config.ropeTheta == 10_000) }
    }

    @Test("a truncated or corrupted safetensors file is a clear error")
    func hostileCheckpoints() throws {
        let source = fixtures.appendingPathComponent("models/gpt2-tiny/model.safetensors")
        let bytes = try Data(contentsOf: source, options: .alwaysMapped)
        let path = NSTemporaryDirectory() + "sigma-st-\(getpid()).safetensors"
        defer { unlink(path) }
        for damaged in [
            bytes.prefix(4), bytes.prefix(100), bytes.prefix(bytes.count - 1),
            Data([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]) + bytes.dropFirst(8),
        ] {
            try Data(damaged).write(to: URL(fileURLWithPath: path))
            #expect(throws: CheckpointError.self) { _ = try Checkpoint(paths: [path]).floats("transformer.wte.weight") }
        }
        let checkpoint = try Checkpoint(paths: [source.path])
        #expect(throws: CheckpointError.missingTensor("nope")) { try checkpoint.floats("nope") }
        #expect(throws: CheckpointError.self) { try checkpoint.floats("transformer.wpe.weight", shape: [1, 2]) }
    }
}
