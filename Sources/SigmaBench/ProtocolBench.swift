import FSS
import Foundation
import Protocols
import Ring
import Transport

/// `sigma bench protocols`: each protocol's online cost with both parties in this process over loopback TCP.
public enum ProtocolBenchmark {
    public struct Options: Sendable {
        public var elements = 1 << 18
        public var bitwidth = 50
        public var scale = 12
        public var threads = 2
        public init() {}
    }

    struct Measurement {
        var name: String
        var elements: Int
        var onlineSeconds: Double
        /// CPU seconds of the busier party's thread in the median instance: less sensitive than the wall clock
        /// to the other processes on a shared machine.
        var cpuSeconds: Double
        var bytesSentPerParty: Int
        var rounds: Int
        var keyBytes: (p0: Int, p1: Int)
    }

    public static func run(_ options: Options = Options(), progress: (String) -> Void = { _ in }) throws -> JSONValue {
        let ring = Ring(bitwidth: options.bitwidth, scale: options.scale)
        let n = options.elements
        var random = SecureRandom(insecureTestSeed: 3)
        let gapBits = options.bitwidth - 3
        let values = random.values(n, bits: gapBits).map { ring.word(Int64($0) - Int64(1 << (gapBits - 1))) }
        let others = random.values(n, bits: gapBits).map { ring.word(Int64($0) - Int64(1 << (gapBits - 1))) }
        let rows = Array(values.prefix(n / 128 * 128))
        let (m, k, cols) = (128, 768, 768)
        let activations = random.values(m * k, bits: options.bitwidth)
        let weights = random.values(k * cols, bits: options.bitwidth)

        typealias Step = @Sendable (any RingBackend, RingTensor, RingTensor) throws -> Void
        let cases: [(String, Int, [UInt64], [UInt64], [Int], Step)] = [
            ("DReLU", n, values, others, [n], { b, x, _ in _ = try b.drelu(x) }),
            ("ReLU", n, values, others, [n], { b, x, _ in _ = try b.relu(x) }),
            ("GapARS", n, values, others, [n], { b, x, _ in _ = try b.gapARS(x, by: options.scale) }),
            ("faithful ARS", n, values, others, [n], { b, x, _ in _ = try b.faithfulARS(x, by: options.scale) }),
            (
                "Max over rows of 128", rows.count / 128, rows, rows, [rows.count],
                { b, x, _ in
                    _ = try b.maxRows(x, rowLength: 128)
                }
            ),
            ("Mul", n, values, others, [n], { b, x, y in _ = try b.mul(x, y) }),
            (
                "matmul 128x768x768", 1, activations, weights, [m * k],
                { b, x, w in
                    _ = try b.matmul(x, w, m: m, k: k, n: cols, batch: 1)
                }
            ),
        ]
        var results: [(String, JSONValue)] = []
        RingMatrix.defaultThreads = 1  // each party gets one core: both run on this 2-core machine
        for (name, elements, x, y, shape, step) in cases {
            let measurement = try measure(
                name: name, elements: elements, ring: ring, x: x, y: y, shape: shape, step: step)
            progress(
                "\(name): \(String(format: "%.3g", measurement.onlineSeconds / Double(elements))) s per element, "
                    + "\(measurement.rounds) rounds")
            results.append(
                (
                    name,
                    .object([
                        ("elements", .integer(elements)),
                        ("online_seconds", .number(measurement.onlineSeconds)),
                        ("online_seconds_per_element", .number(measurement.onlineSeconds / Double(elements))),
                        (
                            "bytes_sent_per_party_per_element",
                            .number(Double(measurement.bytesSentPerParty) / Double(elements))
                        ),
                        ("rounds", .integer(measurement.rounds)),
                        ("key_bytes_per_element_p0", .number(Double(measurement.keyBytes.p0) / Double(elements))),
                        ("key_bytes_per_element_p1", .number(Double(measurement.keyBytes.p1) / Double(elements))),
                    ])
                ))
        }
        let one = matmulGMACs(m: m, k: k, n: cols, threads: 1)
        let all = matmulGMACs(m: m, k: k, n: cols, threads: options.threads)
        progress(
            "matmul: \(String(format: "%.1f", one)) GMAC/s on one core, \(String(format: "%.1f", all)) on \(options.threads)"
        )
        // GPT-2's one-hot embedding product (a 309 MB operand, far past the caches) and its tied output layer
        // (the same table read transposed, one row of activations), on all cores: the server's online products.
        let embedding = matmulGMACs(m: 128, k: 50257, n: 768, threads: options.threads, repetitions: 2)
        let outputLayer = matmulGMACs(m: 1, k: 768, n: 50257, threads: options.threads, transposed: true)
        progress(
            "GPT-2 embedding 128×50257×768: \(String(format: "%.1f", embedding)) GMAC/s; output layer "
                + "1×768×50257ᵀ: \(String(format: "%.1f", outputLayer)) GMAC/s, on \(options.threads)")
        return .object([
            ("ring", .string("n=\(options.bitwidth) f=\(options.scale)")),
            ("protocols", .object(results)),
            ("matmul_kernel", .string(MatmulKernel.best.description)),
            ("matmul_gmacs_1core", .number((one * 100).rounded() / 100)),
            ("matmul_gmacs_all_cores", .number((all * 100).rounded() / 100)),
            ("matmul_gmacs_gpt2_embedding_all_cores", .number((embedding * 100).rounded() / 100)),
            ("matmul_gmacs_gpt2_output_layer_all_cores", .number((outputLayer * 100).rounded() / 100)),
            ("threads", .integer(options.threads)),
        ])
    }

