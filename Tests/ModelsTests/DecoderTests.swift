import FSS
import Foundation
import Models
import Protocols
import Ring
import Testing

let fixtureModels = ["gpt2-tiny", "gptneo-tiny", "llama-tiny"]

func modelFolder(_ model: String) -> String { fixtures.appendingPathComponent("models/\(model)").path }

/// The model run on one ring backend (the existential opened into a concrete evaluator).
func ringLogits<B: RingBackend>(_ backend: B, model: DecoderModel, ids: [Int]?, count: Int, ring: Ring) throws
    -> [Double]?
{
    try model.lastLogits(RingEvaluator(backend, ring: ring), ids: ids, count: count)
}

@Suite("Decoder models", .serialized)
struct DecoderTests {
    @Test(
        "the float graph equals PyTorch's logits within 1e-3 on every reference prompt up to 64 tokens",
        arguments: fixtureModels)
    func floatLogits(model: String) throws {
        let decoder = try DecoderModel(folder: modelFolder(model))
        for (index, prompt) in try referencePrompts(model).enumerated() where prompt.ids.count <= 64 {
            let logits = try decoder.lastLogits(FloatEvaluator(), ids: prompt.ids, count: prompt.ids.count)!
            let expected = try referenceLogits(model, prompt: index)
            let worst = zip(logits, expected).map { abs($0 - Double($1)) }.max()!
            #expect(worst < 1e-3, "\(model) prompt \(index): max |Δ| = \(worst)")
        }
    }

    @Test("fixed point picks PyTorch's next token on at least 7 of the 8 reference prompts", arguments: fixtureModels)
    func fixedPointNextToken(model: String) throws {
        let decoder = try DecoderModel(folder: modelFolder(model))
        let ring = Ring(bitwidth: model == "llama-tiny" ? 48 : 50, scale: 12)
        var agreements = 0
        for (index, prompt) in try referencePrompts(model).enumerated() {
            let logits = try ringLogits(
                Cleartext(), model: decoder, ids: prompt.ids, count: prompt.ids.count, ring: ring)!
            let expected = try referenceLogits(model, prompt: index)
            let top = logits.indices.max { logits[$0] < logits[$1] }!
            let reference = expected.indices.max { expected[$0] < expected[$1] }!
            if top == reference { agreements += 1 }
        }
        #expect(agreements >= 7, "\(model): \(agreements) of 8")
    }

    @Test(
        "secure inference equals the cleartext fixed point bit for bit; the server learns nothing",
        arguments: fixtureModels)
    func secureEqualsCleartext(model: String) throws {
        let server = try DecoderModel(folder: modelFolder(model))
        let shapes = DecoderModel(shapesOf: server.config)
        let ids = try referencePrompts(model)[1].ids  // "$ gcloud alpha", 4 tokens
        let ring = Ring(bitwidth: model == "llama-tiny" ? 48 : 50, scale: 12)
        let run = try InProcessRun(seed: 3) { backend -> [Double]? in
            let isServer = (backend as? PartyContext)?.party == .p0 || backend is Cleartext
            let isClient = (backend as? PartyContext)?.party == .p1 || backend is Cleartext
            return try ringLogits(
                backend, model: isServer ? server : shapes, ids: isClient ? ids : nil, count: ids.count, ring: ring)
        }
        #expect(run.server == nil)
        #expect(run.client != nil && run.client == run.clear)
    }
}

@Suite("Secure text generation", .serialized)
struct GenerationTests {
    @Test("sigma run --model: three processes per token generate the cleartext fixed-point greedy tokens")
    func generation() throws {
        let folder = modelFolder("gpt2-tiny")
        let prompt = "$ gcloud alpha"
        let (status, output, errors) = try sigma([
            "run", "--model", folder, "--prompt", prompt, "--max-new-tokens", "2", "--json",
        ])
        #expect(status == 0, "\(errors)")
        let report = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
        let tokens = report?["tokens"] as? [Int] ?? []
        // The same greedy decoding in cleartext fixed point, in this process.
        let model = try DecoderModel(folder: folder)
        let tokenizer = try GPT2Tokenizer(folder: folder)
        var ids = tokenizer.encode(prompt)
        for _ in 0..<2 {
            let logits = try ringLogits(
                Cleartext(), model: model, ids: ids, count: ids.count, ring: Ring(bitwidth: 50, scale: 12))!
            ids.append(logits.indices.max { logits[$0] < logits[$1] }!)
        }
        #expect(tokens == ids)
        #expect((report?["rounds"] as? Int ?? 0) > 0 && (report?["online_seconds"] as? Double ?? 0) > 0)
    }

    @Test("a prompt longer than the model's positions and an unknown folder are clear errors")
    func badRequests() throws {
        let folder = modelFolder("gpt2-tiny")
        let long = String(repeating: "word ", count: 300)
        let (status, _, errors) = try sigma(["run", "--model", folder, "--prompt", long, "--max-new-tokens", "1"])
        #expect(status != 0 && errors.contains("exceeds the model's 256 positions"), "\(errors)")
        let missing = try sigma(["run", "--model", "/nonexistent", "--prompt", "hi"])
        #expect(missing.0 != 0 && missing.2.contains("cannot read"), "\(missing.2)")
    }
}
