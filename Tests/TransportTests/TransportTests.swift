import FSS
import Foundation
import Protocols
import Testing

@testable import Transport

/// Runs `server` on its own thread and `client` on this one, and returns both results.
func together<A: Sendable, B: Sendable>(
    _ server: @escaping @Sendable () throws(TransportError) -> A, _ client: () throws(TransportError) -> B
) -> (Result<A, TransportError>, Result<B, TransportError>) {
    let box = ResultBox<A>()
    let done = DispatchSemaphore(value: 0)
    Thread {
        box.value = Result { () throws(TransportError) -> A in try server() }
        done.signal()
    }.start()
    let clientResult = Result { () throws(TransportError) -> B in try client() }
    done.wait()
    return (box.value!, clientResult)
}

/// Written by one thread before a semaphore signal, read by another after the wait.
final class ResultBox<A: Sendable>: @unchecked Sendable { var value: Result<A, TransportError>? }

let fingerprint = [UInt8](repeating: 7, count: 32)
let session = [UInt8](repeating: 9, count: 16)

/// The two ways a channel can run: TLS (under one test key) and plain TCP.
let securities: [(String, ChannelSecurity)] = [
    ("TLS", .tls(presharedKey: [UInt8](repeating: 3, count: 32), identity: "sigma/1/test/server-client")),
    ("plain TCP", .insecure),
]

func hello(_ role: Handshake.Role, fingerprint: [UInt8] = fingerprint, session: [UInt8] = session) -> Handshake {
    Handshake(role: role, modelFingerprint: fingerprint, sessionID: session)
}

@Suite("Transport", .serialized)
struct TransportTests {
    @Test("in-process channels exchange, count bytes and rounds, and time out")
    func local() throws {
        let (a, b) = LocalChannel.pair(timeout: 0.2)
        let (fromA, fromB) = together({ () throws(TransportError) in try a.exchange([1, 2, 3]) }) {
            () throws(TransportError) in try b.exchange([4, 5])
        }
        #expect(try fromA.get() == [4, 5])
        #expect(try fromB.get() == [1, 2, 3])
        try a.send([9])
        #expect(try b.receive() == [9])
        #expect(a.statistics.bytesSent == 4 && a.statistics.bytesReceived == 2 && a.statistics.rounds == 2)
        #expect(b.statistics.rounds == 2)
        #expect(throws: TransportError.timedOut(seconds: 0.2)) { try a.receive() }
        b.close()
        #expect(throws: TransportError.self) { try a.send([1]) }
    }

