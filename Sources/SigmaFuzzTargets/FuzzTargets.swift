import FSS
import Foundation
import Models
import Protocols
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// The parsers that take bytes from outside, as fuzz targets: each `run` feeds one input to one parser and must
/// return (with a value or an error) — never trap, hang, or allocate what the input's length fields ask for.
///
/// FuzzTesting/ builds these into one libFuzzer binary (`scripts/fuzz.sh`); the test suite replays every seed and
/// every input a fuzzer ever crashed on (FuzzTesting/regressions/TARGET/) through the same entry points.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// A party's key file: header, state, MACs, sizes (the parse stops at the MAC for forged bytes, by design).
    case keyFile
    /// A key stream past its MAC: gate markers, packed words, bits and DPF key batches viewed in place.
    case keyStream
    /// Frames from a peer: the handshake hello, length prefixes and the frame limit.
    case frames
    /// A safetensors file: header JSON, dtypes, shapes, offsets.
    case safetensors
    /// A model's config.json.
    case config
    /// GPT-2's byte-level BPE: vocab.json and merges.txt, separated in the input by `splitMarker`.
    case bpe
    /// BERT's WordPiece vocab.txt.
    case wordPiece
    /// A deployment's credentials file.
    case credentials

    /// Separates the two files of a `bpe` input.
    public static let splitMarker = Array("\n<<<merges>>>\n".utf8)

    /// A scratch directory of this process for parsers that read files (on tmpfs when there is one).
    static let scratch: String = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let path = base + "/sigma-fuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    static func write(_ bytes: [UInt8], _ name: String) -> String {
        let path = scratch + "/" + name
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    /// Feeds `input` to the target's parser. Returns whether the parser accepted it.
    @discardableResult
    public func run(_ input: [UInt8]) -> Bool {
        switch self {
        case .keyFile:
            let path = Self.write(input, "fuzz.key")
            for secret in [nil, [UInt8](repeating: 7, count: 32)] {
                for party in Party.allCases {
                    guard let file = try? KeyFile(path: path, party: party, secret: secret, markConsumed: false) else {
                        continue
                    }
                    return (try? file.reader().words(file.payloadBytes, bits: 8)) != nil
                }
            }
            return false
        case .keyStream:
            return Self.keyStream(input)
        case .frames:
            return Self.frames(input)
        case .safetensors:
            guard let checkpoint = try? Checkpoint(paths: [Self.write(input, "fuzz.safetensors")]) else { return false }
            for name in checkpoint.names.prefix(4) { _ = try? checkpoint.floats(name) }
            return true
        case .config:
            _ = Self.write(input, "config.json")
            return (try? TransformerConfig(folder: Self.scratch)) != nil
        case .bpe:
            let (vocabulary, merges) = Self.split(input)
            guard
                let tokenizer = try? GPT2Tokenizer(
                    vocabularyPath: Self.write(vocabulary, "vocab.json"), mergesPath: Self.write(merges, "merges.txt"))
            else { return false }
            _ = tokenizer.decode(tokenizer.encode("Hello world, it's a test: ünïcödé 😀 123"))
            return true
        case .wordPiece:
            guard let tokenizer = try? WordPieceTokenizer(vocabularyPath: Self.write(input, "vocab.txt")) else {
                return false
            }
            _ = tokenizer.decode(tokenizer.encode("Hello hellos! Ünïcödé, 123 unaffable"))
            return true
        case .credentials:
            return (try? Credentials(parsing: String(decoding: input, as: UTF8.self))) != nil
        }
    }

    static func split(_ input: [UInt8]) -> ([UInt8], [UInt8]) {
        let marker = splitMarker
        guard input.count >= marker.count else { return (input, []) }
        for start in 0...(input.count - marker.count) where input[start..<(start + marker.count)].elementsEqual(marker)
        {
            return (Array(input[..<start]), Array(input[(start + marker.count)...]))
        }
        return (input, [])
    }

    /// Interprets the input as a key stream: a script of reads driven by its own first bytes, so that the fuzzer
    /// explores gate markers, word widths and DPF batch headers in any order.
    static func keyStream(_ input: [UInt8]) -> Bool {
        guard input.count >= 4 else { return false }
        let reader = KeyStreamReader(copying: Array(input.dropFirst(4)))
        let script = input.prefix(4)
        var accepted = true
        for (step, op) in script.enumerated() {
            do {
                switch op % 4 {
                case 0: try reader.expectGate(GateTag("DPFC"), count: Int(op >> 2))
                case 1: _ = try reader.words(Int(op >> 2) + step, bits: Int(op >> 2) % 64 + 1)
                case 2: _ = try reader.bits(Int(op))
                default:
                    let keys = try reader.dpf()
                    let points = [UInt64](repeating: UInt64(op), count: keys.count)
                    _ = keys.lessThan(at: points)
                }
            } catch {
                accepted = false
            }
        }
        return accepted
    }

    /// Writes the input into one end of a socketpair, as a peer would, and lets a server channel read it: the
    /// handshake hello, then frames until the input ends.
    static func frames(_ input: [UInt8]) -> Bool {
        var ends: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends) == 0 else { return false }
        var size = Int32(max(input.count + 4096, 65536))
        setsockopt(ends[1], SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(ends[0], SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        // Inputs are small (libFuzzer's -max_len), so one non-blocking write fits the socket buffers.
        _ = fcntl(ends[1], F_SETFL, fcntl(ends[1], F_GETFL) | O_NONBLOCK)
        let written = input.withUnsafeBytes { Glibc.write(ends[1], $0.baseAddress, $0.count) }
        shutdown(ends[1], Int32(SHUT_WR))
        defer { close(ends[1]) }
        guard written == input.count else {
            close(ends[0])
            return false
        }
        let hello = Handshake(
            role: .server, modelFingerprint: [UInt8](repeating: 1, count: 32),
            sessionID: [UInt8](repeating: 2, count: 16))
        guard
            let channel = try? TCPChannel.adopt(
                descriptor: ends[0], isServer: true, handshake: hello, security: .insecure, timeout: 1,
                frameLimit: 1 << 16)
        else { return false }
        defer { channel.close() }
        var frames = 0
        while (try? channel.receive()) != nil { frames += 1 }
        return frames > 0
    }

    /// Valid inputs to start fuzzing from, made from the fixtures beside the repository (`shared`) and from this
    /// build's own writers.
    public func seeds(fixtures: URL) -> [[UInt8]] {
        func file(_ path: String, prefix: Int = 1 << 20) -> [UInt8] {
            Array((try? Data(contentsOf: fixtures.appendingPathComponent(path))) ?? Data()).prefix(prefix).map { $0 }
        }
        switch self {
        case .keyFile:
            return [nil, [UInt8](repeating: 7, count: 32)].compactMap { secret in
                let path = Self.scratch + "/seed.key"
                guard
                    let writer = try? KeyFileWriter(
                        path: path,
                        header: KeyFileHeader(
                            party: .p1, sessionID: [UInt8](repeating: 3, count: 16),
                            modelFingerprint: [UInt8](repeating: 4, count: 32), parameters: [1, 2, 3]),
                        secret: secret)
                else { return nil }
                try? writer.write((0..<300).map { UInt8(truncatingIfNeeded: $0 * 7) })
                try? writer.finish()
                return FileManager.default.contents(atPath: path).map { Array($0) }
            }
        case .keyStream:
            var random = SecureRandom(insecureTestSeed: 5)
            let (keys, _) = DPF.generate(alphas: [1, 2, 3], inputBits: 12, random: &random)
            let sink = MemoryKeySink()
            let writer = KeyStreamWriter(sink: sink)
            try? writer.beginGate(GateTag("DPFC"), count: 3)
            try? writer.dpf(keys)
            try? writer.words([1, 2, 3, 4, 5], bits: 37)
            return [[12, 3, 21, 2] + sink.bytes]
        case .frames:
            let hello = Handshake(
                role: .client, modelFingerprint: [UInt8](repeating: 1, count: 32),
                sessionID: [UInt8](repeating: 2, count: 16))
            func frame(_ payload: [UInt8]) -> [UInt8] {
                (0..<8).map { UInt8(truncatingIfNeeded: UInt64(payload.count) >> UInt64(8 * $0)) } + payload
            }
            return [frame(hello.encoded) + frame([1, 2, 3]) + frame([]) + frame(Array(repeating: 9, count: 100))]
        case .safetensors:
            let json =
                #"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"#
                + #""h":{"dtype":"F16","shape":[3],"data_offsets":[16,22]},"#
                + #""b":{"dtype":"BF16","shape":[1,1],"data_offsets":[22,24]}}"#
            let header = Array(json.utf8)
            let length = (0..<8).map { UInt8(truncatingIfNeeded: header.count >> (8 * $0)) }
            let data: [UInt8] = (0..<24).map { UInt8($0 * 9 % 61) }
            return [length + header + data]
        case .config:
            return ["gpt2-tiny", "gptneo-tiny", "llama-tiny"].map { file("models/\($0)/config.json") }
        case .bpe:
            // The fixture's first 300 tokens and the merges among them: small, and accepted as a whole.
            let vocabularyData = (try? Data(contentsOf: fixtures.appendingPathComponent("models/gpt2-tiny/vocab.json")))
            guard let vocabularyData,
                let vocabulary = try? JSONSerialization.jsonObject(with: vocabularyData) as? [String: Int],
                let small = try? JSONSerialization.data(
                    withJSONObject: vocabulary.filter { $0.value < 300 }, options: [.sortedKeys])
            else { return [] }
            let merges = file("models/gpt2-tiny/merges.txt", prefix: 3000)
            let complete = merges.prefix(through: merges.lastIndex(of: 10) ?? -1)
            return [Array(small) + Self.splitMarker + Array(complete)]
        case .wordPiece:
            return [Array("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n##s\nun\n##aff\n##able\n".utf8)]
        case .credentials:
            return Credentials.generate().values.map { Array($0.encoded.utf8) }
        }
    }
}
