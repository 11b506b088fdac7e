import FSS
import Foundation
import Protocols
import Ring
import Testing
import Transport

/// A client input times two weight tensors of the server's, the second used twice (as a tied table is): X·W0,
/// then (X·W0)·W1 and X·W1ᵀ-shaped reuse through the same masked tensor; revealed to the client.
private func computation(_ backend: any RingBackend, weights: [[UInt64]]?, input: [UInt64]?) throws -> [UInt64]? {
    let ring = Ring(bitwidth: 40, scale: 0)
    let x = try backend.inputFromClient(input, shape: [3, 5], ring: ring)
    let w0 = try backend.maskServerWeights(weights?[0], count: 5 * 4, ring: ring)
    let w1 = try backend.maskServerWeights(weights?[1], count: 4 * 4, ring: ring)
    let first = try backend.matmulMaskedWeights(x, w0, m: 3, k: 5, n: 4)
    let second = try backend.matmulMaskedWeights(first, w1, m: 3, k: 4, n: 4)
    let third = try backend.matmulMaskedWeights(second, w1, m: 3, k: 4, n: 4)
    return try backend.revealToClient(third)
}

private final class Box<Value>: @unchecked Sendable { var value: Value? }

/// One inference with the masked weights delivered before the online phase; returns the client's output, whether
/// the server sent Ŵ and what crossed in the online phase.
private func preparedRun(
    seed: [UInt8], weights: [[UInt64]], input: [UInt64], cache: MaskedWeightCache?, registry: WeightMaskRegistry?,
    preprocessing: Bool = false
) throws -> (output: [UInt64]?, sent: Bool, received: Bool, onlineBytes: Int) {
    let sinks = (MemoryKeySink(), MemoryKeySink())
    let preprocessingSinks = (MemoryKeySink(), MemoryKeySink())
    let dealer = Dealer(
        p0: sinks.0, p1: sinks.1, random: SecureRandom(),
        preprocessing: preprocessing ? (preprocessingSinks.0, preprocessingSinks.1) : nil)
    try dealer.beginWeightMasks(seed: seed)
    _ = try computation(dealer, weights: nil, input: nil)
    let (channel0, channel1) = LocalChannel.pair(timeout: 30)
    let server = Box<Result<Bool, any Error>>()
    let done = DispatchSemaphore(value: 0)
    let serverKeys = sinks.0.bytes
    let serverPreprocessingKeys = preprocessingSinks.0.bytes
    Thread {
        server.value = Result {
            let context = PartyContext(party: .p0, keys: KeyStreamReader(copying: serverKeys), channel: channel0)
            let sent = try MaskedWeightSetup.serve(
                context, channel: channel0,
                collect: { visit in _ = try computation(WeightCollector(visit: visit), weights: weights, input: nil) },
                registry: registry)
            if preprocessing {
                try context.preprocess(keys: KeyStreamReader(copying: serverPreprocessingKeys)) {
                    _ = try computation($0, weights: weights, input: nil)
                }
            }
            _ = try computation(context, weights: weights, input: nil)
            return sent
        }
        if case .failure = server.value { channel0.close() }
        done.signal()
    }.start()
    let client = Result { () throws -> (Bool, [UInt64]?, Int) in
        let context = PartyContext(party: .p1, keys: KeyStreamReader(copying: sinks.1.bytes), channel: channel1)
        let received = try MaskedWeightSetup.receive(
            context, channel: channel1,
            collect: { visit in _ = try computation(WeightCollector(visit: visit), weights: nil, input: nil) },
            cache: cache)
        if preprocessing {
            try context.preprocess(keys: KeyStreamReader(copying: preprocessingSinks.1.bytes)) {
                _ = try computation($0, weights: nil, input: nil)
            }
        }
        let before = channel1.statistics
        let output = try computation(context, weights: nil, input: input)
        return (received, output, channel1.statistics.since(before).bytesReceived)
    }
    if case .failure = client { channel1.close() }
    done.wait()
    let sent = try server.value!.get()
    let (received, output, bytes) = try client.get()
    return (output, sent, received, bytes)
}

@Suite("Masked weights once per model")
struct MaskedWeightTests {
    let ring = Ring(bitwidth: 40, scale: 0)

    func randomWeights() -> [[UInt64]] {
        var random = SecureRandom()
        return [random.values(20, bits: 40), random.values(16, bits: 40)]
    }

    /// A seed, the server's weights, the client's input and the cleartext result.
    func scenario(_ random: inout SecureRandom) throws -> ([UInt8], [[UInt64]], [UInt64], [UInt64]?) {
        let seed = random.seed()
        let weights = randomWeights()
        let input = random.values(15, bits: 40)
        return (seed, weights, input, try computation(Cleartext(), weights: weights, input: input))
    }