    @Test(
        "TCP over loopback: full-duplex rounds of 16 MiB in both directions, counted alike on both sides",
        arguments: securities)
    func tcpFullDuplex(name: String, security: ChannelSecurity) throws {
        let listener = try TCPListener(port: 0)
        let port = listener.port
        let big0 = (0..<(16 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let big1 = (0..<(16 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let (server, client) = together({ () throws(TransportError) -> (ChannelStatistics, Bool) in
            let channel = try listener.accept(handshake: hello(.server), security: security, timeout: 10)
            let got = try channel.exchange(big0)
            let small = try channel.exchange([1])
            try channel.send([42])
            // Under TLS one connection per direction (no lock shared by the two), plain TCP on one socket.
            #expect(channel.connections == (name == "TLS" ? 2 : 1))
            return (channel.statistics, got == big1 && small == [2])
        }) { () throws(TransportError) -> (ChannelStatistics, Bool) in
            let channel = try TCPChannel.connect(port: port, handshake: hello(.client), security: security, timeout: 10)
            #expect(
                channel.security.hasPrefix(name == "TLS" ? "TLSv1.3 TLS_AES_128_GCM_SHA256, pre-shared key" : "plain"))
            let got = try channel.exchange(big1)
            let small = try channel.exchange([2])
            let last = try channel.receive()
            return (channel.statistics, got == big0 && small == [1] && last == [42])
        }
        let (serverStats, serverOK) = try server.get()
        let (clientStats, clientOK) = try client.get()
        #expect(serverOK && clientOK)
        #expect(serverStats.rounds == 3 && clientStats.rounds == 3)
        #expect(serverStats.bytesSent == (16 << 20) + 2 && serverStats.bytesSent == clientStats.bytesReceived)
        #expect(clientStats.bytesSent == serverStats.bytesReceived)
    }

    @Test(
        "a round lent to the reader (the receive memory kept between rounds) holds exactly the peer's message",
        arguments: securities)
    func borrowedRounds(name: String, security: ChannelSecurity) throws {
        let (server, client) = try connectedPair(timeout: 10, security: security, frameLimit: 16 << 20)
        let sizes = [3 << 20, 5, 0, 6 << 20, 1, 4096]
        @Sendable func message(_ size: Int, _ salt: Int) -> [UInt8] {
            (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ salt &* 7 &+ $0 >> 11) }
        }
        let box = ResultBox<[[UInt8]]>()
        let done = DispatchSemaphore(value: 0)
        Thread {
            box.value = Result { () throws(TransportError) -> [[UInt8]] in
                var received: [[UInt8]] = []
                for (round, size) in sizes.enumerated() {
                    do {
                        received.append(try server.exchange(message(size, 2 * round)) { Array($0) })
                    } catch let error as TransportError { throw error } catch { throw .closed }
                }
                return received
            }
            done.signal()
        }.start()
        var received: [[UInt8]] = []
        for round in sizes.indices {
            // The client's sizes run the other way, so the buffer both grows and is reused for smaller rounds.
            received.append(try client.exchange(message(sizes[sizes.count - 1 - round], 2 * round + 1)) { Array($0) })
        }
        done.wait()
        let serverReceived = try box.value!.get()
        for (round, size) in sizes.enumerated() {
            #expect(received[round] == message(size, 2 * round), "\(name): client's round \(round)")
            #expect(
                serverReceived[round] == message(sizes[sizes.count - 1 - round], 2 * round + 1),
                "\(name): server's round \(round)")
        }
        #expect(client.statistics.rounds == sizes.count && server.statistics.rounds == sizes.count)
        #expect(client.statistics.bytesReceived == sizes.reduce(0, +))
        #expect(server.statistics.bytesReceived == client.statistics.bytesSent)
        client.close()
        server.close()
    }

    @Test(
        "a peer with another role, model, session or version is refused before any protocol traffic",
        arguments: [
            ("same role", hello(.server)),
            ("other model", hello(.client, fingerprint: [UInt8](repeating: 8, count: 32))),
            ("other session", hello(.client, session: [UInt8](repeating: 1, count: 16))),
            (
                "other version",
                { () -> Handshake in
                    var h = hello(.client); h.version = 99; return h
                }()
            ),
        ])
    func handshakeMismatch(name: String, clientHello: Handshake) throws {
        let listener = try TCPListener(port: 0)
        let port = listener.port
        let (server, client) = together({ () throws(TransportError) -> TCPChannel in
            try listener.accept(handshake: hello(.server), security: securities[0].1, timeout: 10)
        }) { () throws(TransportError) -> TCPChannel in
            try TCPChannel.connect(port: port, handshake: clientHello, security: securities[0].1, timeout: 10)
        }
        for result in [server, client] {
            guard case .failure(let error) = result, case .handshakeMismatch = error else {
                Issue.record("\(name): expected a handshake mismatch, got \(result)")
                continue
            }
        }
    }

    /// A connected server and client over loopback.
    func connectedPair(timeout: Double, security: ChannelSecurity, frameLimit: Int = 1 << 20) throws -> (
        TCPChannel, TCPChannel
    ) {
        let listener = try TCPListener(port: 0)
        let port = listener.port
        let (server, client) = together({ () throws(TransportError) -> TCPChannel in
            try listener.accept(
                handshake: hello(.server), security: security, timeout: timeout, frameLimit: frameLimit)
        }) { () throws(TransportError) -> TCPChannel in
            try TCPChannel.connect(port: port, handshake: hello(.client), security: security, timeout: timeout)
        }
        return (try server.get(), try client.get())
    }

    @Test("an oversized frame is refused before allocating", arguments: securities)
    func oversized(name: String, security: ChannelSecurity) throws {
        let (server, client) = try connectedPair(timeout: 5, security: security)
        try client.sendRawForTesting([0, 0, 0, 0, 0, 1, 0, 0])  // announces 2^40 bytes
        #expect(throws: TransportError.frameTooLarge(1 << 40, limit: 1 << 20)) { try server.receive() }
    }

    @Test("a silent peer is reported after the timeout", arguments: securities)
    func silentPeer(name: String, security: ChannelSecurity) throws {
        let (server, client) = try connectedPair(timeout: 0.3, security: security)
        let start = Date()
        _ = withExtendedLifetime(client) {  // connected and silent
            #expect(throws: TransportError.timedOut(seconds: 0.3)) { try server.receive() }
        }
        #expect(Date().timeIntervalSince(start) < 5)
    }

    @Test(
        "a round whose peer neither reads nor answers times out, though its own large message cannot be sent",
        arguments: securities)
    func stalledPeer(name: String, security: ChannelSecurity) throws {
        for borrowed in [false, true] {
            let (server, client) = try connectedPair(timeout: 0.3, security: security)
            let start = Date()
            let big = [UInt8](repeating: 7, count: 64 << 20)  // far more than the socket buffers hold
            _ = withExtendedLifetime(client) {  // connected, silent, not reading
                #expect(throws: TransportError.timedOut(seconds: 0.3)) {
                    if borrowed {
                        _ = try server.exchange(big) { $0.count }
                    } else {
                        _ = try server.exchange(big)
                    }
                }
            }
            #expect(Date().timeIntervalSince(start) < 10, "\(name): the round hung on its own send")
        }
    }

