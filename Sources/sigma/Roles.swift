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
    static func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }

    /// `sigma credentials --out DIR`: one deployment's secrets, a file per role (owner-only, never overwritten).
    static func credentials(_ options: Options) throws {
        let paths = try Credentials.write(Credentials.generate(), to: options.required("--out"))
        print(
            """
            wrote \(paths.joined(separator: ", "))
            give each role only its own file (over a channel you trust, e.g. scp): the dealer's to the dealer, the
            server's to the server, the client's to the client; each role takes it with --credentials FILE
            """)
    }

    /// The role's credentials, or nil under `--insecure-transport` (said on stderr, and in every report).
    static func credentials(_ options: Options, as role: Credentials.Role) throws -> Credentials? {
        if options.has("--insecure-transport") {
            guard options.string("--credentials") == nil else {
                throw RoleError("--credentials and --insecure-transport exclude each other")
            }
            printError("\(role): --insecure-transport: no encryption, no authentication of the peer or of key files")
            return nil
        }
        guard let path = options.string("--credentials") else {
            throw RoleError(
                "--credentials FILE is required (create a deployment's files with `sigma credentials --out DIR`), "
                    + "or pass --insecure-transport to run without TLS and key-file authentication")
        }
        return try Credentials.load(path: path, as: role)
    }

    /// `sigma dealer --keys DIR [--model DIR --tokens T]`: writes DIR/server.key and DIR/client.key for one
    /// inference.
    static func dealer(_ options: Options) throws {
        let credentials = try credentials(options, as: .dealer)
        let directory = options.required("--keys")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let job = Job(options)
        var random = SecureRandom()
        let session = random.bytes(16)
        let start = DispatchTime.now()
        // Each party's online keys and its preprocessing keys (folded with the masked weights before the online
        // phase: `PartyContext.preprocess`), the latter under a session id of their own so no MAC nonce repeats.
        let files = try [Party.p0, .p1].flatMap { party in
            try [session, preprocessingSession(session)].map { id in
                try KeyFileWriter(
                    path: preprocessingPath(
                        directory + (party == .p0 ? "/server.key" : "/client.key"), if: id != session),
                    header: KeyFileHeader(party: party, sessionID: id, modelFingerprint: try job.fingerprint()),
                    secret: try credentials?.keyFileSecret(for: party))
            }
        }
        let dealer = Dealer(p0: files[0], p1: files[2], random: random.split(), preprocessing: (files[1], files[3]))
        try dealer.beginWeightMasks(
            seed: try weightMaskSeed(options, job: job, credentials: credentials, random: &random))
        showProgress("keys  ")
        _ = try job.run(dealer, party: nil, input: nil)
        dealer.closeLayer()
        for file in files { try file.finish() }
        let elapsed = seconds(since: start)
        printError(
            "dealer: wrote \(files[0].path) (\(dealer.p0.bytesWritten) B) and \(files[2].path) "
                + "(\(dealer.p1.bytesWritten) B), with preprocessing keys beside them (.pre.key: "
                + "\(dealer.preprocessing?.p0.bytesWritten ?? 0) B, \(dealer.preprocessing?.p1.bytesWritten ?? 0) B), in \(String(format: "%.3f", elapsed)) s"
        )
        printError(
            "stats: "
                + JSONValue.object([
                    ("role", .string("dealer")), ("keygen_seconds", .number(elapsed)),
                    (
                        "key_bytes_server",
                        .integer(dealer.p0.bytesWritten + (dealer.preprocessing?.p0.bytesWritten ?? 0))
                    ),
                    (
                        "key_bytes_client",
                        .integer(dealer.p1.bytesWritten + (dealer.preprocessing?.p1.bytesWritten ?? 0))
                    ),
                    ("preprocessing_key_bytes_server", .integer(dealer.preprocessing?.p0.bytesWritten ?? 0)),
                    ("preprocessing_key_bytes_client", .integer(dealer.preprocessing?.p1.bytesWritten ?? 0)),
                    (
                        "key_breakdown",
                        .object(
                            LayerKind.allCases.compactMap { kind in
                                dealer.keyBytesByLayer[kind].map {
                                    (
                                        kind.rawValue,
                                        .object([("server", .integer($0.p0)), ("client", .integer($0.p1))])
                                    )
                                }
                            })
                    ),
                    ("peak_rss_bytes", .integer(peakResidentBytes())),
                ]).text)
    }

    /// The server's weight masks: under a deployment's credentials, HMAC(dealer–server secret, label ‖ model ‖
    /// epoch), the same for every inference of the model, so the client receives Ŵ once (`MaskedWeightSetup`); a new
    /// `--weight-epoch` gives new masks (needed when the server's weights change). Without credentials, fresh ones.
    static func weightMaskSeed(
        _ options: Options, job: Job, credentials: Credentials?, random: inout SecureRandom
    ) throws -> [UInt8] {
        guard let credentials else { return random.seed() }
        let epoch = options.integer("--weight-epoch", default: 0, range: 0...Int(Int32.max))
        return Array(
            try credentials.derive(
                from: .p0, label: "sigma weight-mask seed 1", context: try job.weightIdentity() + Array("\(epoch)".utf8)
            ).prefix(16))
    }

    /// Opens this party's key file and its preprocessing key file (beside it: `server.key`, `server.pre.key`) and
    /// checks that they were made for this computation and for each other.
    static func openKeys(_ path: String, party: Party, job: Job, credentials: Credentials?) throws -> (
        online: KeyFile, preprocessing: KeyFile
    ) {
        let secret = try credentials?.keyFileSecret(for: party)
        let file = try KeyFile(path: path, party: party, secret: secret)
        guard file.header.modelFingerprint == (try job.fingerprint()) else {
            throw RoleError("\(path) holds keys for another model or prompt length")
        }
        let preprocessing = try KeyFile(path: preprocessingPath(path, if: true), party: party, secret: secret)
        guard preprocessing.header.sessionID == preprocessingSession(file.header.sessionID),
            preprocessing.header.modelFingerprint == file.header.modelFingerprint
        else { throw RoleError("\(preprocessingPath(path, if: true)) belongs to other keys than \(path)") }
        return (file, preprocessing)
    }

    /// `server.key` → `server.pre.key` (when `condition`).
    static func preprocessingPath(_ path: String, if condition: Bool) -> String {
        guard condition else { return path }
        return path.hasSuffix(".key") ? String(path.dropLast(4)) + ".pre.key" : path + ".pre"
    }

    /// The preprocessing key files' session id, derived from the online one.
    static func preprocessingSession(_ session: [UInt8]) -> [UInt8] {
        Array(fingerprint32("preprocessing;" + session.map { String($0, radix: 16) }.joined(separator: ",")).prefix(16))
    }

    /// Folds the products with the server's masked weights before the online phase; returns the seconds it took.
    static func preprocess(
        _ context: PartyContext, keys: KeyFile, job: Job, party: Party, model: TokenModel?
    ) throws -> Double {
        let start = DispatchTime.now()
        try context.preprocess(keys: keys.reader()) { backend in
            _ = try job.run(backend, party: party, input: nil, model: model)
        }
        return seconds(since: start)
    }

    /// Matrix products on every core by default (`--threads T`): online, the products with the server's weights are
    /// the server's alone (the client waits for their reveal), so the server should not leave a core idle.
    static func useThreads(_ options: Options) {
        RingMatrix.defaultThreads = options.integer(
            "--threads", default: ProcessInfo.processInfo.activeProcessorCount, range: 1...256)
    }

    /// `sigma server --keys FILE [--model DIR --tokens T] --port P`: serves one inference; prints only statistics.
    static func server(_ options: Options) throws {
        useThreads(options)
        let job = Job(options)
        let credentials = try credentials(options, as: .server)
        // Loaded once: checked here, before anything listens, and run below.
        let model = try job.model(for: .p0)
        try job.requireCertifiedRanges(model)
        let keys = try openKeys(options.required("--keys"), party: .p0, job: job, credentials: credentials)
        let listener = try TCPListener(
            host: options.string("--host") ?? "127.0.0.1",
            port: UInt16(options.integer("--port", default: 0, range: 0...65535)))
        printError("server: listening on port \(listener.port)")
        let channel = try listener.accept(
            handshake: Handshake(
                role: .server, modelFingerprint: try job.fingerprint(), sessionID: keys.online.header.sessionID),
            security: try credentials?.partyChannelSecurity() ?? .insecure,
            timeout: options.number("--timeout", default: 60))
        printError("server: connected to the client over \(channel.security)")
        let context = PartyContext(party: .p0, keys: keys.online.reader(), channel: channel)
        let setupStart = DispatchTime.now()
        let weightsSent = try MaskedWeightSetup.serve(
            context, channel: channel, collect: job.collectServerWeights(party: .p0, model: model),
            registry: options.string("--credentials").map {
                WeightMaskRegistry(path: options.string("--weight-registry") ?? $0 + ".weights")
            })
        let setup = (seconds: seconds(since: setupStart), statistics: channel.statistics)
        let preprocessingSeconds = try preprocess(
            context, keys: keys.preprocessing, job: job, party: .p0, model: model)
        context.beginOnlinePhase()
        let start = DispatchTime.now()
        showProgress("online")
        _ = try job.run(context, party: .p0, input: nil, model: model)
        let stats = channel.statistics.since(setup.statistics)
        let online = seconds(since: start)
        printError(
            "server: done in \(String(format: "%.3f", online)) s, sent \(stats.bytesSent) B, "
                + "received \(stats.bytesReceived) B, \(stats.rounds) rounds")
        printError(
            "stats: "
                + JSONValue.object([
                    ("role", .string("server")), ("online_seconds", .number(online)),
                    ("transport", .string(channel.security)),
                    ("setup_seconds", .number(setup.seconds)),
                    ("setup_bytes_sent", .integer(setup.statistics.bytesSent)),
                    ("masked_weights_sent", .bool(weightsSent)),
                    ("preprocessing_seconds", .number(preprocessingSeconds)),
                    ("bytes_sent", .integer(stats.bytesSent)),
                    ("rounds", .integer(stats.rounds)), ("peak_rss_bytes", .integer(peakResidentBytes())),
                ]).text)
        channel.close()
    }

    /// `sigma client --keys FILE --connect HOST:PORT [--model DIR --tokens T --ids i,…] [--input v,…] [--json]`:
    /// runs one inference and prints the output (for a model: the last position's top tokens).
    static func client(_ options: Options) throws {
        useThreads(options)
        let job = Job(options)
        let credentials = try credentials(options, as: .client)
        // The input is checked before the keys are opened: opening spends them.
        let input: [Double]
        if case .decoder = job {
            guard let ids = options.numbers("--ids") else {
                throw RoleError("--ids (the prompt's token ids) is required")
            }
            input = ids
            try job.validate(input: input)
        } else {
            input = options.numbers("--input") ?? MLP.demoInput
            guard input.count == MLP.demo().inputWidth else {
                throw RoleError("the model takes \(MLP.demo().inputWidth) inputs")
            }
        }
        let keys = try openKeys(options.required("--keys"), party: .p1, job: job, credentials: credentials)
        let (host, port) = options.address("--connect")
        let channel = try TCPChannel.connect(
            host: host, port: port,
            handshake: Handshake(
                role: .client, modelFingerprint: try job.fingerprint(), sessionID: keys.online.header.sessionID),
            security: try credentials?.partyChannelSecurity() ?? .insecure,
            timeout: options.number("--timeout", default: 60))
        let party = PartyContext(party: .p1, keys: keys.online.reader(), channel: channel)
        let setupStart = DispatchTime.now()
        let model = try job.model(for: .p1)
        let weightsReceived = try MaskedWeightSetup.receive(
            party, channel: channel, collect: job.collectServerWeights(party: .p1, model: model),
            cache: try options.string("--weights-cache").map { try MaskedWeightCache(directory: $0) })
        let setup = (seconds: seconds(since: setupStart), statistics: channel.statistics)
        let preprocessingSeconds = try preprocess(
            party, keys: keys.preprocessing, job: job, party: .p1, model: model)
        party.beginOnlinePhase()
        let start = DispatchTime.now()
        showProgress("online")
        guard let output = try job.run(party, party: .p1, input: input, model: model) else {
            throw RoleError("the client received no output")
        }
        let breakdown = party.layerBreakdown()
        let online = seconds(since: start)
        let stats = channel.statistics.since(setup.statistics)
        channel.close()
        let top = output.indices.sorted { output[$0] > output[$1] }.prefix(5)
        if options.has("--json") {
            var fields: [(String, JSONValue)] = [
                ("online_seconds", .number(online)), ("transport", .string(channel.security)),
                ("setup_seconds", .number(setup.seconds)),
                ("setup_bytes_received", .integer(setup.statistics.bytesReceived)),
                ("masked_weights_received", .bool(weightsReceived)),
                ("preprocessing_seconds", .number(preprocessingSeconds)),
                ("bytes_sent", .integer(stats.bytesSent)),
                ("bytes_received", .integer(stats.bytesReceived)), ("rounds", .integer(stats.rounds)),
                ("key_bytes", .integer(keys.online.payloadBytes + keys.preprocessing.payloadBytes)),
                ("peak_rss_bytes", .integer(peakResidentBytes())),
                (
                    "online_breakdown",
                    .object(
                        LayerKind.allCases.compactMap { kind in
                            breakdown[kind].map { cost in
                                (
                                    kind.rawValue,
                                    .object([
                                        ("seconds", .number(cost.seconds)), ("bytes_sent", .integer(cost.bytesSent)),
                                        ("bytes_received", .integer(cost.bytesReceived)),
                                        ("rounds", .integer(cost.rounds)),
                                    ])
                                )
                            }
                        })
                ),
            ]
            if job.isEncoder {
                let norm = output.reduce(0) { $0 + $1 * $1 }.squareRoot()
                fields.insert(("embedding", .array(output.map { .number($0 / max(norm, 1e-12)) })), at: 0)
            } else if case .decoder = job {
                fields += [
                    ("next_token", .integer(top.first!)), ("top5", .array(top.map { .integer($0) })),
                    ("top5_logits", .array(top.map { .number(output[$0]) })),
                ]
            } else {
                fields.insert(("output", .array(output.map { .number($0) })), at: 0)
            }
            print(JSONValue.object(fields).text)
        } else {
            print("output: " + output.prefix(16).map { String(format: "%.4f", $0) }.joined(separator: " "))
            printError(
                "client: \(channel.security); online \(String(format: "%.3f", online)) s, sent \(stats.bytesSent) B, received "
                    + "\(stats.bytesReceived) B, \(stats.rounds) rounds")
        }
    }
}

struct RoleError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