    /// Keys from the dealer into memory, then both parties over loopback TCP on two threads; the online time is
    /// the later party's, from after the handshake to its last message. With `repetitions` R the dealer writes R
    /// instances' keys, the parties run R instances back to back, and the online time is the median instance's
    /// (this machine is shared and noisy); bytes and rounds are per instance.
    static func measure(
        name: String, elements: Int, ring: Ring, x: [UInt64], y: [UInt64], shape: [Int], repetitions: Int = 1,
        step: @escaping @Sendable (any RingBackend, RingTensor, RingTensor) throws -> Void
    ) throws -> Measurement {
        precondition(repetitions >= 1)
        let yShape = [y.count]
        let sink0 = MemoryKeySink()
        let sink1 = MemoryKeySink()
        let dealer = Dealer(p0: sink0, p1: sink1, random: SecureRandom())
        for _ in 0..<repetitions {
            try step(dealer, RingTensor(zeros: shape, ring: ring), RingTensor(zeros: yShape, ring: ring))
        }
        let keys0 = sink0.bytes
        let keys1 = sink1.bytes
        let listener = try TCPListener(port: 0)
        let port = listener.port
        let security = ChannelSecurity.ephemeral()  // what a deployment runs: TLS
        let handshake: @Sendable (Handshake.Role) -> Handshake = { role in
            Handshake(
                role: role, modelFingerprint: [UInt8](repeating: 1, count: 32),
                sessionID: [UInt8](repeating: 2, count: 16))
        }
        /// Each instance's wall and thread-CPU seconds for one party.
        @Sendable func instances(_ party: PartyContext) throws -> (seconds: [Double], cpu: [Double]) {
            var seconds: [Double] = []
            var cpu: [Double] = []
            for _ in 0..<repetitions {
                let start = DispatchTime.now().uptimeNanoseconds
                let cpuStart = threadCPUSeconds()
                try step(
                    party, RingTensor(ring: ring, shape: shape, values: x),
                    RingTensor(ring: ring, shape: yShape, values: y))
                seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                cpu.append(threadCPUSeconds() - cpuStart)
            }
            return (seconds, cpu)
        }
        final class Outcome: @unchecked Sendable {  // written before the semaphore signal, read after the wait
            var timings: (seconds: [Double], cpu: [Double]) = ([], [])
            var error: (any Error)?
        }
        let server = Outcome()
        let done = DispatchSemaphore(value: 0)
        Thread {
            do {
                let channel = try listener.accept(handshake: handshake(.server), security: security, timeout: 60)
                server.timings = try instances(
                    PartyContext(party: .p0, keys: KeyStreamReader(copying: keys0), channel: channel))
            } catch {
                server.error = error
            }
            done.signal()
        }.start()
        let channel = try TCPChannel.connect(
            port: port, handshake: handshake(.client), security: security, timeout: 60)
        let client = try instances(PartyContext(party: .p1, keys: KeyStreamReader(copying: keys1), channel: channel))
        done.wait()
        if let error = server.error { throw error }
        let stats = channel.statistics
        channel.close()
        /// The median instance of the later party.
        func median(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).map { max($0, $1) }.sorted()[repetitions / 2] }
        return Measurement(
            name: name, elements: elements,
            onlineSeconds: median(client.seconds, server.timings.seconds),
            cpuSeconds: median(client.cpu, server.timings.cpu),
            bytesSentPerParty: max(stats.bytesSent, stats.bytesReceived) / repetitions,
            rounds: stats.rounds / repetitions,
            keyBytes: (keys0.count / repetitions, keys1.count / repetitions))
    }

    static func matmulGMACs(
        m: Int, k: Int, n: Int, threads: Int, repetitions: Int = 5, transposed: Bool = false
    ) -> Double {
        var random = SecureRandom(insecureTestSeed: 4)
        let a = random.values(m * k, bits: 64)
        let b = random.values(k * n, bits: 64)
        let best = bestOf(repetitions) {
            consume(
                transposed
                    ? RingMatrix.multiply(a, transposed: b, m: m, k: k, n: n, threads: threads)
                    : RingMatrix.multiply(a, b, m: m, k: k, n: n, threads: threads))
        }
        return Double(m * k * n) / best / 1e9
    }
}