    @Test("Ŵ crosses once: a second inference reads the client's cache, and both equal the cleartext result")
    func cacheServesLaterInferences() throws {
        let directory = NSTemporaryDirectory() + "sigma-masked-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cache = try MaskedWeightCache(directory: directory)
        var random = SecureRandom()
        let (seed, weights, input, expected) = try scenario(&random)
        let first = try preparedRun(seed: seed, weights: weights, input: input, cache: cache, registry: nil)
        #expect(first.sent && first.received)
        #expect(first.output == expected)
        let second = try preparedRun(seed: seed, weights: weights, input: input, cache: cache, registry: nil)
        #expect(!second.sent && !second.received)
        #expect(second.output == expected)
        // The online phase carries no weights: the three products' reveals of 3×4 words of 40 bits (the output's
        // mask is in the client's keys).
        #expect(second.onlineBytes == first.onlineBytes)
        #expect(second.onlineBytes == 3 * BitPacking.byteCount(count: 12, bits: 40))
        // Another seed names other masked weights: sent again, a second file.
        let third = try preparedRun(seed: random.seed(), weights: weights, input: input, cache: cache, registry: nil)
        #expect(third.sent && third.output == expected)
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".sigmaw") }
        #expect(files.count == 2)
    }

    @Test("products with Ŵ prepared before the online phase: the same result and the same online bytes, cached or not")
    func preparedProducts() throws {
        var random = SecureRandom()
        let seed = random.seed()
        let weights = randomWeights()
        let input = random.values(15, bits: 40)
        let expected = try computation(Cleartext(), weights: weights, input: input)
        for cached in [false, true] {
            let directory = NSTemporaryDirectory() + "sigma-masked-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let cache = cached ? try MaskedWeightCache(directory: directory) : nil
            let inline = try preparedRun(seed: seed, weights: weights, input: input, cache: cache, registry: nil)
            let prepared = try preparedRun(
                seed: seed, weights: weights, input: input, cache: cache, registry: nil, preprocessing: true)
            #expect(prepared.output == expected && inline.output == expected)
            #expect(prepared.onlineBytes == inline.onlineBytes)
            #expect(prepared.received == !cached)
        }
    }

    @Test("a damaged cache file is dropped and the weights are sent again; no cache means every inference receives")
    func damagedCache() throws {
        let directory = NSTemporaryDirectory() + "sigma-masked-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cache = try MaskedWeightCache(directory: directory)
        var random = SecureRandom()
        let (seed, weights, input, expected) = try scenario(&random)
        #expect(try preparedRun(seed: seed, weights: weights, input: input, cache: cache, registry: nil).sent)
        let file = directory + "/" + (try FileManager.default.contentsOfDirectory(atPath: directory).first!)
        for damage in [
            { (bytes: inout [UInt8]) in bytes.removeLast() }, { bytes in bytes.append(0) }, { bytes in bytes[8] ^= 1 },
        ] {
            var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
            damage(&bytes)
            try Data(bytes).write(to: URL(fileURLWithPath: file))
            let again = try preparedRun(seed: seed, weights: weights, input: input, cache: cache, registry: nil)
            #expect(again.sent && again.output == expected)
        }
        let uncached = try preparedRun(seed: seed, weights: weights, input: input, cache: nil, registry: nil)
        #expect(uncached.sent && uncached.output == expected)
    }

    @Test("a weight-mask seed serves one set of weights: the server refuses others under it")
    func registryBindsSeedToWeights() throws {
        let directory = NSTemporaryDirectory() + "sigma-registry-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let registry = WeightMaskRegistry(path: directory + "/server.weights")
        var random = SecureRandom()
        let seed = random.seed()
        let weights = randomWeights()
        let input = random.values(15, bits: 40)
        #expect(try preparedRun(seed: seed, weights: weights, input: input, cache: nil, registry: registry).sent)
        #expect(try preparedRun(seed: seed, weights: weights, input: input, cache: nil, registry: registry).sent)
        var other = weights
        other[1][3] &+= 1
        #expect(throws: MaskedWeightError.seedBoundToOtherWeights(registry.path)) {
            try preparedRun(seed: seed, weights: other, input: input, cache: nil, registry: registry)
        }
        // Under a new seed the new weights are fine.
        #expect(try preparedRun(seed: random.seed(), weights: other, input: input, cache: nil, registry: registry).sent)
    }

    @Test("weight masks: stream l of the seed, the same on the dealer and the server; Ŵ at the gate still works")
    func masksPerTensor() throws {
        var random = SecureRandom()
        let seed = random.seed()
        var zero = SecureRandom(expanding: seed)
        var streamZero = SecureRandom(expanding: seed, stream: 0)
        var streamOne = SecureRandom(expanding: seed, stream: 1)
        let values = (zero.values(64, bits: 64), streamZero.values(64, bits: 64), streamOne.values(64, bits: 64))
        #expect(values.0 == values.1)
        #expect(values.0 != values.2)
        // The dealer's mask for tensor 1 is what the server adds to W_1.
        let sinks = (MemoryKeySink(), MemoryKeySink())
        let dealer = Dealer(p0: sinks.0, p1: sinks.1, random: SecureRandom())
        try dealer.beginWeightMasks(seed: seed)
        _ = try dealer.maskServerWeights(nil, count: 8, ring: ring)
        let mask = try dealer.maskServerWeights(nil, count: 8, ring: ring).shared
        let weights = random.values(8, bits: 40)
        let masked = PartyContext.maskedWeights(weights, seed: seed, index: 1, ring: ring)
        #expect(zip(zip(masked, weights), mask).allSatisfy { ($0.0 &- $0.1) & ring.mask == $1 })
        // Without a delivery before the online phase the server sends Ŵ at each gate: same result.
        let plainWeights = randomWeights()
        let input = random.values(15, bits: 40)
        let run = try InProcessRun { try computation($0, weights: plainWeights, input: input) }
        #expect(run.client == run.clear && run.client != nil)
    }
}
