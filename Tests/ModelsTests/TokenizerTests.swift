import Foundation
import Models
import Testing

/// The repository root, from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
let fixtures = repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/fixtures")
let miniLMFolder = repositoryRoot.appendingPathComponent(".fixtures/minilm")

func referencePrompts(_ model: String) throws -> [(text: String, ids: [Int])] {
    let data = try Data(contentsOf: fixtures.appendingPathComponent("models/\(model)/reference.json"))
    let object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
    return (object["prompts"] as! [[String: Any]]).map { ($0["text"] as! String, $0["ids"] as! [Int]) }
}

@Suite("Tokenizers")
struct TokenizerTests {
    @Test(
        "GPT-2 BPE: the known vectors, every fixture prompt of all three models, and round trips",
        arguments: ["gpt2-tiny", "gptneo-tiny", "llama-tiny"])
    func gpt2(model: String) throws {
        let tokenizer = try GPT2Tokenizer(folder: fixtures.appendingPathComponent("models/\(model)").path)
        #expect(tokenizer.encode("hello world") == [31373, 995])
        #expect(tokenizer.encode(" The quick brown fox") == [383, 2068, 7586, 21831])
        for (text, ids) in try referencePrompts(model) {
            #expect(tokenizer.encode(text) == ids, "\(text.prefix(40))")
            #expect(tokenizer.decode(ids) == text)
        }
        let unicode = "Hello world, it's 2026!  Ünïcode   ok\n\tdone"
        #expect(tokenizer.decode(tokenizer.encode(unicode)) == unicode)
    }

    @Test("a missing or malformed vocabulary is a clear error")
    func badFiles() throws {
        #expect(throws: TokenizerError.self) { try GPT2Tokenizer(folder: "/nonexistent") }
        let path = NSTemporaryDirectory() + "sigma-vocab-\(getpid()).json"
        defer { unlink(path) }
        try Data("[1, 2]".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: TokenizerError.malformed(path: path, why: "not a JSON object")) {
            try GPT2Tokenizer(vocabularyPath: path, mergesPath: path)
        }
        #expect(throws: TokenizerError.self) { try WordPieceTokenizer(vocabularyPath: path) }
    }

    @Test("WordPiece on a small vocabulary: lower-casing, accents, punctuation, ## pieces, unknown words")
    func wordPieceSynthetic() throws {
        let path = NSTemporaryDirectory() + "sigma-wp-\(getpid()).txt"
        defer { unlink(path) }
        let vocabulary = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "un", "##aff", "##able", ",", "!", "cafe",
        ]
        try Data(vocabulary.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: path))
        let tokenizer = try WordPieceTokenizer(vocabularyPath: path)
        #expect(tokenizer.encode("Hello, WORLD!") == [2, 4, 9, 5, 10, 3])
        #expect(tokenizer.encode("unaffable café") == [2, 6, 7, 8, 11, 3])
        #expect(tokenizer.encode("unknownword") == [2, 1, 3])
        #expect(tokenizer.decode([2, 6, 7, 8, 3]) == "unaffable")
    }

    @Test("WordPiece on MiniLM's vocabulary equals the reference token ids (needs scripts/fetch-minilm.sh)")
    func wordPieceMiniLM() throws {
        guard FileManager.default.fileExists(atPath: miniLMFolder.appendingPathComponent("vocab.txt").path) else {
            print("skipped: MiniLM is not fetched (run scripts/fetch-minilm.sh)")
            return
        }
        let tokenizer = try WordPieceTokenizer(folder: miniLMFolder.path)
        let data = try Data(contentsOf: fixtures.appendingPathComponent("minilm-reference.json"))
        let sentences =
            (try JSONSerialization.jsonObject(with: data) as! [String: Any])["sentences"] as! [[String: Any]]
        #expect(sentences.count >= 8)
        for sentence in sentences {
            #expect(
                tokenizer.encode(sentence["text"] as! String) == sentence["input_ids"] as! [Int], "\(sentence["text"]!)"
            )
        }
        #expect(tokenizer.encode("A man is eating food.") == [101, 1037, 2158, 2003, 5983, 2833, 1012, 102])
    }
}
