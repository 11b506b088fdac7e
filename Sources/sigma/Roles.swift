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
    /// inference; or, with `--stream-to-server HOST:PORT --stream-to-client HOST:PORT`, streams the keys to the
    /// parties as it generates them (`KeyStreamSender`; `--inline-products`: no preprocessing stream).
    static func dealer(_ options: Options) throws {
        let credentials = try credentials(options, as: .dealer)
        let job = Job(options)
        var random = SecureRandom()
        let session = random.bytes(16)
        let start = DispatchTime.now()
        let sinks = try keySinks(options, job: job, session: session, credentials: credentials)
        let dealer = Dealer(
            p0: sinks.online[0], p1: sinks.online[1], random: random.split(),
            preprocessing: sinks.preprocessing.map { ($0[0], $0[1]) })
        try dealer.beginWeightMasks(
            seed: try weightMaskSeed(options, job: job, credentials: credentials, random: &random))
        showProgress("keys  ")
        _ = try job.run(dealer, party: nil, input: nil)
        dealer.closeLayer()
        try sinks.finish()
        let elapsed = seconds(since: start)
        printError(
            "dealer: \(sinks.destination) (\(dealer.p0.bytesWritten) B and \(dealer.p1.bytesWritten) B), with "
                + "preprocessing keys (\(dealer.preprocessing?.p0.bytesWritten ?? 0) B, "
                + "\(dealer.preprocessing?.p1.bytesWritten ?? 0) B), in \(String(format: "%.3f", elapsed)) s")
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
                    ("keys_streamed", .bool(sinks.streamed)),
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

    /// Where the dealer's keys go: each party's online and preprocessing streams, as key files or over channels.
    struct DealerSinks {
        var online: [KeySink]
        var preprocessing: [KeySink]?
        var destination: String
        var streamed: Bool
        var finish: () throws -> Void
    }

    static func keySinks(_ options: Options, job: Job, session: [UInt8], credentials: Credentials?) throws
        -> DealerSinks
    {
        let fingerprint = try job.fingerprint()
        if options.string("--stream-to-server") != nil || options.string("--stream-to-client") != nil {
            guard options.string("--keys") == nil else {
                throw RoleError("--keys (files) and --stream-to-server/--stream-to-client exclude each other")
            }
            let timeout = options.number("--timeout", default: 60)
            let inline = options.has("--inline-products")
            let senders = try [Party.p0, .p1].map { party in
                let (host, port) = options.address(party == .p0 ? "--stream-to-server" : "--stream-to-client")
                // The dealer takes the client's side of the Sigma hello; the party learns the session from the stream.
                let channel = try TCPChannel.connect(
                    host: host, port: port,
                    handshake: Handshake(
                        role: .client, modelFingerprint: fingerprint, sessionID: keyStreamHelloSession),
                    security: try credentials?.dealerChannelSecurity(for: party) ?? .insecure, timeout: timeout)
                return try KeyStreamSender(
                    channel: channel, sessionID: session, modelFingerprint: fingerprint, preprocessing: !inline)
            }
            return DealerSinks(
                online: senders.map(\.online), preprocessing: inline ? nil : senders.map { $0.preprocessing! },
                destination: "streamed the keys to the server and the client", streamed: true,
                finish: { for sender in senders { try sender.finish() } })
        }
        let directory = options.required("--keys")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // Each party's online keys and its preprocessing keys (folded with the masked weights before the online
        // phase: `PartyContext.preprocess`), the latter under a session id of their own so no MAC nonce repeats.
        // The online files' pages that stay cached are spread evenly when they cannot all stay (`KeyCachePlan`);
        // the preprocessing files are small and read first.
        let cachePlan = KeyCachePlan(
            budget: options.integer(
                "--key-cache-budget", default: KeyCachePlan.defaultBudget(), range: 0...Int.max))
        let files = try [Party.p0, .p1].flatMap { party in
            try [session, preprocessingSession(session)].map { id in
                try KeyFileWriter(
                    path: preprocessingPath(
                        directory + (party == .p0 ? "/server.key" : "/client.key"), if: id != session),
                    header: KeyFileHeader(party: party, sessionID: id, modelFingerprint: fingerprint),
                    secret: try credentials?.keyFileSecret(for: party), cachePlan: id == session ? cachePlan : nil)
            }
        }
        return DealerSinks(
            online: [files[0], files[2]], preprocessing: [files[1], files[3]],
            destination: "wrote \(files[0].path) and \(files[2].path)", streamed: false,
            finish: {
                for file in files { try file.finish() }
                cachePlan.finish()
            })
    }

    /// The session id of the hello on a key-stream channel (the real one comes in the stream's header).
    static let keyStreamHelloSession = [UInt8](repeating: 0, count: 16)

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

    /// A party's keys: from key files, or streamed by the dealer.
    struct PartyKeys {
        var sessionID: [UInt8]
        var online: KeyStreamReader
        /// nil: the dealer put the products with the weights in the online stream.
        var preprocessing: KeyStreamReader?
        var bytes: () -> Int
    }

    /// This party's keys: `--keys FILE` (its key file and the preprocessing key file beside it: `server.key`,
    /// `server.pre.key`), checked to be made for this computation and for each other; or `--keys-from-dealer PORT`:
    /// the dealer connects and streams them (`KeyStreamReceiver`), `--key-window BYTES` bounding what is held
    /// ahead of the reader. Returns once the streams are complete or the window is full.
    static func openKeys(
        _ options: Options, party: Party, job: Job, credentials: Credentials?, dealer listener: TCPListener?
    ) throws -> PartyKeys {
        let role = party == .p0 ? "server" : "client"
        if let listener {
            let channel = try listener.accept(
                handshake: Handshake(
                    role: .server, modelFingerprint: try job.fingerprint(), sessionID: keyStreamHelloSession),
                security: try credentials?.dealerChannelSecurity(for: party) ?? .insecure,
                timeout: options.number("--timeout", default: 60))
            let memory = Int(ProcessInfo.processInfo.physicalMemory)
            let receiver = try KeyStreamReceiver(
                channel: channel, window: options.integer("--key-window", default: memory / 3, range: 1...Int.max))
            guard receiver.modelFingerprint == (try job.fingerprint()) else {
                throw RoleError("the dealer streams keys for another model or prompt length")
            }
            let start = DispatchTime.now()
            let complete = try receiver.waitUntilReady()
            printError(
                "\(role): \(complete ? "received all its keys" : "holds a full key window") from the dealer in "
                    + "\(String(format: "%.3f", seconds(since: start))) s")
            return PartyKeys(
                sessionID: receiver.sessionID, online: receiver.online.reader(),
                preprocessing: receiver.preprocessing?.reader(),
                bytes: { receiver.online.bytesReceived + (receiver.preprocessing?.bytesReceived ?? 0) })
        }
        let path = options.required("--keys")
        let secret = try credentials?.keyFileSecret(for: party)
        let file = try KeyFile(path: path, party: party, secret: secret)
        guard file.header.modelFingerprint == (try job.fingerprint()) else {
            throw RoleError("\(path) holds keys for another model or prompt length")
        }
        let preprocessing = try KeyFile(path: preprocessingPath(path, if: true), party: party, secret: secret)
        guard preprocessing.header.sessionID == preprocessingSession(file.header.sessionID),
            preprocessing.header.modelFingerprint == file.header.modelFingerprint
        else { throw RoleError("\(preprocessingPath(path, if: true)) belongs to other keys than \(path)") }
        return PartyKeys(
            sessionID: file.header.sessionID, online: file.reader(), preprocessing: preprocessing.reader(),
            bytes: { file.payloadBytes + preprocessing.payloadBytes })
    }

    /// `--keys-from-dealer PORT` (on `--host`, default 127.0.0.1): listens for the dealer and says where.
    static func dealerListener(_ options: Options, role: String) throws -> TCPListener? {
        guard options.string("--keys-from-dealer") != nil else { return nil }
        guard options.string("--keys") == nil else {
            throw RoleError("--keys (a file) and --keys-from-dealer exclude each other")
        }
        let listener = try TCPListener(
            host: options.string("--host") ?? "127.0.0.1",
            port: UInt16(options.integer("--keys-from-dealer", default: 0, range: 0...65535)))
        printError("\(role): waiting for the dealer on port \(listener.port)")
        return listener
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
        _ context: PartyContext, keys: KeyStreamReader?, job: Job, party: Party, model: TokenModel?
    ) throws -> Double {
        guard let keys else { return 0 }
        let start = DispatchTime.now()
        try context.preprocess(keys: keys) { backend in
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
        let dealer = try dealerListener(options, role: "server")
        let listener = try TCPListener(
            host: options.string("--host") ?? "127.0.0.1",
            port: UInt16(options.integer("--port", default: 0, range: 0...65535)))
        printError("server: listening on port \(listener.port)")
        let keys = try openKeys(options, party: .p0, job: job, credentials: credentials, dealer: dealer)
        let channel = try listener.accept(
            handshake: Handshake(
                role: .server, modelFingerprint: try job.fingerprint(), sessionID: keys.sessionID),
            security: try credentials?.partyChannelSecurity() ?? .insecure,
            timeout: options.number("--timeout", default: 60))
        printError("server: connected to the client over \(channel.security)")
        let context = PartyContext(party: .p0, keys: keys.online, channel: channel)
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
        let keys = try openKeys(
            options, party: .p1, job: job, credentials: credentials, dealer: try dealerListener(options, role: "client")
        )
        let (host, port) = options.address("--connect")
        let channel = try TCPChannel.connect(
            host: host, port: port,
            handshake: Handshake(
                role: .client, modelFingerprint: try job.fingerprint(), sessionID: keys.sessionID),
            security: try credentials?.partyChannelSecurity() ?? .insecure,
            timeout: options.number("--timeout", default: 60))
        let party = PartyContext(party: .p1, keys: keys.online, channel: channel)
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
                ("key_bytes", .integer(keys.bytes())),
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
