import FSS
import Foundation
import Models
import Protocols
import Ring
import Testing
import Transport

/// The `sigma` executable built beside the test bundle.
let sigmaExecutable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    .appendingPathComponent("sigma")

/// Runs `sigma` with `arguments`; returns (exit status, stdout, stderr).
func sigma(_ arguments: [String]) throws -> (Int32, String, String) {
    let process = Process()
    process.executableURL = sigmaExecutable
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let output = out.fileHandleForReading.readDataToEndOfFile()
    let errors = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self), String(decoding: errors, as: UTF8.self))
}

@Suite("Models and the sigma roles", .serialized)
struct ModelTests {
    @Test("the MLP in fixed point is close to float, and the float backend is exact arithmetic")
    func accuracy() throws {
        let model = MLP.demo()
        let float = try model.forward(FloatEvaluator(), input: MLP.demoInput)!
        let fixed = try model.forward(RingEvaluator(Cleartext(), ring: model.ring), input: MLP.demoInput)!
        #expect(float.count == 10)
        #expect(zip(float, fixed).allSatisfy { abs($0 - $1) < 0.01 }, "\(float) vs \(fixed)")
        let first = model.layers[0]
        let manual = (0..<first.inputs).reduce(Double(first.bias![0])) {
            $0 + MLP.demoInput[$1] * Double(first.weights![$1 * first.outputs])
        }
        let layer = try FloatEvaluator().linear(MLP.demoInput, first, rows: 1)
        #expect(abs(layer[0] - manual) < 1e-12)
    }

    @Test("dealer, server and client as three processes over TCP equal the cleartext result bit for bit")
    func endToEnd() throws {
        let input = (0..<16).map { Double($0) / 8 - 1 }
        let (status, output, errors) = try sigma([
            "run", "--json", "--input", input.map { String($0) }.joined(separator: ","),
        ])
        #expect(status == 0, "\(errors)")
        let report = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
        let secure = report?["output"] as? [Double]
        let model = MLP.demo()
        let cleartext = try model.forward(RingEvaluator(Cleartext(), ring: model.ring), input: input)
        #expect(secure != nil && secure == cleartext)
        #expect((report?["rounds"] as? Int ?? 0) > 0)
        // The online breakdown covers every round and byte, by part of the model.
        let breakdown = report?["online_breakdown"] as? [String: [String: Any]] ?? [:]
        #expect(Set(breakdown.keys) == ["input", "matmul", "truncation", "activation", "output"])
        let total = { (field: String) in breakdown.values.reduce(0) { $0 + ($1[field] as? Int ?? 0) } }
        #expect(total("rounds") == report?["rounds"] as? Int)
        #expect(total("bytes_sent") == report?["bytes_sent"] as? Int)
        #expect(total("bytes_received") == report?["bytes_received"] as? Int)
    }

    /// A fresh deployment's credentials in `base/credentials`: the role's file.
    func credentials(_ base: String) throws -> (Credentials.Role) -> [String] {
        let directory = base + "/credentials"
        if !FileManager.default.fileExists(atPath: directory) {
            let (status, _, errors) = try sigma(["credentials", "--out", directory])
            #expect(status == 0, "\(errors)")
        }
        return { ["--credentials", directory + "/\($0.rawValue).cred"] }
    }

    /// Starts `sigma server` with `arguments` and returns it with its port once it listens.
    func startServer(_ arguments: [String]) throws -> (Process, Pipe, String) {
        let server = Process()
        server.executableURL = sigmaExecutable
        server.arguments = ["server", "--port", "0"] + arguments
        let serverErrors = Pipe()
        server.standardError = serverErrors
        try server.run()
        let port =
            waitFor("listening on port ", in: serverErrors).components(separatedBy: "listening on port ")
            .last?.split(separator: "\n").first.map(String.init) ?? "0"
        return (server, serverErrors, port)
    }

    /// Reads `pipe` until a complete line containing `text` arrived (or the writer closed it); returns what it read.
    @discardableResult
    func waitFor(_ text: String, in pipe: Pipe) -> String {
        var log = ""
        while !log.contains(text) || !log.hasSuffix("\n") {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            log += String(decoding: chunk, as: UTF8.self)
        }
        return log
    }

    @Test("the server's masked weights cross once per model and epoch; the client's cache serves later inferences")
    func maskedWeightsOncePerModel() throws {
        let base = NSTemporaryDirectory() + "sigma-e2e-weights-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let role = try credentials(base)
        for (name, epoch) in [("a", "0"), ("b", "0"), ("c", "1")] {
            #expect(try sigma(["dealer", "--keys", base + "/" + name, "--weight-epoch", epoch] + role(.dealer)).0 == 0)
        }
        var outputs: [[Double]] = []
        for (name, expectReceived) in [("a", true), ("b", false), ("c", true)] {
            let (server, _, port) = try startServer(["--keys", base + "/\(name)/server.key"] + role(.server))
            let (status, output, errors) = try sigma(
                [
                    "client", "--keys", base + "/\(name)/client.key", "--connect", "127.0.0.1:\(port)", "--json",
                    "--weights-cache", base + "/cache",
                ] + role(.client))
            server.waitUntilExit()
            #expect(status == 0, "\(errors)")
            let report = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
            #expect(report?["masked_weights_received"] as? Bool == expectReceived, "\(name)")
            outputs.append(report?["output"] as? [Double] ?? [])
        }
        let model = MLP.demo()
        let cleartext = try model.forward(RingEvaluator(Cleartext(), ring: model.ring), input: MLP.demoInput)
        #expect(outputs.allSatisfy { $0 == cleartext })
        #expect(FileManager.default.fileExists(atPath: role(.server)[1] + ".weights"))
    }

