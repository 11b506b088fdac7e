import FSS
import Foundation
import Models
import Protocols
import Ring
import Testing

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
    }

    @Test("a client and server with keys from different dealer runs refuse each other; keys are single-use")
    func mismatchedSessions() throws {
        let base = NSTemporaryDirectory() + "sigma-e2e-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: base) }
        #expect(try sigma(["dealer", "--keys", base + "/a"]).0 == 0)
        #expect(try sigma(["dealer", "--keys", base + "/b"]).0 == 0)
        let server = Process()
        server.executableURL = sigmaExecutable
        server.arguments = ["server", "--keys", base + "/a/server.key", "--port", "0", "--timeout", "20"]
        let serverErrors = Pipe()
        server.standardError = serverErrors
        try server.run()
        // The server names the port it was given.
        var log = ""
        while !log.contains("listening on port ") || !log.hasSuffix("\n") {
            let chunk = serverErrors.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            log += String(decoding: chunk, as: UTF8.self)
        }
        let port = log.components(separatedBy: "listening on port ").last?.split(separator: "\n").first ?? "0"
        let (status, _, errors) = try sigma([
            "client", "--keys", base + "/b/client.key", "--connect", "127.0.0.1:\(port)",
        ])
        server.waitUntilExit()
        let serverLog = log + String(decoding: serverErrors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(status != 0 && errors.contains("another dealer session"), "\(errors)")
        #expect(server.terminationStatus != 0 && serverLog.contains("another dealer session"), "\(serverLog)")
        // Both key files were opened once, so they are spent.
        let again = try sigma(["client", "--keys", base + "/b/client.key", "--connect", "127.0.0.1:1"])
        #expect(again.0 != 0 && again.2.contains("already used"), "\(again.2)")
        let wrongRole = try sigma([
            "client", "--keys", base + "/a/server.key", "--connect",
            "127.0.0.1:1",
        ])
        #expect(wrongRole.0 != 0)
    }
}