    @Test("a peer that closes mid-protocol is reported, for receive and for exchange", arguments: securities)
    func closedPeer(name: String, security: ChannelSecurity) throws {
        let (server, client) = try connectedPair(timeout: 5, security: security)
        client.close()
        #expect(throws: TransportError.peerClosed) { try server.receive() }
        #expect(throws: TransportError.self) { _ = try server.exchange([UInt8](repeating: 1, count: 1 << 16)) }
    }

    @Test(
        "TLS refuses a peer with another deployment's key, and a plain-TCP peer, before any protocol traffic",
        arguments: [
            (
                "other key",
                ChannelSecurity.tls(
                    presharedKey: [UInt8](repeating: 4, count: 32), identity: "sigma/1/test/server-client")
            ),
            (
                "other deployment",
                .tls(presharedKey: [UInt8](repeating: 3, count: 32), identity: "sigma/1/other/server-client")
            ),
            ("plain TCP", .insecure),
        ])
    func tlsRefusesStrangers(name: String, clientSecurity: ChannelSecurity) throws {
        let listener = try TCPListener(port: 0)
        let port = listener.port
        let (server, client) = together({ () throws(TransportError) -> TCPChannel in
            try listener.accept(handshake: hello(.server), security: securities[0].1, timeout: 5)
        }) { () throws(TransportError) -> TCPChannel in
            try TCPChannel.connect(port: port, handshake: hello(.client), security: clientSecurity, timeout: 5)
        }
        guard case .failure(let error) = server, case .authenticationFailed = error else {
            Issue.record("\(name): the server should refuse the peer during the TLS handshake, got \(server)")
            return
        }
        #expect(throws: TransportError.self, "\(name)") { try client.get() }
    }
}

@Suite("Credentials", .serialized)
struct CredentialsTests {
    @Test("generated credentials round-trip, give each role only its secrets, and agree on the shared ones")
    func roundTrip() throws {
        let all = Credentials.generate()
        let directory = temporaryPath("credentials")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let paths = try Credentials.write(all, to: directory)
        #expect(
            paths.map { URL(fileURLWithPath: $0).lastPathComponent } == ["dealer.cred", "server.cred", "client.cred"])
        for (role, path) in zip(Credentials.Role.allCases, paths) {
            var info = stat()
            #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
            #expect(try Credentials.load(path: path, as: role) == all[role])
        }
        let (dealer, server, client) = (all[.dealer]!, all[.server]!, all[.client]!)
        #expect(dealer.serverClientKey == nil && dealer.dealerKeys.count == 2)
        #expect(server.serverClientKey == client.serverClientKey && server.serverClientKey?.count == 32)
        #expect(try server.keyFileSecret(for: .p0) == dealer.keyFileSecret(for: .p0))
        #expect(try client.keyFileSecret(for: .p1) == dealer.keyFileSecret(for: .p1))
        #expect(throws: CredentialsError.self) { try server.keyFileSecret(for: .p1) }
        #expect(throws: CredentialsError.self) { try client.keyFileSecret(for: .p0) }
        #expect(throws: CredentialsError.self) { try dealer.partyChannelSecurity() }
        #expect(Set([dealer.dealerKeys[.p0]!, dealer.dealerKeys[.p1]!, server.serverClientKey!]).count == 3)
        #expect(throws: CredentialsError.self) { try Credentials.write(all, to: directory) }  // never overwritten
        #expect(throws: CredentialsError.self) { try Credentials.load(path: paths[1], as: .client) }
    }

    @Test("a readable-by-others, malformed or incomplete credentials file is refused")
    func refusals() throws {
        let all = Credentials.generate()
        let path = temporaryPath("server.cred")
        defer { unlink(path) }
        func store(_ text: String, mode: mode_t = 0o600) throws {
            unlink(path)
            try text.write(toFile: path, atomically: false, encoding: .utf8)
            chmod(path, mode)
        }
        let good = all[.server]!.encoded
        try store(good)
        #expect(try Credentials.load(path: path, as: .server) == all[.server])
        try store(good, mode: 0o644)
        #expect(throws: CredentialsError.self) { try Credentials.load(path: path, as: .server) }
        let lines = good.split(separator: "\n").map(String.init)
        for (name, text) in [
            ("empty", ""),
            ("no header", lines.dropFirst().joined(separator: "\n")),
            ("missing key", lines.dropLast().joined(separator: "\n")),
            ("short key", good.replacingOccurrences(of: lines[3].suffix(2), with: "")),
            ("not hex", good.replacingOccurrences(of: lines[3].suffix(2), with: "zz")),
            ("extra secret", good + "dealer-client " + String(repeating: "00", count: 32) + "\n"),
            ("unknown field", good + "colour blue\n"),
            ("duplicate", good + lines[3] + "\n"),
        ] {
            try store(text)
            #expect(throws: CredentialsError.self, "\(name)") { try Credentials.load(path: path, as: .server) }
        }
    }
}
