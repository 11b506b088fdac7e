import Foundation
import Protocols

#if canImport(Glibc)
    import Glibc
#endif

/// What two parties state before any secret-dependent traffic; a mismatch refuses the connection.
public struct Handshake: Equatable, Sendable {
    /// The wire protocol's version.
    /// 2: under TLS, one connection per direction.
    public static let protocolVersion: UInt16 = 2

    public enum Role: UInt8, Sendable {
        case server = 0
        case client = 1
    }

    public var role: Role
    /// A hash naming the model (architecture, shapes, bitwidths): both parties must run the same one.
    public var modelFingerprint: [UInt8]
    /// The dealer's key session: both parties must hold keys from the same dealer run.
    public var sessionID: [UInt8]
    public var version: UInt16 = Handshake.protocolVersion

    public init(role: Role, modelFingerprint: [UInt8], sessionID: [UInt8]) {
        self.role = role
        self.modelFingerprint = modelFingerprint
        self.sessionID = sessionID
    }

    static let magic: [UInt8] = Array("SIGMA-HELLO".utf8)

    /// The hello as sent: magic, version, role, length-prefixed fingerprint and session id.
    public var encoded: [UInt8] {
        var bytes = Self.magic
        bytes += [UInt8(version & 0xFF), UInt8(version >> 8), role.rawValue]
        bytes.append(UInt8(modelFingerprint.count))
        bytes += modelFingerprint
        bytes.append(UInt8(sessionID.count))
        bytes += sessionID
        return bytes
    }

    /// Checks the peer's hello against ours: the same version, model and session, and the other role.
    func check(peer bytes: [UInt8]) throws(TransportError) {
        var rest = bytes[...]
        func take(_ n: Int) throws(TransportError) -> ArraySlice<UInt8> {
            guard rest.count >= n else { throw .handshakeMismatch("malformed hello") }
            defer { rest = rest.dropFirst(n) }
            return rest.prefix(n)
        }
        guard Array(try take(Self.magic.count)) == Self.magic else {
            throw .handshakeMismatch("the peer does not speak the Sigma protocol")
        }
        let v = try take(2)
        let peerVersion = UInt16(v[v.startIndex]) | UInt16(v[v.startIndex + 1]) << 8
        guard peerVersion == version else {
            throw .handshakeMismatch("protocol version \(peerVersion), expected \(version)")
        }
        let peerRole = try take(1).first!
        guard peerRole != role.rawValue, Role(rawValue: peerRole) != nil else {
            throw .handshakeMismatch(
                "the peer has the same role (\(role)); one side must be the server, one the client")
        }
        let fingerprint = Array(try take(Int(try take(1).first!)))
        guard fingerprint == modelFingerprint else { throw .handshakeMismatch("the peer runs a different model") }
        let session = Array(try take(Int(try take(1).first!)))
        guard session == sessionID else {
            throw .handshakeMismatch("the peer holds keys from another dealer session")
        }
        guard rest.isEmpty else { throw .handshakeMismatch("malformed hello") }
    }
}

/// A channel over TCP: length-prefixed frames on a POSIX socket (TLS 1.3 unless the deployment chose
/// `--insecure-transport`), TCP_NODELAY, no SIGPIPE, a receive timeout, and a dedicated sender thread so both
/// directions of a round proceed at once.
public final class TCPChannel: Channel, @unchecked Sendable {  // state guarded by `lock`; the socket by roles
    /// The largest frame a peer may announce; larger ones are refused before allocating.
    public let frameLimit: Int
    public let timeout: Double
    /// What protects the bytes: the negotiated TLS version and cipher suite, or plain TCP.
    public let security: String
    /// What the sender thread writes to and what the reader reads from: one socket for plain TCP (full duplex
    /// as it is), two TLS connections under TLS — one per direction, so neither waits for the other's lock on a
    /// shared SSL object (OpenSSL allows no concurrent calls on one): `sigma bench transport` ≈ 550 → 700–750 MB/s
    /// each way.
    private let outgoing: ByteStream
    private let incoming: ByteStream
    private let sender: SenderThread
    private let lock = NSLock()
    private var counters = ChannelStatistics()
    /// Where `exchange(_:reading:)` receives (used by the one reading thread only).
    private let receiveBuffer = ReceiveBuffer()

    init(outgoing: ByteStream, incoming: ByteStream, security: String, timeout: Double, frameLimit: Int) {
        self.outgoing = outgoing
        self.incoming = incoming
        self.security = security
        self.timeout = timeout
        self.frameLimit = frameLimit
        sender = SenderThread(stream: outgoing)
    }

