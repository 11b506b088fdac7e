import FSS
import Foundation
import Models
import Protocols
import Ring
import Testing

let fixtureModels = ["gpt2-tiny", "gptneo-tiny", "llama-tiny"]

func modelFolder(_ model: String) -> String { fixtures.appendingPathComponent("models/\(model)").path }

/// The model run on one ring backend (the existential opened into a concrete evaluator).
func ringLogits<B: RingBackend>(
    _ backend: B, model: DecoderModel, ids: [Int]?, count: Int, ring: Ring, truncation: ProductTruncation = .gap,
    widths: InputWidths = InputWidths()
) throws -> [Double]? {
    try model.lastLogits(
        RingEvaluator(backend, ring: ring, truncation: truncation, widths: widths), ids: ids, count: count)
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
        "secure inference equals the cleartext fixed point bit for bit; the server learns nothing (GapARS with certified widths, or faithful ARS)",
        arguments: fixtureModels, ProductTruncation.allCases)
    func secureEqualsCleartext(model: String, truncation: ProductTruncation) throws {
        let server = try DecoderModel(folder: modelFolder(model))
        let shapes = DecoderModel(shapesOf: server.config)
        let ids = try referencePrompts(model)[1].ids  // "$ gcloud alpha", 4 tokens
        let ring = Ring(bitwidth: model == "llama-tiny" ? 48 : 50, scale: 12)
        let widths = truncation == .gap ? InputWidths(try server.rangeCertificate(scale: 12)) : InputWidths()
        let run = try InProcessRun(seed: 3) { backend -> [Double]? in
            let isServer = (backend as? PartyContext)?.party == .p0 || backend is Cleartext
            let isClient = (backend as? PartyContext)?.party == .p1 || backend is Cleartext
            return try ringLogits(
                backend, model: isServer ? server : shapes, ids: isClient ? ids : nil, count: ids.count, ring: ring,
                truncation: truncation, widths: widths)
        }
        #expect(run.server == nil)
        #expect(run.client != nil && run.client == run.clear)
    }

    @Test(
        "the range certificate allows GapARS for the trained fixtures and bounds every product they compute",
        arguments: fixtureModels)
    func rangeCertificate(model: String) throws {
        let decoder = try DecoderModel(folder: modelFolder(model))
        let certificate = try decoder.rangeCertificate(scale: 12)
        #expect(certificate.allowsGap(bitwidth: model == "llama-tiny" ? 48 : 50), "\(certificate)")
        // Sound: no product on any reference prompt exceeds the bound (float arithmetic, every truncated product).
        let observed = ProductRecorder()
        for prompt in try referencePrompts(model) {
            _ = try decoder.lastLogits(observed, ids: prompt.ids, count: prompt.ids.count)
        }
        #expect(observed.largest > 0 && observed.largest <= certificate.largestProduct, "\(observed.largest)")
        #expect(
            observed.largestActivationInput > 0
                && observed.largestActivationInput <= certificate.largestActivationInput,
            "\(observed.largestActivationInput) vs \(certificate.largestActivationInput)")
        #expect(
            observed.largestSoftmaxInput > 0 && observed.largestSoftmaxInput <= certificate.largestSoftmaxInput,
            "\(observed.largestSoftmaxInput) vs \(certificate.largestSoftmaxInput)")
        // The activation bound, with Cauchy–Schwarz after each norm, is within 100× of what the prompts reach.
        #expect(certificate.largestActivationInput < 100 * observed.largestActivationInput)
        // And not vacuous: within 10^4 of what the prompts reach (worst case over every input and position).
        #expect(certificate.largestProduct < 1e4 * observed.largest)
        // 1.1·10^6 + 1 < 2^21 = 2^{n−2−24} from n = 47; 1.1·2·10^6 + 1 > 2^21 needs n = 48.
        #expect(RangeCertificate(largestProduct: 1e6, scale: 12).minimumBitwidth == 47)
        #expect(RangeCertificate(largestProduct: 2e6, scale: 12).minimumBitwidth == 48)
    }
}

