import FSS
import Foundation
import Models
import Protocols
import Ring
import Transport

/// What a dealer/server/client run computes: the built-in MLP, or a decoder model from a HuggingFace folder on a
/// prompt of a given (public) length.
enum Job {
    case mlp
    /// `blocks`: run only the first blocks of a named shape (a slice of a model too large for this machine).
    /// `widths`: the bits of the activation and softmax inputs the comparison keys are sized for (public).
    case decoder(
        folder: String, tokens: Int, bits: Int?, truncation: ProductTruncation, blocks: Int?, widths: InputWidths)

    /// Whether the model embeds text (BERT) rather than generating it.
    var isEncoder: Bool { (try? config())??.architecture == .bert }

    init(_ options: Options) {
        guard let folder = options.string("--model") else {
            self = .mlp
            return
        }
        let truncation = options.string("--truncation").map { name in
            guard let choice = ProductTruncation(rawValue: name) else { fail("--truncation must be gap or faithful") }
            return choice
        }
        if options.string("--blocks") != nil && FileManager.default.fileExists(atPath: folder) {
            fail("--blocks applies to the named shapes (random weights), not to a model folder")
        }
        self = .decoder(
            folder: folder, tokens: options.integer("--tokens", default: 0, range: 0...1_000_000),
            bits: options.string("--bits").map { _ in options.integer("--bits", default: 50, range: 32...64) },
            truncation: truncation ?? .gap,
            blocks: options.string("--blocks").map { _ in options.integer("--blocks", default: 1, range: 1...1024) },
            widths: Self.widths(options))
    }

    /// `--activation-bits b` and `--softmax-bits b`: every such input is below 2^b units, as the range certificate
    /// proves (`sigma check-ranges`); "reference" or absent: the reference's n − f.
    static func widths(_ options: Options) -> InputWidths {
        func bits(_ name: String) -> Int? {
            guard let text = options.string(name), text != "reference" else { return nil }
            return options.integer(name, default: 0, range: 8...64)
        }
        return InputWidths(activation: bits("--activation-bits"), softmax: bits("--softmax-bits"))
    }

    /// The ring: the reference's bitwidth for the architecture (GPT-2 50, GPT-Neo 51, Llama 48, BERT 50), f = 12.
    func ring(_ config: TransformerConfig?) -> Ring {
        guard case .decoder(_, _, let bits, _, _, _) = self, let config else { return MLP.demo().ring }
        // SIGMA §2: BERT-tiny 37 bits, BERT-base/large and GPT-2 50, GPT-Neo 51, Llama2 48.
        let tiny = config.architecture == .bert && config.hidden <= 128 && config.layers <= 2
        let standard =
            tiny
            ? 37
            : [TransformerConfig.Architecture.gpt2: 50, .gptNeo: 51, .llama: 48, .bert: 50][config.architecture] ?? 50
        return Ring(bitwidth: bits ?? standard, scale: 12)
    }

    /// A named shape (bert-tiny … llama2-13b) when no folder of that name exists: random weights on the server.
    var preset: TransformerConfig? {
        guard case .decoder(let folder, _, _, _, let blocks, _) = self, !FileManager.default.fileExists(atPath: folder),
            var config = TransformerConfig.named[folder]
        else { return nil }
        if let blocks { config.layers = min(blocks, config.layers) }
        return config
    }

    func config() throws -> TransformerConfig? {
        guard case .decoder(let folder, _, _, _, _, _) = self else { return nil }
        if let preset { return preset }
        return try TransformerConfig(folder: folder)
    }

    /// A 32-byte name of the computation, compared by both parties before anything secret moves.
    func fingerprint() throws -> [UInt8] {
        guard case .decoder(_, let tokens, _, let truncation, _, let widths) = self, let config = try config() else {
            return MLP.demo().fingerprint
        }
        let ring = ring(config)
        let text =
            "decoder;\(config.architecture.rawValue);L=\(config.layers);d=\(config.hidden);h=\(config.heads);"
            + "kv=\(config.keyValueHeads);ff=\(config.intermediate);V=\(config.vocabulary);t=\(tokens);n=\(ring.bitwidth);f=\(ring.scale)"
            + ";truncation=\(truncation.rawValue)"
            + ";activation-bits=\(widths.activation.map(String.init) ?? "reference")"
            + ";softmax-bits=\(widths.softmax.map(String.init) ?? "reference")"
        return fingerprint32(text)
    }

