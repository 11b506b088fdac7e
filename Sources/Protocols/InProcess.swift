import FSS
import Foundation
import Ring

/// One computation run four ways in this process: in cleartext, by the dealer (keys into memory), and by both
/// parties on two threads over an in-process channel. For tests and demonstrations; deployments use key files
/// and TCP.
public struct InProcessRun<Output: Sendable>: Sendable {
    public var clear: Output
    public var dealer: Output
    public var server: Output
    public var client: Output
    /// What crossed the channel, counted on the server's side.
    public var statistics: ChannelStatistics
    public var keyBytes: (server: Int, client: Int)

    /// Runs `computation` on every backend; `seed` makes the dealer deterministic (tests only).
    public init(seed: UInt64? = nil, _ computation: @escaping @Sendable (any RingBackend) throws -> Output) throws {
        clear = try computation(Cleartext())
        let sinks = (MemoryKeySink(), MemoryKeySink())
        let random = seed.map { SecureRandom(insecureTestSeed: $0) } ?? SecureRandom()
        dealer = try computation(Dealer(p0: sinks.0, p1: sinks.1, random: random))
        let keys = (sinks.0.bytes, sinks.1.bytes)
        let (channel0, channel1) = LocalChannel.pair(timeout: 120)
        let slot = ResultSlot<Output>()
        let done = DispatchSemaphore(value: 0)
        Thread {
            slot.value = Result {
                try computation(PartyContext(party: .p0, keys: KeyStreamReader(copying: keys.0), channel: channel0))
            }
            if case .failure = slot.value { channel0.close() }
            done.signal()
        }.start()
        let clientResult = Result {
            try computation(PartyContext(party: .p1, keys: KeyStreamReader(copying: keys.1), channel: channel1))
        }
        if case .failure = clientResult { channel1.close() }
        done.wait()
        server = try slot.value!.get()
        client = try clientResult.get()
        statistics = channel0.statistics
        keyBytes = (keys.0.count, keys.1.count)
    }
}

/// A result written by one thread before a semaphore signal and read by another after the wait.
final class ResultSlot<Value>: @unchecked Sendable {
    var value: Result<Value, any Error>?
}