/// The float reference, recording the largest |value| of every product that fixed point truncates.
final class ProductRecorder: Evaluator {
    typealias Tensor = [Double]
    typealias Table = [Double]
    let float = FloatEvaluator()
    var largest = 0.0
    var largestActivationInput = 0.0
    var largestSoftmaxInput = 0.0
    func activationInput(_ x: [Double]) -> [Double] {
        largestActivationInput = max(largestActivationInput, x.map(abs).max() ?? 0)
        return x
    }
    func record(_ x: [Double]) -> [Double] {
        largest = max(largest, x.map(abs).max() ?? 0)
        return x
    }
    func clientInput(_ values: [Double]?, rows: Int, columns: Int) throws -> [Double] {
        try float.clientInput(values, rows: rows, columns: columns)
    }
    func linear(_ x: [Double], _ layer: LinearLayer, rows: Int) throws -> [Double] {
        record(try float.linear(x, layer, rows: rows))
    }
    func relu(_ x: [Double]) throws -> [Double] { try float.relu(x) }
    func output(_ x: [Double]) throws -> [Double]? { try float.output(x) }
    func embed(_ ids: [Int]?, count: Int, table: WeightVector, width: Int) throws -> (
        embedded: [Double], table: [Double]
    ) { try float.embed(ids, count: count, table: table, width: width) }
    func serverTable(_ table: WeightVector, width: Int) throws -> [Double] {
        try float.serverTable(table, width: width)
    }
    func addServerRows(_ x: [Double], _ rows: WeightVector, width: Int) throws -> [Double] {
        try float.addServerRows(x, rows, width: width)
    }
    func logits(_ x: [Double], table: [Double], rows: Int, width: Int, vocabulary: Int) throws -> [Double] {
        record(try float.logits(x, table: table, rows: rows, width: width, vocabulary: vocabulary))
    }
    func add(_ x: [Double], _ y: [Double]) -> [Double] { float.add(x, y) }
    func multiply(_ x: [Double], _ y: [Double]) throws -> [Double] { record(try float.multiply(x, y)) }
    func layerNorm(_ x: [Double], width: Int, gamma: WeightVector, beta: WeightVector, epsilon: Double) throws
        -> [Double]
    { try float.layerNorm(x, width: width, gamma: gamma, beta: beta, epsilon: epsilon) }
    func rmsNorm(_ x: [Double], width: Int, gamma: WeightVector, epsilon: Double) throws -> [Double] {
        try float.rmsNorm(x, width: width, gamma: gamma, epsilon: epsilon)
    }
    func gelu(_ x: [Double]) throws -> [Double] { try float.gelu(activationInput(x)) }
    func silu(_ x: [Double]) throws -> [Double] { try float.silu(activationInput(x)) }
    func rotary(_ x: [Double], heads: Int, headDim: Int, theta: Double) throws -> [Double] {
        record(try float.rotary(x, heads: heads, headDim: headDim, theta: theta))
    }
    func attention(
        _ q: [Double], _ k: [Double], _ v: [Double], rows: Int, heads: Int, kvHeads: Int, headDim: Int, scaled: Bool,
        window: Int?, causal: Bool
    ) throws -> [Double] {
        let (width, kvWidth, group) = (heads * headDim, kvHeads * headDim, heads / kvHeads)
        let scale = scaled ? 1 / Double(headDim).squareRoot() : 1
        for head in 0..<heads {
            for i in 0..<rows {
                let first = window.map { max(0, i - $0 + 1) } ?? 0
                for j in first...(causal ? i : rows - 1) {
                    let score = (0..<headDim).reduce(0.0) {
                        $0 + q[i * width + head * headDim + $1] * k[j * kvWidth + (head / group) * headDim + $1]
                    }
                    largestSoftmaxInput = max(largestSoftmaxInput, abs(score * scale))
                }
            }
        }
        return record(
            try float.attention(
                q, k, v, rows: rows, heads: heads, kvHeads: kvHeads, headDim: headDim, scaled: scaled, window: window,
                causal: causal))
    }
    func geluExact(_ x: [Double]) throws -> [Double] { try float.geluExact(activationInput(x)) }
    func meanOfRows(_ x: [Double], rows: Int, width: Int) throws -> [Double] {
        record(try float.meanOfRows(x, rows: rows, width: width))
    }
    func lastRow(_ x: [Double], rows: Int, width: Int) -> [Double] { float.lastRow(x, rows: rows, width: width) }
    func columns(_ x: [Double], rows: Int, width: Int, start: Int, count: Int) -> [Double] {
        float.columns(x, rows: rows, width: width, start: start, count: count)
    }
}

@Suite("Secure text generation", .serialized)
struct GenerationTests {
    @Test(
        "sigma run --model: three processes per token generate the cleartext fixed-point greedy tokens (key files, keys streamed by the dealer, streamed without preprocessing)",
        arguments: [[], ["--stream-keys"], ["--stream-keys", "--inline-products"]])
    func generation(keys: [String]) throws {
        let folder = modelFolder("gpt2-tiny")
        let prompt = "$ gcloud alpha"
        let (status, output, errors) = try sigma(
            ["run", "--model", folder, "--prompt", prompt, "--max-new-tokens", "2", "--json"] + keys)
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