    /// What the server's weight masks are bound to (`Roles.weightMaskSeed`): the architecture and the ring, not the
    /// prompt length or the truncation, so one delivery of Ŵ serves every inference of this model.
    func weightIdentity() throws -> [UInt8] {
        guard case .decoder = self, let config = try config() else { return fingerprint32("weights;mlp-demo") }
        let ring = ring(config)
        return fingerprint32(
            "weights;\(config.architecture.rawValue);L=\(config.layers);d=\(config.hidden);h=\(config.heads);"
                + "kv=\(config.keyValueHeads);ff=\(config.intermediate);V=\(config.vocabulary);n=\(ring.bitwidth);"
                + "f=\(ring.scale)")
    }

    /// Runs the model's code through a `WeightCollector` (shapes only, no arithmetic) with `visit`: the server's
    /// weight tensors in the order every backend masks them (`model`: this party's `model(for:)`).
    func collectServerWeights(party: Party, model: TokenModel?) -> MaskedWeightSetup.Collect {
        { visit in _ = try self.run(WeightCollector(visit: visit), party: party, input: nil, model: model) }
    }

    /// Checks the client's input before anything connects: the keys' length, whole token ids inside the vocabulary.
    func validate(input: [Double]) throws {
        guard case .decoder(_, let tokens, _, _, _, _) = self, let config = try config() else { return }
        guard input.count == tokens else {
            throw RoleError("the keys are for \(tokens) tokens; the prompt has \(input.count)")
        }
        guard tokens <= config.positions else {
            throw RoleError("\(tokens) tokens; the model takes at most \(config.positions)")
        }
        for id in input where Int(exactly: id).map({ !(0..<config.vocabulary).contains($0) }) ?? true {
            throw RoleError("token id \(id) is not a whole number in 0..<\(config.vocabulary)")
        }
    }

    /// The job's transformer as `party` holds it: the server's with its weights (a folder, or random weights for a
    /// named shape), everyone else's with the shapes only; nil for the MLP.
    func model(for party: Party?) throws -> TokenModel? {
        guard case .decoder(let folder, _, _, _, _, _) = self, let config = try config() else { return nil }
        let server = party == .p0
        if config.architecture == .bert {
            return .encoder(
                !server
                    ? EncoderModel(shapesOf: config)
                    : preset != nil ? EncoderModel(config: config, randomWeights: 1) : try EncoderModel(folder: folder))
        }
        return .decoder(
            !server
                ? DecoderModel(shapesOf: config)
                : preset != nil ? DecoderModel(config: config, randomWeights: 1) : try DecoderModel(folder: folder))
    }

    /// Runs the computation on `backend`; `weights` only on the server, `input` only on the client. `model`, if
    /// given, is this party's `model(for:)`, already loaded.
    func run<B: RingBackend>(_ backend: B, party: Party?, input: [Double]?, model: TokenModel? = nil) throws
        -> [Double]?
    {
        switch self {
        case .mlp:
            let model = party == .p0 ? MLP.demo() : MLP.demo().shapeOnly
            return try model.forward(RingEvaluator(backend, ring: model.ring), input: input)
        case .decoder(let folder, let tokens, _, let truncation, _, let widths):
            guard let config = try config(), let model = try model ?? self.model(for: party) else {
                throw RoleError("no model \(folder)")
            }
            guard tokens >= 1 else { throw RoleError("--tokens (the prompt length, public) is required with --model") }
            if let input { try validate(input: input) }
            let ids = input.map { $0.map { Int(exactly: $0) ?? -1 } }
            let evaluator = RingEvaluator(backend, ring: ring(config), truncation: truncation, widths: widths)
            switch model {
            case .encoder(let encoder): return try encoder.pooledEmbedding(evaluator, ids: ids, count: tokens)
            case .decoder(let decoder): return try decoder.lastLogits(evaluator, ids: ids, count: tokens)
            }
        }
    }
}

/// A transformer of either family, as one role holds it.
enum TokenModel {
    case decoder(DecoderModel)
    case encoder(EncoderModel)