    deinit {
        sender.stop()
        (outgoing as? Socket)?.close()  // a TLS stream closes its socket when freed
        if incoming !== outgoing { (incoming as? Socket)?.close() }
    }

    /// Listens on `host:port`, accepts one peer within `timeout` seconds, and runs the handshake.
    public static func accept(
        host: String = "127.0.0.1", port: UInt16, handshake: Handshake, security: ChannelSecurity,
        timeout: Double = 60, frameLimit: Int = 1 << 32
    ) throws(TransportError) -> TCPChannel {
        let listener = try TCPListener(host: host, port: port)
        return try listener.accept(handshake: handshake, security: security, timeout: timeout, frameLimit: frameLimit)
    }

    /// Connects to `host:port`, retrying until `timeout` while the peer is not yet listening, and runs the
    /// handshake.
    public static func connect(
        host: String = "127.0.0.1", port: UInt16, handshake: Handshake, security: ChannelSecurity,
        timeout: Double = 60, frameLimit: Int = 1 << 32
    ) throws(TransportError) -> TCPChannel {
        let socket = try Socket.connect(host: host, port: port, timeout: timeout)
        return try open(
            socket, isServer: false, handshake: handshake, security: security, timeout: timeout,
            frameLimit: frameLimit
        ) { () throws(TransportError) in try Socket.connect(host: host, port: port, timeout: timeout) }
    }

    /// Runs a channel over a socket that is already connected (socket activation, a socketpair): takes ownership of
    /// `descriptor`, secures it and runs the handshake as `accept`/`connect` do.
    public static func adopt(
        descriptor: Int32, isServer: Bool, handshake: Handshake, security: ChannelSecurity, timeout: Double = 60,
        frameLimit: Int = 1 << 32
    ) throws(TransportError) -> TCPChannel {
        try open(
            Socket(fd: descriptor), isServer: isServer, handshake: handshake, security: security, timeout: timeout,
            frameLimit: frameLimit)
    }

    /// Secures the connection (the TLS handshake authenticates the peer before any Sigma byte), then runs the Sigma
    /// handshake inside it. Under TLS, `second` gives the second connection (the accepting side's next peer, the
    /// connecting side's second connect): the first carries the connecting side's messages, the second the
    /// accepting side's. Without it (an adopted descriptor) both directions share one TLS connection.
    static func open(
        _ socket: Socket, isServer: Bool, handshake: Handshake, security: ChannelSecurity, timeout: Double,
        frameLimit: Int, second: (() throws(TransportError) -> Socket)? = nil
    ) throws(TransportError) -> TCPChannel {
        try socket.configure(timeout: timeout)
        let channel: TCPChannel
        switch security {
        case .insecure:
            channel = TCPChannel(
                outgoing: socket, incoming: socket, security: security.description, timeout: timeout,
                frameLimit: frameLimit)
        case .tls(let key, let identity):
            let secure = { (socket: Socket) throws(TransportError) -> TLSStream in
                do throws(TransportError) {
                    return try TLSStream(
                        socket: socket, isServer: isServer, presharedKey: key, identity: identity, timeout: timeout)
                } catch {
                    socket.close()
                    throw error
                }
            }
            let first = try secure(socket)
            var other: TLSStream = first
            if let second {
                let socket = try second()
                try socket.configure(timeout: timeout)
                other = try secure(socket)
            }
            channel = TCPChannel(
                outgoing: isServer ? other : first, incoming: isServer ? first : other, security: first.negotiated,
                timeout: timeout, frameLimit: frameLimit)
        }
        let peer = try channel.exchangeFrames(handshake.encoded, limit: 1024)
        do {
            try handshake.check(peer: peer)
        } catch {
            channel.close()
            throw error
        }
        channel.lock.withLock { channel.counters = ChannelStatistics() }  // the handshake is not protocol traffic
        return channel
    }

    public var statistics: ChannelStatistics { lock.withLock { counters } }

    /// How many connections carry the channel: two under TLS (one per direction), else one.
    var connections: Int { incoming === outgoing ? 1 : 2 }

    public func exchange(_ message: [UInt8]) throws(TransportError) -> [UInt8] {
        let received = try exchangeFrames(message, limit: frameLimit)
        lock.withLock { counters.rounds += 1 }
        return received
    }

