import FSS
import Foundation
import Models
import Protocols
import Ring
import Testing

func normalized(_ v: [Double]) -> [Double] {
    let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
    return v.map { $0 / norm }
}

func cosine(_ a: [Double], _ b: [Double]) -> Double { zip(normalized(a), normalized(b)).reduce(0) { $0 + $1.0 * $1.1 } }

func ringEmbedding<B: RingBackend>(
    _ backend: B, model: EncoderModel, ids: [Int]?, count: Int, widths: InputWidths = InputWidths()
) throws -> [Double]? {
    try model.pooledEmbedding(
        RingEvaluator(backend, ring: Ring(bitwidth: 50, scale: 12), truncation: .gap, widths: widths), ids: ids,
        count: count)
}

@Suite("BERT / MiniLM sentence embeddings", .serialized)
struct EncoderTests {
    var sentences: [(text: String, ids: [Int], embedding: [Double])] {
        get throws {
            let data = try Data(contentsOf: fixtures.appendingPathComponent("minilm-reference.json"))
            let object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
            return (object["sentences"] as! [[String: Any]]).map {
                ($0["text"] as! String, $0["input_ids"] as! [Int], $0["embedding"] as! [Double])
            }
        }
    }

    @Test("float, fixed-point and secure MiniLM embeddings against the reference (needs scripts/fetch-minilm.sh)")
    func miniLM() throws {
        guard FileManager.default.fileExists(atPath: miniLMFolder.appendingPathComponent("model.safetensors").path)
        else {
            print("skipped: MiniLM is not fetched (run scripts/fetch-minilm.sh)")
            return
        }
        let model = try EncoderModel(folder: miniLMFolder.path)
        let tokenizer = try WordPieceTokenizer(folder: miniLMFolder.path)
        var worstFixed = 1.0
        for sentence in try sentences {
            #expect(tokenizer.encode(sentence.text) == sentence.ids)
            let float = try model.pooledEmbedding(FloatEvaluator(), ids: sentence.ids, count: sentence.ids.count)!
            #expect(cosine(float, sentence.embedding) > 0.99999, "\(sentence.text)")
            let fixed = try ringEmbedding(Cleartext(), model: model, ids: sentence.ids, count: sentence.ids.count)!
            worstFixed = min(worstFixed, cosine(fixed, sentence.embedding))
        }
        #expect(worstFixed >= 0.995, "worst fixed-point cosine \(worstFixed)")
        // Secure equals cleartext on the first sentence.
        let first = try sentences[0]
        let shapes = EncoderModel(shapesOf: model.config)
        let widths = InputWidths(try model.rangeCertificate(scale: 12))
        let run = try InProcessRun(seed: 4) { backend -> [Double]? in
            let party = (backend as? PartyContext)?.party
            let isServer = party == .p0 || backend is Cleartext
            let isClient = party == .p1 || backend is Cleartext
            return try ringEmbedding(
                backend, model: isServer ? model : shapes, ids: isClient ? first.ids : nil, count: first.ids.count,
                widths: widths)
        }
        #expect(run.server == nil && run.client != nil && run.client == run.clear)
        #expect(cosine(run.client!, first.embedding) >= 0.995)
    }
}
