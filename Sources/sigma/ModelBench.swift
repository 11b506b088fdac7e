import Foundation
import Models
import SigmaBench

/// `sigma bench model --model NAME --seq L [--json]`: dealer, server and client as three processes on this machine
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
        let executable = URL(
            fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                ?? CommandLine.arguments[0])
        let directory = NSTemporaryDirectory() + "sigma-bench-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let job =
            ["--model", model, "--tokens", String(seq)] + (options.string("--bits").map { ["--bits", $0] } ?? [])
        var state: UInt64 = 42
        let ids = (0..<seq).map { _ -> Int in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(config.vocabulary))
        }
        printError("bench model: \(model), \(seq) tokens: key generation…")
        let dealerLog = Pipe()
        let dealerStart = Date()
        let dealer = try Run.spawn(executable, ["dealer", "--keys", directory] + job, stderr: dealerLog)
        let dealerText = String(decoding: dealerLog.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        dealer.waitUntilExit()
        guard dealer.terminationStatus == 0 else { throw RoleError("the dealer failed: \(dealerText)") }
        let keygenWall = Date().timeIntervalSince(dealerStart)
        printError("bench model: online phase…")
        let serverLog = Pipe()
        let server = try Run.spawn(
            executable, ["server", "--keys", directory + "/server.key", "--port", "0"] + job, stderr: serverLog)
        guard let port = try Run.readPort(from: serverLog.fileHandleForReading) else {
            server.terminate()
            throw RoleError("the server did not start")
        }
        let clientOutput = Pipe()
        let client = try Run.spawn(
            executable,
            [
                "client", "--keys", directory + "/client.key", "--connect", "127.0.0.1:\(port)", "--json", "--ids",
                ids.map(String.init).joined(separator: ","), "--timeout", "600",
            ] + job,
            stdout: clientOutput)
        let clientText = clientOutput.fileHandleForReading.readDataToEndOfFile()
        let serverText = String(decoding: serverLog.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        client.waitUntilExit()
        server.waitUntilExit()
        guard client.terminationStatus == 0, server.terminationStatus == 0,
            let clientStats = try? JSONSerialization.jsonObject(with: clientText) as? [String: Any]
        else { throw RoleError("the online phase failed:\n\(serverText)") }
        let dealerStats = stats(dealerText)
        let serverStats = stats(serverText)
        let result = JSONValue.object([
            ("model", .string(model)), ("seq", .integer(seq)),
            ("ring", .string("n=\(options.string("--bits") ?? "the reference's for this model") f=12")),
            ("online_seconds", .number(clientStats["online_seconds"] as? Double ?? 0)),
            ("keygen_seconds", .number(dealerStats["keygen_seconds"] as? Double ?? keygenWall)),
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
                "peak_rss_bytes",
                .object([
                    ("dealer", .integer(dealerStats["peak_rss_bytes"] as? Int ?? 0)),
                    ("server", .integer(serverStats["peak_rss_bytes"] as? Int ?? 0)),
                    ("client", .integer(clientStats["peak_rss_bytes"] as? Int ?? 0)),
                ])
            ),
        ])
        print(options.has("--json") ? result.text : renderTable(result, title: "sigma bench model"))
    }

    static func stats(_ log: String) -> [String: Any] {
        guard let line = log.split(separator: "\n").last(where: { $0.hasPrefix("stats: ") }),
            let object = try? JSONSerialization.jsonObject(with: Data(line.dropFirst(7).utf8)) as? [String: Any]
        else { return [:] }
        return object
    }
}
