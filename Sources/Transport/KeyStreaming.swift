import FSS
import Foundation
import Protocols

#if canImport(Glibc)
    import Glibc
#endif

// The dealer streams a party's keys over a channel instead of writing a key file (`sigma dealer --stream-to-…`):
// no disk on either side, and the party starts its online phase while the dealer is still generating when the keys
// do not fit its memory. The channel is TLS under a key derived from the dealer's secret with that party
// (`Credentials.dealerChannelSecurity`), which authenticates every byte as a key file's MACs would.
//
// Frames, in order: the stream header (kind 0: the session id, the model fingerprint, whether a preprocessing
// stream follows), data (kind 1: online keys, kind 2: preprocessing keys), and the end (kind 3). The party
// acknowledges the end with one frame, so the dealer knows the keys arrived before it reports success.

enum KeyStreamFrame {
    static let header: UInt8 = 0
    static let online: UInt8 = 1
    static let preprocessing: UInt8 = 2
    static let end: UInt8 = 3
}

/// The dealer's side: one party's key streams (online, and optionally preprocessing) over one channel. Frames go
/// out on a thread of their own, so generation overlaps the sending; TCP's flow control is the backpressure when
/// the party's buffer is full.
public final class KeyStreamSender {
    private let channel: TCPChannel
    private let worker: OrderedWorker<[UInt8]>
    /// The online keys' sink, and the preprocessing keys' (nil: the products with the weights are computed at
    /// their gates, in the online stream).
    public let online: KeySink
    public let preprocessing: KeySink?
    private var sinks: [ChannelKeySink] = []

    public init(channel: TCPChannel, sessionID: [UInt8], modelFingerprint: [UInt8], preprocessing: Bool) throws {
        precondition(sessionID.count == 16 && modelFingerprint.count == 32)
        self.channel = channel
        worker = OrderedWorker(name: "sigma-key-sender", depth: 4) { frame in try channel.send(frame) }
        try worker.submit([KeyStreamFrame.header] + sessionID + modelFingerprint + [preprocessing ? 1 : 0])
        let online = ChannelKeySink(kind: KeyStreamFrame.online, worker: worker)
        let later = preprocessing ? ChannelKeySink(kind: KeyStreamFrame.preprocessing, worker: worker) : nil
        sinks = [online] + (later.map { [$0] } ?? [])
        self.online = online
        self.preprocessing = later
    }

    deinit { worker.stop() }

    /// Sends what is buffered and the end, and waits for the party's acknowledgement.
    public func finish() throws {
        for sink in sinks { try sink.flush() }
        try worker.submit([KeyStreamFrame.end])
        try worker.drain()
        let acknowledgement = try channel.receive()
        guard acknowledgement == [KeyStreamFrame.end] else {
            throw TransportError.handshakeMismatch("the party did not acknowledge its keys")
        }
        worker.stop()
    }

    /// Bytes sent on the channel so far (frame headers included).
    public var bytesSent: Int { channel.statistics.bytesSent }
}

/// Buffers one stream's bytes into frames of about 4 MiB.
final class ChannelKeySink: KeySink {
    let kind: UInt8
    let worker: OrderedWorker<[UInt8]>
    private var buffer: [UInt8]
    static let frameSize = 4 << 20

    init(kind: UInt8, worker: OrderedWorker<[UInt8]>) {
        self.kind = kind
        self.worker = worker
        buffer = [kind]
        buffer.reserveCapacity(Self.frameSize + 1)
    }

    func write(_ bytes: [UInt8]) throws {
        buffer += bytes
        if buffer.count > Self.frameSize { try flush() }
    }

    func flush() throws {
        guard buffer.count > 1 else { return }
        try worker.submit(buffer)
        buffer = [kind]
        buffer.reserveCapacity(Self.frameSize + 1)
    }
}

/// The party's side: receives its key streams on a thread of its own into reserved address space, and hands
/// readers over them to the protocols. A reader blocks until the bytes it needs have arrived. Once the
/// preprocessing stream (if any) is complete, at most `window` bytes of the online stream are held beyond the
/// gate the reader is in; the pages before that gate are returned to the system.
public final class KeyStreamReceiver: @unchecked Sendable {  // immutable after init; the streams lock themselves
    public let sessionID: [UInt8]
    public let modelFingerprint: [UInt8]
    public let online: ReceivedKeyStream
    public let preprocessing: ReceivedKeyStream?
    private let channel: TCPChannel
    private let window: Int

    /// Reads the stream header, then receives the rest in the background.
    public init(channel: TCPChannel, window: Int) throws {
        let header = try channel.receive()
        guard header.count == 50, header[0] == KeyStreamFrame.header, header[49] <= 1 else {
            throw TransportError.handshakeMismatch("the dealer's key stream does not start with its header")
        }
        sessionID = Array(header[1..<17])
        modelFingerprint = Array(header[17..<49])
        self.channel = channel
        self.window = max(window, 1 << 20)
        online = try ReceivedKeyStream(name: "online")
        preprocessing = header[49] == 1 ? try ReceivedKeyStream(name: "preprocessing") : nil
        let thread = Thread { [self] in run() }
        thread.name = "sigma-key-receiver"
        thread.start()
    }