    @Test("a client and server with keys from different dealer runs refuse each other; keys are single-use")
    func mismatchedSessions() throws {
        let base = NSTemporaryDirectory() + "sigma-e2e-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let role = try credentials(base)
        #expect(try sigma(["dealer", "--keys", base + "/a"] + role(.dealer)).0 == 0)
        #expect(try sigma(["dealer", "--keys", base + "/b"] + role(.dealer)).0 == 0)
        let (server, serverErrors, port) = try startServer(
            ["--keys", base + "/a/server.key", "--timeout", "20"] + role(.server))
        let (status, _, errors) = try sigma(
            ["client", "--keys", base + "/b/client.key", "--connect", "127.0.0.1:\(port)"] + role(.client))
        server.waitUntilExit()
        let serverLog = String(decoding: serverErrors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(status != 0 && errors.contains("another dealer session"), "\(errors)")
        #expect(server.terminationStatus != 0 && serverLog.contains("another dealer session"), "\(serverLog)")
        // Both key files were opened once, so they are spent.
        let again = try sigma(
            ["client", "--keys", base + "/b/client.key", "--connect", "127.0.0.1:1"] + role(.client))
        #expect(again.0 != 0 && again.2.contains("already used"), "\(again.2)")
        let wrongRole = try sigma(
            ["client", "--keys", base + "/a/server.key", "--connect", "127.0.0.1:1"] + role(.client))
        #expect(wrongRole.0 != 0)
        let noCredentials = try sigma(["dealer", "--keys", base + "/c"])
        #expect(noCredentials.0 != 0 && noCredentials.2.contains("--credentials FILE is required"))
    }

    @Test("a client with another deployment's TLS key is refused before any protocol traffic")
    func wrongCredentials() throws {
        let base = NSTemporaryDirectory() + "sigma-e2e-tls-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let role = try credentials(base)
        #expect(try sigma(["dealer", "--keys", base] + role(.dealer)).0 == 0)
        // The client's own key-file secret, but another deployment's server–client key.
        let other = Credentials.generate()[.client]!
        let mine = try Credentials.load(path: role(.client)[1], as: .client)
        var forged = mine
        forged.serverClientKey = other.serverClientKey
        let forgedPath = base + "/forged.cred"
        #expect(
            FileManager.default.createFile(
                atPath: forgedPath, contents: Data(forged.encoded.utf8), attributes: [.posixPermissions: 0o600]))
        let (server, serverErrors, port) = try startServer(
            ["--keys", base + "/server.key", "--timeout", "20"] + role(.server))
        let (status, output, errors) = try sigma(
            ["client", "--keys", base + "/client.key", "--connect", "127.0.0.1:\(port)", "--credentials", forgedPath])
        server.waitUntilExit()
        let serverLog = String(decoding: serverErrors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(status != 0 && output.isEmpty && errors.contains("refused before any protocol traffic"), "\(errors)")
        #expect(
            server.terminationStatus != 0 && serverLog.contains("refused before any protocol traffic"), "\(serverLog)")
        #expect(!serverLog.contains("connected to the client"))
    }

    @Test(
        "a server that dies or stalls mid-inference makes the client exit with an error within the timeout, printing no result",
        arguments: ["killed", "stalled"])
    func peerFailure(fault: String) throws {
        let base = NSTemporaryDirectory() + "sigma-e2e-\(fault)-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let role = try credentials(base)
        let job = ["--model", fixtures.appendingPathComponent("models/gpt2-tiny").path, "--tokens", "8"]
        #expect(try sigma(["dealer", "--keys", base] + role(.dealer) + job).0 == 0)
        let (server, serverErrors, port) = try startServer(
            ["--keys", base + "/server.key", "--timeout", "60"] + role(.server) + job)
        let client = Process()
        client.executableURL = sigmaExecutable
        let timeout = 3.0
        client.arguments =
            [
                "client", "--keys", base + "/client.key", "--connect", "127.0.0.1:\(port)", "--timeout", "\(timeout)",
                "--ids", "1,2,3,4,5,6,7,8", "--json",
            ] + role(.client) + job
        let clientOutput = Pipe()
        let clientErrors = Pipe()
        client.standardOutput = clientOutput
        client.standardError = clientErrors
        try client.run()
        waitFor("connected to the client", in: serverErrors)
        kill(server.processIdentifier, SIGSTOP)  // mid-inference: the online phase takes over a second
        let start = Date()
        if fault == "killed" { kill(server.processIdentifier, SIGKILL) }
        let output = clientOutput.fileHandleForReading.readDataToEndOfFile()
        let errors = String(decoding: clientErrors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        client.waitUntilExit()
        let elapsed = Date().timeIntervalSince(start)
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
        #expect(client.terminationStatus != 0 && output.isEmpty, "\(errors)")
        if fault == "killed" {
            #expect(errors.contains("closed the connection") && elapsed < timeout, "\(errors) after \(elapsed) s")
        } else {
            #expect(
                errors.contains("sent nothing for 3.0 s") && elapsed >= timeout * 0.9 && elapsed < timeout + 10,
                "\(errors) after \(elapsed) s")
        }
    }

