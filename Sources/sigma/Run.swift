import Foundation
import Models
import Protocols
import Ring
import Transport

/// `sigma run` / `sigma demo`: dealer, server and client as three processes on this machine, talking TCP over
/// loopback; prints the client's result and checks it against the cleartext fixed-point and float references.
enum Run {
    static func run(_ options: Options) throws {
        let executable = Run.ownExecutable
        let input = options.numbers("--input") ?? MLP.demoInput
        let model = MLP.demo()
        guard input.count == model.inputWidth else { throw RoleError("the model takes \(model.inputWidth) inputs") }
        let directory = NSTemporaryDirectory() + "sigma-run-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let run = try secureRun(
            executable, directory: directory, job: [],
            clientArguments: ["--input", input.map { String($0) }.joined(separator: ",")],
            insecure: options.has("--insecure-transport"), streamKeys: options.has("--stream-keys"),
            inlineProducts: options.has("--inline-products"))
        guard let output = run.client["output"] as? [Double] else { throw RoleError("the client returned no output") }
        let report = run.client
        let result = run.clientJSON

        let cleartext = try model.forward(RingEvaluator(Cleartext(), ring: model.ring), input: input) ?? []
        let float = try model.forward(FloatEvaluator(), input: input) ?? []
        let exact = output == cleartext
        let error = zip(output, float).map { abs($0 - $1) }.max() ?? 0
        if options.has("--json") {
            print(String(decoding: result, as: UTF8.self))
        } else {
            let widths = [model.inputWidth] + model.layers.map(\.outputs)
            print(
                """
                Sigma: secure inference of the built-in MLP (\(widths.map(String.init).joined(separator: " → ")), ReLU, \
                n = \(model.ring.bitwidth), f = \(model.ring.scale))
                  dealer, server and client ran as three processes on 127.0.0.1; \(report["transport"] ?? "")
                  \(run.dealerSummary.replacingOccurrences(of: directory + "/", with: ""))\
                 (process: \(String(format: "%.3f", run.keygenSeconds)) s)
                  online:  \(String(format: "%.3f", report["online_seconds"] as? Double ?? 0)) s, client sent \
                \(report["bytes_sent"] ?? 0) B and received \(report["bytes_received"] ?? 0) B in \(report["rounds"] ?? 0) rounds
                  \(run.serverSummary)
                  output (client only): \(output.map { String(format: "%.4f", $0) }.joined(separator: " "))
                  check:   \(exact ? "equals the cleartext fixed-point result bit for bit" : "DIFFERS from the cleartext fixed-point result")\
                ; largest difference from float64: \(String(format: "%.2e", error))
                """)
        }
        guard exact else { throw RoleError("the secure result differs from the cleartext fixed-point result") }
    }

    /// This program, to start the dealer, the server and the client from.
    static var ownExecutable: URL {
        URL(
            fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                ?? CommandLine.arguments[0])
    }

    /// What one secure run of the three processes returned.
    struct SecureRun {
        /// The client's JSON report, parsed and raw.
        var client: [String: Any]
        var clientJSON: Data
        /// The dealer's and the server's human-readable summaries, and their `stats:` objects.
        var dealerSummary: String
        var serverSummary: String
        var dealerStats: [String: Any]
        var serverStats: [String: Any]
        var keygenSeconds: Double
    }

    /// Runs the dealer (keys into `directory`), then the server and the client as processes over loopback TCP, with
    /// `job` (the model options) given to all three and `clientArguments` to the client; the client reports JSON.
    ///
    /// Unless `insecure`, a fresh deployment's credentials go into `directory/credentials`: TLS between the parties
    /// and authenticated key files, as a real deployment runs.
    ///
    /// `streamKeys`: the dealer streams the keys to the parties instead of writing files (`inlineProducts`: without
    /// a preprocessing stream); keygen then overlaps the parties' start.
    static func secureRun(
        _ executable: URL, directory: String, job: [String], clientArguments: [String], insecure: Bool,
        streamKeys: Bool = false, inlineProducts: Bool = false, dealerArguments: [String] = []
    ) throws -> SecureRun {
        var security: [Credentials.Role: [String]] = [:]
        if insecure {
            for role in Credentials.Role.allCases { security[role] = ["--insecure-transport"] }
        } else {
            let paths = try Credentials.write(Credentials.generate(), to: directory + "/credentials")
            for (role, path) in zip(Credentials.Role.allCases, paths) { security[role] = ["--credentials", path] }
        }
        let keygenStart = Date()
        let dealerLog = Pipe()
        let serverLog = Pipe()
        let clientOutput = Pipe()
        let clientErrors = Pipe()
        let server: Process
        let client: Process
        var keygenSeconds = 0.0
        var dealerText = ""
        var earlierClientErrors = ""
        func runDealer(_ arguments: [String]) throws {
            let dealer = try spawn(executable, ["dealer"] + arguments + security[.dealer]! + job, stderr: dealerLog)
            dealerText = String(decoding: dealerLog.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            dealer.waitUntilExit()
            keygenSeconds = Date().timeIntervalSince(keygenStart)
            guard dealer.terminationStatus == 0 else { throw RoleError("the dealer failed: \(dealerText)") }
        }
        // With streamed keys the parties listen for the dealer, which streams their keys as it generates them;
        // otherwise the dealer writes key files first.
        if !streamKeys { try runDealer(["--keys", directory] + dealerArguments) }
        let keys = { (role: String) in
            streamKeys ? ["--keys-from-dealer", "0"] : ["--keys", directory + "/\(role).key"]
        }
        server = try spawn(
            executable, ["server"] + keys("server") + ["--port", "0"] + security[.server]! + job, stderr: serverLog)
        guard let (ports, _) = try readPorts(from: serverLog.fileHandleForReading, count: streamKeys ? 2 : 1) else {
            server.terminate()
            throw RoleError("the server did not start")
        }
        client = try spawn(
            executable,
            ["client"] + keys("client") + ["--connect", "127.0.0.1:\(ports[ports.count - 1])", "--json"]
                + security[.client]! + clientArguments + job,
            stdout: clientOutput, stderr: clientErrors)
        if streamKeys {
            guard let (clientPorts, text) = try readPorts(from: clientErrors.fileHandleForReading, count: 1) else {
                server.terminate()
                throw RoleError("the client did not start")
            }
            earlierClientErrors = text
            try runDealer(
                ["--stream-to-server", "127.0.0.1:\(ports[0])", "--stream-to-client", "127.0.0.1:\(clientPorts[0])"]
                    + (inlineProducts ? ["--inline-products"] : []))
        }
        let result = clientOutput.fileHandleForReading.readDataToEndOfFile()
        let errors =
            earlierClientErrors
            + String(decoding: clientErrors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        client.waitUntilExit()
        server.waitUntilExit()
        let serverText = String(decoding: serverLog.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard client.terminationStatus == 0, server.terminationStatus == 0,
            let report = try? JSONSerialization.jsonObject(with: result) as? [String: Any]
        else {
            let why = (errors + serverText).split(separator: "\n").filter { $0.hasPrefix("sigma:") }.joined(
                separator: "; ")
            throw RoleError("the secure run failed: \(why.isEmpty ? "client exit \(client.terminationStatus)" : why)")
        }
        return SecureRun(
            client: report, clientJSON: result, dealerSummary: summary(dealerText), serverSummary: summary(serverText),
            dealerStats: stats(dealerText), serverStats: stats(serverText), keygenSeconds: keygenSeconds)
    }

    /// The last human-readable line of a role's log (not its `stats:` line).
    static func summary(_ log: String) -> String {
        log.split(separator: "\n").last(where: { !$0.hasPrefix("stats: ") }).map(String.init) ?? ""
    }

    /// The `stats:` object of a role's log.
    static func stats(_ log: String) -> [String: Any] {
        guard let line = log.split(separator: "\n").last(where: { $0.hasPrefix("stats: ") }),
            let object = try? JSONSerialization.jsonObject(with: Data(line.dropFirst(7).utf8)) as? [String: Any]
        else { return [:] }
        return object
    }

    static func spawn(_ executable: URL, _ arguments: [String], stdout: Any? = nil, stderr: Any? = nil) throws
        -> Process
    {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let stdout { process.standardOutput = stdout }
        if let stderr { process.standardError = stderr }
        try process.run()
        return process
    }

    /// Reads a role's log until it has named `count` ports ("… on port N" lines, in order); returns them and the
    /// text read.
    static func readPorts(from handle: FileHandle, count: Int) throws -> ([UInt16], String)? {
        var text = ""
        while true {
            let ports = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().compactMap { line in
                line.range(of: " on port ").flatMap { UInt16(line[$0.upperBound...]) }
            }
            if ports.count >= count { return (Array(ports.prefix(count)), text) }
            let chunk = handle.availableData
            if chunk.isEmpty { return nil }
            text += String(decoding: chunk, as: UTF8.self)
        }
    }
}
