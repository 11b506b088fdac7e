import Foundation

/// Why a tokenizer could not be loaded.
public enum TokenizerError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String)
    case malformed(path: String, why: String)

    public var description: String {
        switch self {
        case .unreadable(let path): "cannot read tokenizer file \(path)"
        case .malformed(let path, let why): "tokenizer file \(path) is malformed: \(why)"
        }
    }
}

/// GPT-2's byte-level BPE (also used by the GPT-Neo and Llama fixtures), from `vocab.json` and `merges.txt`:
/// bytes map to printable characters, text is pre-split by GPT-2's regular expression, and each piece is merged by
/// rank. `<|endoftext|>` in the text is the special token 50256 (as HuggingFace's tokenizer treats it).
public final class GPT2Tokenizer: @unchecked Sendable {  // the cache is guarded by `lock`
    public let vocabulary: [String: Int]
    private let tokens: [Int: String]
    private let ranks: [Pair: Int]
    private let byteToCharacter: [Character]
    private let characterToByte: [Character: UInt8]
    private let pattern: Regex<AnyRegexOutput>
    private var cache: [String: [Int]] = [:]
    private let lock = NSLock()
    public static let endOfText = "<|endoftext|>"

    struct Pair: Hashable {
        let first: String
        let second: String
    }

    /// Loads `vocab.json` and `merges.txt` from a model folder.
    public convenience init(folder: String) throws {
        try self.init(vocabularyPath: folder + "/vocab.json", mergesPath: folder + "/merges.txt")
    }