    @Test("hostile command-line inputs: each a clear error and a non-zero exit, never a crash; keys are not spent")
    func hostileArguments() throws {
        let base = NSTemporaryDirectory() + "sigma-e2e-args-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let role = try credentials(base)
        let model = fixtures.appendingPathComponent("models/gpt2-tiny").path
        let job = ["--model", model, "--tokens", "4"]
        #expect(try sigma(["dealer", "--keys", base + "/keys"] + role(.dealer) + job).0 == 0)
        let client = ["client", "--keys", base + "/keys/client.key", "--connect", "127.0.0.1:1"] + role(.client) + job
        let unsupported = base + "/t5"
        try FileManager.default.createDirectory(atPath: unsupported, withIntermediateDirectories: true)
        try Data(#"{"model_type": "t5", "d_model": 8}"#.utf8).write(
            to: URL(fileURLWithPath: unsupported + "/config.json"))
        let cases: [(String, [String], String)] = [
            ("prompt longer than the keys", client + ["--ids", "1,2,3,4,5"], "the keys are for 4 tokens"),
            ("token id outside the vocabulary", client + ["--ids", "1,2,3,50257"], "not a whole number in 0..<50257"),
            ("huge token id", client + ["--ids", "1,2,3,1e300"], "not a whole number"),
            ("fractional token id", client + ["--ids", "1,2,3,2.5"], "not a whole number"),
            (
                "prompt longer than the model's positions",
                ["dealer", "--keys", base + "/long"] + role(.dealer) + ["--model", model, "--tokens", "100000"],
                "the model takes 1 to"
            ),
            (
                "unsupported architecture",
                ["dealer", "--keys", base + "/t5keys"] + role(.dealer) + ["--model", unsupported, "--tokens", "4"],
                "unsupported model_type 't5'"
            ),
            (
                "missing credentials", ["dealer", "--keys", base + "/x", "--credentials", base + "/none.cred"],
                "cannot read"
            ),
            ("not a key file", ["server", "--keys", role(.server)[1]] + role(.server), "not a Sigma key file"),
            (
                "GapARS for a model whose range certificate does not allow it at this bitwidth",
                [
                    "server", "--keys", base + "/none.key", "--model", "bert-tiny", "--tokens", "4", "--truncation",
                    "gap",
                ]
                    + role(.server),
                "GapARS is exact only from"
            ),
        ]
        for (name, arguments, message) in cases {
            let (status, output, errors) = try sigma(arguments)
            #expect(status == 1 || status == 2, "\(name): exit \(status)")
            #expect(errors.contains(message) && output.isEmpty, "\(name): \(errors)")
        }
        // None of the refused inputs spent the client's keys: they still open (and fail only at the connection).
        let (status, _, errors) = try sigma(client + ["--ids", "1,2,3,4", "--timeout", "1"])
        #expect(status != 0 && errors.contains("could not connect"), "\(errors)")
    }

    @Test("bench model runs the first blocks of a named shape and labels the whole-model figures as extrapolated")
    func benchBlocks() throws {
        let (status, output, errors) = try sigma([
            "bench", "model", "--model", "bert-tiny", "--seq", "8", "--blocks", "1", "--json",
        ])
        #expect(status == 0, "\(errors)")
        let report = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
        #expect(report?["blocks_measured"] as? Int == 1 && report?["blocks_in_model"] as? Int == 2)
        let whole = report?["extrapolated_to_all_blocks"] as? [String: Any]
        let measuredRounds = report?["rounds"] as? Int ?? 0
        let wholeRounds = whole?["rounds"] as? Int ?? 0
        // One block of two: the per-block rounds double, the embedding's and the output's do not.
        #expect(wholeRounds > measuredRounds && wholeRounds < 2 * measuredRounds, "\(measuredRounds) → \(wholeRounds)")
        let folder = fixtures.appendingPathComponent("models/gpt2-tiny").path
        let refused = try sigma(["bench", "model", "--model", folder, "--blocks", "1"])
        #expect(refused.0 != 0 && refused.2.contains("--blocks applies to the named shapes"))
    }
}
