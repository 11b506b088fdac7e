import FSS
import Foundation
import Models
import Protocols
import Ring
import SigmaBench
import Transport

/// The three roles of a deployment, each its own process: the dealer (offline), the server (P0, holds the
/// weights) and the client (P1, holds the input, alone learns the output).
enum Roles {
    /// The model every role runs. Only the server holds its weights.
    static func model(for party: Party?) -> MLP { party == .p0 ? MLP.demo() : MLP.demo().shapeOnly }

    static func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }

    /// `sigma dealer --keys DIR`: writes DIR/server.key and DIR/client.key for one inference.
    static func dealer(_ options: Options) throws {
        let directory = options.required("--keys")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let model = model(for: nil)
        var random = SecureRandom()
        let session = (0..<16).map { _ in UInt8(truncatingIfNeeded: random.next(bits: 8)) }
        let parameters = Array("mlp n=\(model.ring.bitwidth) f=\(model.ring.scale)".utf8)
        let start = DispatchTime.now()
        let files = try [Party.p0, .p1].map { party in
            try KeyFileWriter(
                path: directory + (party == .p0 ? "/server.key" : "/client.key"),
                header: KeyFileHeader(
                    party: party, sessionID: session, modelFingerprint: model.fingerprint, parameters: parameters))
        }
        let dealer = Dealer(p0: files[0], p1: files[1], random: random.split())
        _ = try model.forward(RingEvaluator(dealer, ring: model.ring), input: nil)
        for file in files { try file.finish() }
        printError(
            "dealer: wrote \(files[0].path) (\(dealer.p0.bytesWritten) B) and \(files[1].path) "
                + "(\(dealer.p1.bytesWritten) B) in \(String(format: "%.3f", seconds(since: start))) s")
    }

    /// Opens this party's key file and checks that it was made for this model.
    static func openKeys(_ path: String, party: Party, model: MLP) throws -> KeyFile {
        let file = try KeyFile(path: path, party: party)
        guard file.header.modelFingerprint == model.fingerprint else {
            throw RoleError("\(path) holds keys for another model")
        }
        return file
    }

    /// `sigma server --keys FILE --port P`: serves one inference; prints only statistics.
    static func server(_ options: Options) throws {
        let model = model(for: .p0)
        let keys = try openKeys(options.required("--keys"), party: .p0, model: model)
        let listener = try TCPListener(
            host: options.string("--host") ?? "127.0.0.1",
            port: UInt16(options.integer("--port", default: 0, range: 0...65535)))
        printError("server: listening on port \(listener.port)")
        let timeout = options.number("--timeout", default: 60)
        let channel = try listener.accept(
            handshake: Handshake(role: .server, modelFingerprint: model.fingerprint, sessionID: keys.header.sessionID),
            timeout: timeout)
        let start = DispatchTime.now()
        let party = PartyContext(party: .p0, keys: keys.reader(), channel: channel)
        _ = try model.forward(RingEvaluator(party, ring: model.ring), input: nil)
        let stats = channel.statistics
        printError(
            "server: done in \(String(format: "%.3f", seconds(since: start))) s, sent \(stats.bytesSent) B, "
                + "received \(stats.bytesReceived) B, \(stats.rounds) rounds")
        channel.close()
    }

    /// `sigma client --keys FILE --connect HOST:PORT [--input v,…] [--json]`: runs one inference, prints the output.
    static func client(_ options: Options) throws {
        let model = model(for: .p1)
        let keys = try openKeys(options.required("--keys"), party: .p1, model: model)
        let input = options.numbers("--input") ?? MLP.demoInput
        guard input.count == model.inputWidth else {
            throw RoleError("the model takes \(model.inputWidth) inputs, --input has \(input.count)")
        }
        let (host, port) = options.address("--connect")
        let channel = try TCPChannel.connect(
            host: host, port: port,
            handshake: Handshake(role: .client, modelFingerprint: model.fingerprint, sessionID: keys.header.sessionID),
            timeout: options.number("--timeout", default: 60))
        let start = DispatchTime.now()
        let party = PartyContext(party: .p1, keys: keys.reader(), channel: channel)
        guard let output = try model.forward(RingEvaluator(party, ring: model.ring), input: input) else {
            throw RoleError("the client received no output")
        }
        let online = seconds(since: start)
        let stats = channel.statistics
        channel.close()
        if options.has("--json") {
            print(
                JSONValue.object([
                    ("output", .array(output.map { .number($0) })),
                    ("online_seconds", .number(online)),
                    ("bytes_sent", .integer(stats.bytesSent)),
                    ("bytes_received", .integer(stats.bytesReceived)),
                    ("rounds", .integer(stats.rounds)),
                    ("key_bytes", .integer(keys.payloadBytes)),
                ]).text)
        } else {
            print("output: " + output.map { String(format: "%.4f", $0) }.joined(separator: " "))
            printError(
                "client: online \(String(format: "%.3f", online)) s, sent \(stats.bytesSent) B, received "
                    + "\(stats.bytesReceived) B, \(stats.rounds) rounds")
        }
    }
}

struct RoleError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