    public init(vocabularyPath: String, mergesPath: String) throws {
        guard let vocabularyData = try? readFile(vocabularyPath, limit: 64 << 20) else {
            throw TokenizerError.unreadable(path: vocabularyPath)
        }
        guard let object = try? JSONSerialization.jsonObject(with: vocabularyData) as? [String: Any] else {
            throw TokenizerError.malformed(path: vocabularyPath, why: "not a JSON object")
        }
        var vocabulary: [String: Int] = [:]
        for (token, id) in object {
            guard let id = id as? Int, id >= 0 else {
                throw TokenizerError.malformed(path: vocabularyPath, why: "the id of '\(token)' is not a whole number")
            }
            vocabulary[token] = id
        }
        guard let mergesData = try? readFile(mergesPath, limit: 64 << 20),
            let mergesText = String(data: mergesData, encoding: .utf8)
        else { throw TokenizerError.unreadable(path: mergesPath) }
        var ranks: [Pair: Int] = [:]
        for line in mergesText.split(separator: "\n", omittingEmptySubsequences: true) where !line.hasPrefix("#version")
        {
            let parts = line.split(separator: " ")
            guard parts.count == 2 else {
                throw TokenizerError.malformed(path: mergesPath, why: "line '\(line.prefix(40))' is not a pair")
            }
            ranks[Pair(first: String(parts[0]), second: String(parts[1]))] = ranks.count
        }
        self.vocabulary = vocabulary
        tokens = Dictionary(vocabulary.map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        self.ranks = ranks
        // GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest for U+0100 onwards.
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var characters = printable.map { Character(UnicodeScalar(UInt8($0))) }
        var next = 256
        for byte in 0..<256 where !printable.contains(byte) {
            printable.append(byte)
            characters.append(Character(UnicodeScalar(UInt32(next))!))
            next += 1
        }
        var byteToCharacter = [Character](repeating: " ", count: 256)
        var characterToByte: [Character: UInt8] = [:]
        for (byte, character) in zip(printable, characters) {
            byteToCharacter[byte] = character
            characterToByte[character] = UInt8(byte)
        }
        self.byteToCharacter = byteToCharacter
        self.characterToByte = characterToByte
        pattern = try Regex(#"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#)
            .matchingSemantics(.unicodeScalar)
    }

    /// The token ids of `text`.
    public func encode(_ text: String) -> [Int] {
        var ids: [Int] = []
        let pieces = text.components(separatedBy: Self.endOfText)
        for (i, piece) in pieces.enumerated() {
            if i > 0, let special = vocabulary[Self.endOfText] { ids.append(special) }
            for match in piece.matches(of: pattern) { ids += encodeWord(String(piece[match.range])) }
        }
        return ids
    }

    /// The text of token ids (invalid UTF-8 becomes U+FFFD; unknown ids are skipped).
    public func decode(_ ids: [Int]) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            guard let token = tokens[id] else { continue }
            if token == Self.endOfText {
                bytes += Array(token.utf8)
                continue
            }
            for character in token { if let byte = characterToByte[character] { bytes.append(byte) } }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private func encodeWord(_ word: String) -> [Int] {
        if let cached = lock.withLock({ cache[word] }) { return cached }
        var parts = word.utf8.map { String(byteToCharacter[Int($0)]) }
        while parts.count > 1 {
            var best: (rank: Int, index: Int)?
            for i in 0..<(parts.count - 1) {
                if let rank = ranks[Pair(first: parts[i], second: parts[i + 1])], rank < (best?.rank ?? Int.max) {
                    best = (rank, i)
                }
            }
            guard let (_, index) = best else { break }
            let merged = parts[index] + parts[index + 1]
            let pair = (parts[index], parts[index + 1])
            // Merge every occurrence of the pair, left to right, as GPT-2's reference implementation does.
            var next: [String] = []
            var i = 0
            while i < parts.count {
                if i + 1 < parts.count && parts[i] == pair.0 && parts[i + 1] == pair.1 {
                    next.append(merged)
                    i += 2
                } else {
                    next.append(parts[i])
                    i += 1
                }
            }
            parts = next
        }
        let ids = parts.compactMap { vocabulary[$0] }
        lock.withLock { cache[word] = ids }
        return ids
    }
}

/// BERT's WordPiece tokenizer (uncased), from `vocab.txt`: lower-case, strip accents, split on whitespace and
/// punctuation (and around CJK characters), then greedy longest-match word pieces with "##" continuations;
/// [CLS] … [SEP] around the result.
public final class WordPieceTokenizer: Sendable {
    public let vocabulary: [String: Int]
    let tokens: [String]
    let unknown: Int
    public let classify: Int
    public let separator: Int
    let maxCharactersPerWord = 100

    public convenience init(folder: String) throws { try self.init(vocabularyPath: folder + "/vocab.txt") }

    public init(vocabularyPath: String) throws {
        guard let data = try? readFile(vocabularyPath, limit: 16 << 20),
            let text = String(data: data, encoding: .utf8)
        else { throw TokenizerError.unreadable(path: vocabularyPath) }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            String($0.hasSuffix("\r") ? $0.dropLast() : $0)
        }
        let tokens = lines.last == "" ? Array(lines.dropLast()) : lines
        var vocabulary: [String: Int] = [:]
        for (id, token) in tokens.enumerated() where vocabulary[token] == nil { vocabulary[token] = id }
        guard let unknown = vocabulary["[UNK]"], let classify = vocabulary["[CLS]"], let separator = vocabulary["[SEP]"]
        else { throw TokenizerError.malformed(path: vocabularyPath, why: "[UNK], [CLS] or [SEP] is missing") }
        self.vocabulary = vocabulary
        self.tokens = tokens
        self.unknown = unknown
        self.classify = classify
        self.separator = separator
    }

    /// [CLS] + word pieces of `text` + [SEP].
    public func encode(_ text: String) -> [Int] {
        [classify] + basicTokens(text).flatMap(wordPieces) + [separator]
    }

    public func decode(_ ids: [Int]) -> String {
        var words: [String] = []
        for id in ids where id != classify && id != separator && tokens.indices.contains(id) {
            let token = tokens[id]
            if token.hasPrefix("##"), let last = words.popLast() {
                words.append(last + token.dropFirst(2))
            } else {
                words.append(token)
            }
        }
        return words.joined(separator: " ")
    }

    /// Lower-cased, accent-stripped words and punctuation marks.
    func basicTokens(_ text: String) -> [String] {
        var words: [String] = []
        var current = ""
        func flush() {
            if !current.isEmpty { words.append(current) }
            current = ""
        }
        // NFD, then drop combining marks: BERT's strip_accents.
        let decomposed = text.lowercased().decomposedStringWithCanonicalMapping
        for scalar in decomposed.unicodeScalars {
            let value = scalar.value
            if value == 0 || value == 0xFFFD
                || (scalar.properties.generalCategory == .control && !" \t\n\r".unicodeScalars.contains(scalar))
            {
                continue
            }
            if scalar.properties.generalCategory == .nonspacingMark { continue }
            if scalar.properties.isWhitespace {
                flush()
            } else if Self.isPunctuation(scalar) || Self.isCJK(value) {
                flush()
                words.append(String(scalar))
            } else {
                current.unicodeScalars.append(scalar)
            }
        }
        flush()
        return words
    }

    func wordPieces(_ word: String) -> [Int] {
        let characters = Array(word)
        guard characters.count <= maxCharactersPerWord else { return [unknown] }
        var pieces: [Int] = []
        var start = 0
        while start < characters.count {
            var end = characters.count
            var found: Int?
            while start < end {
                let piece = (start > 0 ? "##" : "") + String(characters[start..<end])
                if let id = vocabulary[piece] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let id = found else { return [unknown] }
            pieces.append(id)
            start = end
        }
        return pieces
    }

    /// BERT's _is_punctuation: ASCII symbols count as punctuation, as does Unicode category P*.
    static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) {
            return true
        }
        switch scalar.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
            .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }

    static func isCJK(_ v: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v) || (0x20000...0x2A6DF).contains(v)
            || (0x2A700...0x2B73F).contains(v) || (0x2B740...0x2B81F).contains(v) || (0x2B820...0x2CEAF).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }
}
