import Foundation

/// Two channel endpoints in one process, for tests: each endpoint's messages land in the other's inbox.
public final class LocalChannel: Channel, @unchecked Sendable {  // state guarded by `condition`
    private let condition: NSCondition
    private var inbox: [[UInt8]] = []
    private var isClosed = false
    private weak var peer: LocalChannel?
    private var counters = ChannelStatistics()
    private let timeout: Double

    private init(condition: NSCondition, timeout: Double) {
        self.condition = condition
        self.timeout = timeout
    }

    /// A connected pair of endpoints; a receive waits at most `timeout` seconds.
    public static func pair(timeout: Double = 60) -> (LocalChannel, LocalChannel) {
        let condition = NSCondition()
        let a = LocalChannel(condition: condition, timeout: timeout)
        let b = LocalChannel(condition: condition, timeout: timeout)
        a.peer = b
        b.peer = a
        return (a, b)
    }

    public var statistics: ChannelStatistics {
        condition.lock()
        defer { condition.unlock() }
        return counters
    }

    public func exchange(_ message: [UInt8]) throws(TransportError) -> [UInt8] {
        try deliver(message, countRound: false)
        return try take(countRound: true)
    }

    public func send(_ message: [UInt8]) throws(TransportError) { try deliver(message, countRound: true) }

    public func receive() throws(TransportError) -> [UInt8] { try take(countRound: true) }

    public func close() {
        condition.lock()
        isClosed = true
        peer?.isClosed = true
        condition.broadcast()
        condition.unlock()
    }

    private func deliver(_ message: [UInt8], countRound: Bool) throws(TransportError) {
        condition.lock()
        defer { condition.unlock() }
        guard !isClosed, let peer else { throw .closed }
        peer.inbox.append(message)
        counters.bytesSent += message.count
        if countRound { counters.rounds += 1 }
        condition.broadcast()
    }

    private func take(countRound: Bool) throws(TransportError) -> [UInt8] {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while inbox.isEmpty {
            if isClosed { throw .peerClosed }
            if !condition.wait(until: deadline) { throw .timedOut(seconds: timeout) }
        }
        let message = inbox.removeFirst()
        counters.bytesReceived += message.count
        if countRound { counters.rounds += 1 }
        return message
    }
}
