import FSS
import Foundation
import Models
import Testing

/// Deterministic mutations of a valid input: flipped bits, overwritten bytes, cuts and extensions.
struct Mutator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state >> 11
    }
    mutating func mutate(_ bytes: [UInt8], focus: Int) -> [UInt8] {
        var out = bytes
        let limit = max(1, min(focus, out.count))
        switch next() % 5 {
        case 0: out[Int(next() % UInt64(limit))] ^= UInt8(1 << (next() % 8))
        case 1: out[Int(next() % UInt64(limit))] = UInt8(truncatingIfNeeded: next())
        case 2: out = Array(out.prefix(Int(next() % UInt64(out.count + 1))))
        case 3: out += (0..<Int(next() % 64)).map { _ in UInt8(truncatingIfNeeded: next()) }
        default:
            let index = Int(next() % UInt64(limit))
            for i in index..<min(index + 8, out.count) { out[i] = [0x00, 0xFF, 0x22, 0x7B, 0x5D][Int(next() % 5)] }
        }
        return out
    }
}

@Suite("Hostile inputs: every parser errors cleanly on corrupted files", .serialized)
struct HostileInputTests {
    let directory = NSTemporaryDirectory() + "sigma-hostile-\(getpid())"

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test("safetensors headers: 2,000 mutations")
    func safetensors() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let source = try Data(contentsOf: fixtures.appendingPathComponent("models/gpt2-tiny/model.safetensors"))
        let headerLength = Int(
            source.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << UInt64(8 * $1.offset) })
        let small = Array(source.prefix(8 + headerLength)) + [UInt8](repeating: 0, count: 64)
        var mutator = Mutator(state: 1)
        var accepted = 0
        for _ in 0..<2000 {
            let path = try write(mutator.mutate(small, focus: 8 + headerLength), "m.safetensors")
            if let checkpoint = try? Checkpoint(paths: [path]) {
                accepted += 1
                for name in checkpoint.names.prefix(3) { _ = try? checkpoint.floats(name) }
            }
        }
        #expect(accepted < 2000)
    }

    @Test("config.json: 2,000 mutations")
    func configs() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let source = Array(try Data(contentsOf: fixtures.appendingPathComponent("models/llama-tiny/config.json")))
        var mutator = Mutator(state: 2)
        var rejected = 0
        for _ in 0..<2000 {
            _ = try write(mutator.mutate(source, focus: source.count), "config.json")
            if (try? TransformerConfig(folder: directory)) == nil { rejected += 1 }
        }
        #expect(rejected > 100, "only \(rejected) of 2,000 corrupted configs were refused")
    }

    @Test("tokenizer vocabularies and merges: 300 mutations each")
    func tokenizers() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let folder = fixtures.appendingPathComponent("models/gpt2-tiny")
        let vocabulary =
            Array(try Data(contentsOf: folder.appendingPathComponent("vocab.json")).prefix(4000)) + Array("}".utf8)
        let merges = Array(try Data(contentsOf: folder.appendingPathComponent("merges.txt")).prefix(4000))
        var mutator = Mutator(state: 3)
        var rejected = (bpe: 0, wordPiece: 0)
        for _ in 0..<300 {
            let v = try write(mutator.mutate(vocabulary, focus: vocabulary.count), "vocab.json")
            let m = try write(mutator.mutate(merges, focus: merges.count), "merges.txt")
            if let tokenizer = try? GPT2Tokenizer(vocabularyPath: v, mergesPath: m) {
                _ = tokenizer.decode(tokenizer.encode("hello world, it's a test"))
            } else {
                rejected.bpe += 1
            }
            let w = try write(
                mutator.mutate(Array("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n##s\n".utf8), focus: 40), "vocab.txt")
            if let wordPiece = try? WordPieceTokenizer(vocabularyPath: w) {
                _ = wordPiece.encode("Hello hellos!")
            } else {
                rejected.wordPiece += 1
            }
        }
        #expect(rejected.bpe > 10 && rejected.wordPiece > 10, "\(rejected)")
    }

    @Test("DPF key encodings viewed in place: 3,000 mutations")
    func keyViews() throws {
        var random = SecureRandom(insecureTestSeed: 9)
        let (keys, _) = DPF.generate(alphas: [1, 2, 3, 4], inputBits: 20, random: &random)
        var mutator = Mutator(state: 4)
        final class Owner: @unchecked Sendable {}
        var refused = 0
        for _ in 0..<3000 {
            let bytes = mutator.mutate(keys.encoded, focus: 48)
            bytes.withUnsafeBytes { raw in
                if let view = try? DPFKeys(viewing: raw, owner: Owner()) {
                    _ = view.lessThan(at: [UInt64](repeating: 7, count: view.count))
                }
            }
            if (try? DPFKeys(decoding: bytes)) == nil { refused += 1 }
        }
        #expect(refused > 2500, "the checksum refuses nearly every mutation: \(refused) of 3,000")
    }
}