    public func exchange<Result>(_ message: [UInt8], reading body: (UnsafeRawBufferPointer) throws -> Result) throws
        -> Result
    {
        let length = try transfer(message) { () throws(TransportError) in
            try incoming.receiveFrame(into: receiveBuffer, limit: frameLimit, timeout: timeout)
        }
        lock.withLock { counters.rounds += 1 }
        return try body(UnsafeRawBufferPointer(rebasing: receiveBuffer.bytes[0..<length]))
    }

    public func send(_ message: [UInt8]) throws(TransportError) {
        try outgoing.sendFrame(message)
        lock.withLock {
            counters.bytesSent += message.count
            counters.rounds += 1
        }
    }

    public func receive() throws(TransportError) -> [UInt8] {
        let message = try incoming.receiveFrame(limit: frameLimit, timeout: timeout)
        lock.withLock {
            counters.bytesReceived += message.count
            counters.rounds += 1
        }
        return message
    }

    public func close() {
        sender.stop()
        shutdown()
    }

    private func shutdown() {
        outgoing.shutdown()
        if incoming !== outgoing { incoming.shutdown() }
    }

    /// Writes raw bytes, bypassing framing: lets tests play a hostile peer.
    func sendRawForTesting(_ bytes: [UInt8]) throws(TransportError) { try outgoing.sendRaw(bytes) }

    private func exchangeFrames(_ message: [UInt8], limit: Int) throws(TransportError) -> [UInt8] {
        var received: [UInt8] = []
        _ = try transfer(message) { () throws(TransportError) in
            received = try incoming.receiveFrame(limit: limit, timeout: timeout)
            return received.count
        }
        return received
    }

    /// A round's I/O: this side's message goes out on the sender thread while `receive` reads the peer's and
    /// returns its length; the bytes are counted (the round is the caller's to count: a handshake is none). After a
    /// failed receive the channel is out of step for good: the stream is shut down, which also ends a send blocked
    /// on a peer that stopped reading (waiting for it would otherwise never return).
    private func transfer(_ message: [UInt8], receive: () throws(TransportError) -> Int) throws(TransportError)
        -> Int
    {
        let pending = sender.start(message)
        let length: Int
        do {
            length = try receive()
        } catch {
            shutdown()
            _ = pending.wait()
            throw error
        }
        if let error = pending.wait() { throw error }
        lock.withLock {
            counters.bytesSent += message.count
            counters.bytesReceived += length
        }
        return length
    }
}

/// The thread that writes this side's message of a round while the caller reads the peer's.
final class SenderThread: @unchecked Sendable {  // `work` and `stopped` guarded by `condition`
    final class Pending: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        var error: TransportError?
        func finish(_ error: TransportError?) {
            self.error = error
            done.signal()
        }
        func wait() -> TransportError? {
            done.wait()
            return error
        }
    }

    private let stream: ByteStream
    private let condition = NSCondition()
    private var work: ([UInt8], Pending)?
    private var stopped = false

    init(stream: ByteStream) {
        self.stream = stream
        let thread = Thread { [weak self] in self?.run() }
        thread.name = "sigma-sender"
        thread.start()
    }

    func start(_ message: [UInt8]) -> Pending {
        let pending = Pending()
        condition.lock()
        if stopped {
            condition.unlock()
            pending.finish(.closed)
            return pending
        }
        work = (message, pending)
        condition.signal()
        condition.unlock()
        return pending
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while work == nil && !stopped { condition.wait() }
            guard let (message, pending) = work else {
                condition.unlock()
                return
            }
            work = nil
            condition.unlock()
            do {
                try stream.sendFrame(message)
                pending.finish(nil)
            } catch {
                pending.finish(error)
            }
        }
    }
}

/// A listening socket; `port` tells the port chosen when 0 was asked for.
public final class TCPListener: @unchecked Sendable {  // the socket is used by one thread at a time
    let socket: Socket
    public let port: UInt16

    public init(host: String = "127.0.0.1", port: UInt16) throws(TransportError) {
        socket = try Socket.listen(host: host, port: port)
        self.port = socket.localPort ?? port
    }

    deinit { socket.close() }

    /// Accepts one peer within `timeout` seconds and runs the handshake.
    public func accept(
        handshake: Handshake, security: ChannelSecurity, timeout: Double = 60, frameLimit: Int = 1 << 32
    ) throws(TransportError) -> TCPChannel {
        let peer = try socket.accept(timeout: timeout)
        return try TCPChannel.open(
            peer, isServer: true, handshake: handshake, security: security, timeout: timeout, frameLimit: frameLimit
        ) { () throws(TransportError) in try self.socket.accept(timeout: timeout) }
    }
}
