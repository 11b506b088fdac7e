/// Bytes and rounds that crossed a channel, counted on one side.
public struct ChannelStatistics: Equatable, Sendable {
    public var bytesSent = 0
    public var bytesReceived = 0
    /// Communication rounds: each `exchange`, `send` or `receive` call is one (the peer counts the same).
    public var rounds = 0

    public init() {}

    /// What crossed between `earlier` and this.
    public func since(_ earlier: ChannelStatistics) -> ChannelStatistics {
        var delta = ChannelStatistics()
        delta.bytesSent = bytesSent - earlier.bytesSent
        delta.bytesReceived = bytesReceived - earlier.bytesReceived
        delta.rounds = rounds - earlier.rounds
        return delta
    }
}

/// Why a channel operation failed.
public enum TransportError: Error, Equatable, CustomStringConvertible {
    case connectionFailed(String)
    case peerClosed
    case timedOut(seconds: Double)
    case frameTooLarge(Int, limit: Int)
    case handshakeMismatch(String)
    case system(call: String, errno: Int32)
    /// The TLS handshake failed: the peer does not hold this deployment's credentials (or does not speak TLS).
    case authenticationFailed(String)
    /// A TLS record could not be read or written.
    case tls(String)
    case closed

    public var description: String {
        switch self {
        case .connectionFailed(let why): "could not connect: \(why)"
        case .peerClosed: "the peer closed the connection"
        case .timedOut(let s): "the peer sent nothing for \(s) s"
        case .frameTooLarge(let n, let limit): "the peer announced a \(n)-byte message; the limit is \(limit)"
        case .handshakeMismatch(let why): "the peer is not the expected one: \(why)"
        case .system(let call, let errno): "\(call) failed (errno \(errno))"
        case .authenticationFailed(let why): "the peer was refused before any protocol traffic: \(why)"
        case .tls(let why): "TLS failed: \(why)"
        case .closed: "the channel is closed"
        }
    }
}

/// A connection to the other party, through which every exchange of the online phase goes.
///
/// One message per direction per round; the channel counts bytes and rounds. Implementations block the calling
/// thread: protocols run on dedicated threads, never inside Swift concurrency tasks (a blocked task would starve
/// the two-thread cooperative pool of this machine).
public protocol Channel: AnyObject, Sendable {
    /// One round in both directions: sends `message` and returns the peer's message of the same round. Both
    /// directions proceed at once, so both parties may send multi-megabyte messages without deadlock.
    func exchange(_ message: [UInt8]) throws(TransportError) -> [UInt8]
    /// The same round, the peer's message lent to `body` for the length of the call. A channel may receive into
    /// memory it keeps (`TCPChannel` does): a fresh multi-megabyte array per round costs a page fault and a
    /// zeroed page per 4 KiB, which halved a loopback channel's throughput.
    func exchange<Result>(_ message: [UInt8], reading body: (UnsafeRawBufferPointer) throws -> Result) throws -> Result
    /// One round in which only this side speaks.
    func send(_ message: [UInt8]) throws(TransportError)
    /// One round in which only the peer speaks.
    func receive() throws(TransportError) -> [UInt8]
    /// What has crossed so far.
    var statistics: ChannelStatistics { get }
    /// Closes the connection; later calls fail with `.closed`.
    func close()
}

extension Channel {
    public func exchange<Result>(_ message: [UInt8], reading body: (UnsafeRawBufferPointer) throws -> Result) throws
        -> Result
    {
        try exchange(message).withUnsafeBytes { try body($0) }
    }
}