    func rangeCertificate(scale: Int) throws -> RangeCertificate {
        switch self {
        case .decoder(let model): try model.rangeCertificate(scale: scale)
        case .encoder(let model): try model.rangeCertificate(scale: scale)
        }
    }
}

extension Job {
    /// The server, the only one who knows the weights, checks before serving that GapARS is exact for them and that
    /// the activation and softmax inputs fit the widths the keys were made for: a checkpoint whose values could
    /// leave them is refused rather than computed wrongly. `model` is the server's `model(for: .p0)`.
    func requireCertifiedRanges(_ model: TokenModel?) throws {
        guard case .decoder(_, _, _, let truncation, _, let widths) = self, let model, let config = try config(),
            truncation == .gap || widths != InputWidths()
        else { return }
        let ring = ring(config)
        let certificate = try model.rangeCertificate(scale: ring.scale)
        if truncation == .gap, !certificate.allowsGap(bitwidth: ring.bitwidth) {
            throw RoleError(
                "this checkpoint's products can reach \(String(format: "%.3g", certificate.largestProduct)): "
                    + "GapARS is exact only from \(certificate.minimumBitwidth) bits (the ring has "
                    + "\(ring.bitwidth)); use --bits \(certificate.minimumBitwidth) or --truncation faithful")
        }
        guard certificate.allows(widths) else {
            throw RoleError(
                "this checkpoint's activation and softmax inputs need --activation-bits "
                    + "\(certificate.activationMagnitudeBits) and --softmax-bits \(certificate.softmaxMagnitudeBits) "
                    + "(or \"reference\"); the keys are for \(widths.activation.map(String.init) ?? "reference") and "
                    + "\(widths.softmax.map(String.init) ?? "reference")")
        }
    }

    /// For runs that hold the model themselves (`run`, `bench model`): the `--truncation` to give all three roles —
    /// the one asked for, or GapARS when the model's range certificate allows it at this ring, else faithful — and
    /// the `--activation-bits` and `--softmax-bits` it proves (unless given).
    static func certifiedArguments(_ options: Options) throws -> [String] {
        let (certificate, ring) = try Job(options).certificate()
        let gap = certificate.allowsGap(bitwidth: ring.bitwidth)
        let activation = options.string("--activation-bits") ?? String(certificate.activationMagnitudeBits)
        let softmax = options.string("--softmax-bits") ?? String(certificate.softmaxMagnitudeBits)
        printError(
            "truncation after products: \(gap ? "GapARS" : "faithful ARS") (range certificate: products ≤ "
                + "\(String(format: "%.3g", certificate.largestProduct)), GapARS exact from \(certificate.minimumBitwidth) "
                + "bits; ring \(ring.bitwidth) bits); activation inputs < 2^\(activation), softmax inputs < 2^\(softmax) "
                + "units")
        return [
            "--truncation", options.string("--truncation") ?? (gap ? "gap" : "faithful"), "--activation-bits",
            activation, "--softmax-bits", softmax,
        ]
    }

    /// `sigma check-ranges`: the range certificate of the job's model (the server's weights).
    func certificate() throws -> (RangeCertificate, Ring) {
        guard let model = try model(for: .p0), let config = try config() else {
            throw RoleError("check-ranges needs --model")
        }
        let ring = ring(config)
        return (try model.rangeCertificate(scale: ring.scale), ring)
    }
}

/// This process's peak resident memory (VmHWM), in bytes.
func peakResidentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
    else { return 0 }
    // "VmHWM:\t  1234 kB": the padding vanishes for wide numbers, so split on any whitespace.
    let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
    return (fields.count >= 2 ? Int(fields[1]) ?? 0 : 0) * 1024
}

/// A progress bar on stderr for a model's blocks, when stderr is a terminal (under `sigma run` it is a pipe).
func showProgress(_ label: String) {
    guard isatty(2) != 0 else { return }
    let start = Date()
    ModelProgress.install { done, total in
        let width = 30
        let filled = width * done / max(total, 1)
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let line =
            "\r\(label) [\(bar)] \(done)/\(total) blocks, \(String(format: "%.1f", Date().timeIntervalSince(start))) s"
        FileHandle.standardError.write(Data((line + (done == total ? "\n" : "")).utf8))
    }
}