    /// Blocks until every stream has ended, or the online stream holds `window` bytes (the most it will hold
    /// before the reader moves on); returns whether the streams are complete.
    @discardableResult
    public func waitUntilReady() throws -> Bool {
        _ = try preprocessing?.waitUntil(buffered: Int.max)
        return try online.waitUntil(buffered: window)
    }

    private func run() {
        do {
            while true {
                let frame = try channel.receive()
                guard let kind = frame.first else { throw TransportError.handshakeMismatch("an empty key frame") }
                switch kind {
                case KeyStreamFrame.online:
                    // Backpressure only once the preprocessing keys are in: the party reads all of them first.
                    if preprocessing?.hasEnded ?? true { online.waitForRoom(window: window) }
                    try online.append(frame.dropFirst())
                case KeyStreamFrame.preprocessing:
                    guard let preprocessing else { throw TransportError.handshakeMismatch("unexpected key frame") }
                    try preprocessing.append(frame.dropFirst())
                case KeyStreamFrame.end:
                    online.end(nil)
                    preprocessing?.end(nil)
                    try channel.send([KeyStreamFrame.end])
                    return
                default: throw TransportError.handshakeMismatch("a key frame of unknown kind \(kind)")
                }
            }
        } catch {
            let why = "the dealer's key stream broke off: \(error)"
            online.end(why)
            preprocessing?.end(why)
        }
    }
}

/// One received stream: a reservation of address space (no memory until written) that fills as frames arrive.
/// It is its reader's `KeyStreamVerifier`: `verified(through:)` waits for the bytes.
public final class ReceivedKeyStream: KeyStreamVerifier, @unchecked Sendable {  // state guarded by `condition`
    let name: String
    private let base: UnsafeMutableRawPointer
    private let capacity: Int
    private let condition = NSCondition()
    private var received = 0
    private var ended = false
    private var failure: String?
    private var gateStart = 0
    private var released = 0

    /// Reserves the largest span the system allows, up to 1 TiB (address space only).
    init(name: String) throws {
        self.name = name
        var size = 1 << 40
        while true {
            let pointer = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            if let pointer, pointer != MAP_FAILED {
                base = pointer
                capacity = size
                return
            }
            guard size > 1 << 30 else { throw KeyFileError.ioFailed(call: "mmap", errno: errno) }
            size /= 2
        }
    }

    deinit { munmap(base, capacity) }

    /// A reader of the stream, for the protocols.
    public func reader() -> KeyStreamReader {
        KeyStreamReader(bytes: UnsafeRawBufferPointer(start: base, count: capacity), owner: self, verifier: self)
    }

    /// Bytes received so far.
    public var bytesReceived: Int { condition.withLock { received } }

    var hasEnded: Bool { condition.withLock { ended } }

    func append(_ bytes: ArraySlice<UInt8>) throws {
        let start = condition.withLock { received }
        guard start + bytes.count <= capacity else {
            throw KeyFileError.incomplete("the \(name) key stream exceeds this process's address space")
        }
        bytes.withUnsafeBytes { (base + start).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        condition.withLock {
            received += bytes.count
            condition.broadcast()
        }
    }

    func end(_ why: String?) {
        condition.withLock {
            if !ended {
                ended = true
                failure = why
            }
            condition.broadcast()
        }
    }

    /// Waits while more than `window` bytes are held beyond the reader's current gate.
    func waitForRoom(window: Int) {
        condition.lock()
        while received - gateStart > window { condition.wait() }
        condition.unlock()
    }

    /// Waits until the stream has ended or holds `buffered` bytes; throws if it broke off.
    func waitUntil(buffered: Int) throws -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !ended && received - gateStart < buffered { condition.wait() }
        if let failure { throw KeyFileError.incomplete(failure) }
        return ended
    }

    public func verified(through end: Int) throws(KeyStreamError) -> Int {
        condition.lock()
        defer { condition.unlock() }
        while received < end && !ended { condition.wait() }
        if received >= end { return received }
        if let failure { throw .integrity(failure) }
        throw .exhausted(needed: end - received, available: 0)
    }

    /// While the stream is still arriving, the pages before the current gate go back to the system (the gate's own
    /// bytes, and views into them, stay). Once it is complete nothing more arrives, and freeing gigabytes page by
    /// page on the protocol thread would only slow the gates down.
    public func gateStarted(at offset: Int) {
        let page = 1 << 20
        let releasable = offset / page * page
        let complete = condition.withLock {
            gateStart = offset
            condition.broadcast()
            return ended
        }
        if !complete && releasable > released {
            madvise(base + released, releasable - released, MADV_DONTNEED)
            released = releasable
        }
    }
}
