import Foundation
import Protocols
import Transport

/// `sigma bench transport`: what the channel itself costs over loopback, TLS against plain TCP, in one run: the
/// time of a round with a 1-byte message each way (latency), and of rounds carrying large messages both ways
/// (throughput, counted in one direction).
public enum TransportBenchmark {
    public static func run(messageBytes: Int = 64 << 20, rounds: Int = 8, progress: (String) -> Void = { _ in })
        throws -> JSONValue
    {
        var fields: [(String, JSONValue)] = []
        for (name, security) in [("tls", ChannelSecurity.ephemeral()), ("plain", ChannelSecurity.insecure)] {
            progress("transport: \(name)")
            let listener = try TCPListener(port: 0)
            let port = listener.port
            let hello: @Sendable (Handshake.Role) -> Handshake = {
                Handshake(
                    role: $0, modelFingerprint: [UInt8](repeating: 1, count: 32),
                    sessionID: [UInt8](repeating: 2, count: 16))
            }
            let message = [UInt8](repeating: 0x5A, count: messageBytes)
            let small = 1000
            let peer = Thread {
                guard let channel = try? listener.accept(handshake: hello(.server), security: security, timeout: 60)
                else { return }
                for _ in 0..<small { _ = try? channel.exchange([1]) }
                for _ in 0..<rounds { _ = try? channel.exchange(message) { $0.count } }
                channel.close()
            }
            peer.start()
            let channel = try TCPChannel.connect(port: port, handshake: hello(.client), security: security, timeout: 60)
            var start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<small { _ = try channel.exchange([2]) }
            let latency = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(small)
            start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<rounds { _ = try channel.exchange(message) { $0.count } }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            channel.close()
            fields.append(
                (
                    name,
                    .object([
                        ("security", .string(channel.security)),
                        ("round_trip_seconds", .number(latency)),
                        ("megabytes_per_second_each_way", .number(Double(messageBytes * rounds) / seconds / 1e6)),
                    ])
                ))
        }
        return .object(fields)
    }
}
