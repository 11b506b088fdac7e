import Foundation
import Models
import Protocols
import SigmaBench

/// `sigma bench model --model NAME --seq L [--json] [--report DIR]`: dealer, server and client as three processes on this machine
/// with random weights of the named shapes (or a model folder) and random token ids.
enum ModelBench {
    static func run(_ options: Options) throws {
        let model = options.required("--model")
        let seq = options.integer("--seq", default: 128, range: 1...4096)
        let config =
            FileManager.default.fileExists(atPath: model)
            ? try TransformerConfig(folder: model) : TransformerConfig.named[model]
        guard let config else {
            throw RoleError(
                "unknown model '\(model)': a folder, or one of \(TransformerConfig.named.keys.sorted().joined(separator: ", "))"
            )
        }
        let executable = Run.ownExecutable
        let directory = NSTemporaryDirectory() + "sigma-bench-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let job =
            ["--model", model, "--tokens", String(seq)] + (options.string("--bits").map { ["--bits", $0] } ?? [])
            + (try Job.certifiedArguments(options))
            + (options.string("--blocks").map { ["--blocks", $0] } ?? [])
        var state: UInt64 = 42
        let ids = (0..<seq).map { _ -> Int in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(config.vocabulary))
        }
        printError("bench model: \(model), \(seq) tokens: key generation, then the online phase…")
        let run = try Run.secureRun(
            executable, directory: directory, job: job,
            clientArguments: ["--ids", ids.map(String.init).joined(separator: ","), "--timeout", "600"],
            insecure: options.has("--insecure-transport"), streamKeys: options.has("--stream-keys"),
            inlineProducts: options.has("--inline-products"),
            dealerArguments: options.string("--key-cache-budget").map { ["--key-cache-budget", $0] } ?? [])
        let (clientStats, dealerStats, serverStats, keygenWall) = (
            run.client, run.dealerStats, run.serverStats, run.keygenSeconds
        )
        let parts = ModelReport.parts(client: clientStats, dealer: dealerStats)
        var fields: [(String, JSONValue)] = [
            ("model", .string(model)), ("seq", .integer(seq)),
            ("ring", .string("n=\(options.string("--bits") ?? "the reference's for this model") f=12")),
            ("transport", .string(clientStats["transport"] as? String ?? "")),
            ("online_seconds", .number(clientStats["online_seconds"] as? Double ?? 0)),
            ("keygen_seconds", .number(dealerStats["keygen_seconds"] as? Double ?? keygenWall)),
            (
                "keys",
                .string(
                    options.has("--stream-keys")
                        ? "streamed by the dealer over TLS\(options.has("--inline-products") ? ", no preprocessing stream" : "")"
                        : "key files")
            ),
            (
                "key_bytes",
                .object([
                    ("server", .integer(dealerStats["key_bytes_server"] as? Int ?? 0)),
                    ("client", .integer(dealerStats["key_bytes_client"] as? Int ?? 0)),
                ])
            ),
            (
                "bytes_sent",
                .object([
                    ("server", .integer(serverStats["bytes_sent"] as? Int ?? 0)),
                    ("client", .integer(clientStats["bytes_sent"] as? Int ?? 0)),
                ])
            ),
            ("rounds", .integer(clientStats["rounds"] as? Int ?? 0)),
            (
                // Before the online phase, once per model (the client's cache serves later inferences).
                "masked_weights_setup",
                .object([
                    ("seconds", .number(clientStats["setup_seconds"] as? Double ?? 0)),
                    ("bytes_sent_server", .integer(serverStats["setup_bytes_sent"] as? Int ?? 0)),
                    ("sent", .bool(serverStats["masked_weights_sent"] as? Bool ?? false)),
                ])
            ),
            (
                // Per inference, before the input: each party folds −[R_X]_b·Ŵ + [C]_b (PartyContext.preprocess).
                "preprocessing_seconds",
                .object([
                    ("server", .number(serverStats["preprocessing_seconds"] as? Double ?? 0)),
                    ("client", .number(clientStats["preprocessing_seconds"] as? Double ?? 0)),
                ])
            ),
            ("online_breakdown", ModelReport.breakdownJSON(parts)),
            (
                "peak_rss_bytes",
                .object([
                    ("dealer", .integer(dealerStats["peak_rss_bytes"] as? Int ?? 0)),
                    ("server", .integer(serverStats["peak_rss_bytes"] as? Int ?? 0)),
                    ("client", .integer(clientStats["peak_rss_bytes"] as? Int ?? 0)),
                ])
            ),
        ]
        if let blocks = options.string("--blocks").flatMap(Int.init), blocks < config.layers {
            fields += extrapolation(parts: parts, measuredBlocks: blocks, allBlocks: config.layers)
        }
        let result = JSONValue.object(fields)
        if let report = options.string("--report") {
            try ModelReport.write(result, parts: parts, title: "sigma bench model: \(model), \(seq) tokens", to: report)
            printError("bench model: wrote \(report)/report.json, report.md and breakdown.svg")
        }
        print(options.has("--json") ? result.text : renderTable(result, title: "sigma bench model"))
    }

    /// Whole-model figures from a run of the first blocks: the per-block parts (everything but the embedding, the
    /// LM head and the output) scaled to all blocks, the rest as measured. Labelled as extrapolated.
    static func extrapolation(parts: [ModelReport.Part], measuredBlocks: Int, allBlocks: Int) -> [(String, JSONValue)] {
        let once: Set<String> = [LayerKind.embedding.rawValue, LayerKind.lmHead.rawValue, LayerKind.output.rawValue]
        let factor = Double(allBlocks) / Double(measuredBlocks)
        func scaled(_ value: (ModelReport.Part) -> Double) -> Double {
            parts.reduce(0) { $0 + value($1) * (once.contains($1.name) ? 1 : factor) }
        }
        return [
            ("blocks_measured", .integer(measuredBlocks)), ("blocks_in_model", .integer(allBlocks)),
            (
                "extrapolated_to_all_blocks",
                .object([
                    ("online_seconds", .number(scaled { $0.seconds })),
                    ("key_bytes_server", .integer(Int(scaled { Double($0.keyBytes.server) }))),
                    ("key_bytes_client", .integer(Int(scaled { Double($0.keyBytes.client) }))),
                    ("client_sent", .integer(Int(scaled { Double($0.bytesSent) }))),
                    ("client_received", .integer(Int(scaled { Double($0.bytesReceived) }))),
                    ("rounds", .integer(Int(scaled { Double($0.rounds) }))),
                ])
            ),
        ]
    }
}
