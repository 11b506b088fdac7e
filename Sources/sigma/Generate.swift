import Foundation
import Models
import SigmaBench

/// `sigma run --model DIR --prompt TEXT --max-new-tokens N`: greedy generation, one secure inference per new
/// token with fresh keys; the dealer, the server and the client run as three processes over loopback TCP.
enum Generate {
    static func run(_ options: Options) throws {
        let folder = options.required("--model")
        let config = try TransformerConfig(folder: folder)
        if config.architecture == .bert { return try embed(options, folder: folder, config: config) }
        guard options.string("--text") == nil else {
            throw RoleError("--text is for BERT models; use --prompt to generate")
        }
        let prompt = options.required("--prompt")
        let newTokens = options.integer("--max-new-tokens", default: 8, range: 1...4096)
        let tokenizer = try GPT2Tokenizer(folder: folder)
        var ids = tokenizer.encode(prompt)
        guard !ids.isEmpty else { throw RoleError("the prompt has no tokens") }
        guard ids.count + newTokens - 1 <= config.positions else {
            throw RoleError(
                "the prompt has \(ids.count) tokens; with \(newTokens) new ones that exceeds the model's \(config.positions) positions"
            )
        }
        let executable = Run.ownExecutable
        let base = NSTemporaryDirectory() + "sigma-generate-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let bits =
            (options.string("--bits").map { ["--bits", $0] } ?? [])
            + (try Job.certifiedArguments(options))
        var totals = (online: 0.0, keygen: 0.0, sent: 0, received: 0, rounds: 0, clientKeys: 0, serverKeys: 0)
        var last: [String: Any] = [:]
        let json = options.has("--json")
        if !json { FileHandle.standardOutput.write(Data(prompt.utf8)) }
        for step in 0..<newTokens {
            let directory = base + "/\(step)"
            let model = ["--model", folder, "--tokens", String(ids.count)] + bits
            let run = try Run.secureRun(
                executable, directory: directory, job: model,
                clientArguments: ["--ids", ids.map(String.init).joined(separator: ",")],
                insecure: options.has("--insecure-transport"), streamKeys: options.has("--stream-keys"),
                inlineProducts: options.has("--inline-products"))
            guard let next = run.client["next_token"] as? Int else {
                throw RoleError("step \(step + 1) returned no token")
            }
            let report = run.client
            totals.keygen += run.keygenSeconds
            totals.serverKeys += fileSize(directory + "/server.key")
            totals.clientKeys += fileSize(directory + "/client.key")
            try? FileManager.default.removeItem(atPath: directory)
            totals.online += report["online_seconds"] as? Double ?? 0
            totals.sent += report["bytes_sent"] as? Int ?? 0
            totals.received += report["bytes_received"] as? Int ?? 0
            totals.rounds += report["rounds"] as? Int ?? 0
            let before = tokenizer.decode(ids)
            ids.append(next)
            last = report
            if json {
                printError("step \(step + 1)/\(newTokens): token \(next)")
            } else {
                let text = tokenizer.decode(ids)
                FileHandle.standardOutput.write(Data(String(text.dropFirst(before.count)).utf8))
            }
        }
        if json {
            print(
                JSONValue.object([
                    ("tokens", .array(ids.map { .integer($0) })),
                    ("text", .string(tokenizer.decode(ids))),
                    ("next_token", .integer(last["next_token"] as? Int ?? -1)),
                    ("top5", .array((last["top5"] as? [Int] ?? []).map { .integer($0) })),
                    ("top5_logits", .array((last["top5_logits"] as? [Double] ?? []).map { .number($0) })),
                    ("transport", .string(last["transport"] as? String ?? "")),
                    ("online_seconds", .number(totals.online)),
                    ("keygen_seconds", .number(totals.keygen)),
                    (
                        "bytes_sent",
                        .object([("server", .integer(totals.received)), ("client", .integer(totals.sent))])
                    ),
                    ("rounds", .integer(totals.rounds)),
                    (
                        "key_bytes",
                        .object([("server", .integer(totals.serverKeys)), ("client", .integer(totals.clientKeys))])
                    ),
                ]).text)
        } else {
            print("")
            printError(
                "sigma: \(newTokens) tokens, each a secure inference (dealer, server, client as processes; "
                    + "\(last["transport"] as? String ?? "")): "
                    + "online \(String(format: "%.2f", totals.online)) s, keys \(String(format: "%.2f", totals.keygen)) s, "
                    + "client sent \(totals.sent) B and received \(totals.received) B in \(totals.rounds) rounds")
        }
    }

    /// `sigma run --model BERT --text TEXT`: one secure inference; prints the L2-normalised mean-pooled embedding.
    static func embed(_ options: Options, folder: String, config: TransformerConfig) throws {
        let text = options.required("--text")
        let ids = try WordPieceTokenizer(folder: folder).encode(text)
        guard ids.count <= config.positions else {
            throw RoleError("the text has \(ids.count) tokens; the model takes at most \(config.positions)")
        }
        let executable = Run.ownExecutable
        let directory = NSTemporaryDirectory() + "sigma-embed-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let model =
            ["--model", folder, "--tokens", String(ids.count)]
            + (options.string("--bits").map { ["--bits", $0] } ?? [])
            + (try Job.certifiedArguments(options))
        let run = try Run.secureRun(
            executable, directory: directory, job: model,
            clientArguments: ["--ids", ids.map(String.init).joined(separator: ",")],
            insecure: options.has("--insecure-transport"), streamKeys: options.has("--stream-keys"),
            inlineProducts: options.has("--inline-products"))
        let report = run.client
        let result = run.clientJSON
        guard report["embedding"] != nil else { throw RoleError("the client returned no embedding") }
        if options.has("--json") {
            print(String(decoding: result, as: UTF8.self))
        } else {
            let embedding = report["embedding"] as? [Double] ?? []
            print(
                "embedding (\(embedding.count) values, L2-normalised): "
                    + embedding.prefix(8).map { String(format: "%.4f", $0) }.joined(separator: " ") + " …")
            printError(
                "sigma: online \(String(format: "%.2f", report["online_seconds"] as? Double ?? 0)) s, "
                    + "\(report["rounds"] ?? 0) rounds, \(report["transport"] ?? "")"
            )
        }
    }

    static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
    }
}
