import Foundation
import Protocols

#if canImport(Glibc)
    import Glibc
#endif

/// A blocking TCP socket: one wrapper per system call, retrying on EINTR, with typed errors.
// Unchecked: one reader thread and one writer thread at a time, by construction.
final class Socket: ByteStream, @unchecked Sendable {
    let fd: Int32
    private let closeLock = NSLock()
    private var isClosed = false

    private static let ignoreSIGPIPE: Void = { signal(SIGPIPE, SIG_IGN) }()

    init(fd: Int32) {
        _ = Self.ignoreSIGPIPE
        self.fd = fd
    }

    static func listen(host: String, port: UInt16) throws(TransportError) -> Socket {
        let socket = try Socket(fd: checked("socket", Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)))
        var one: Int32 = 1
        setsockopt(socket.fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = try socketAddress(host: host, port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            let code = errno
            socket.close()
            throw .connectionFailed("cannot listen on \(host):\(port) (errno \(code))")
        }
        _ = try checked("listen", Glibc.listen(socket.fd, 1))
        return socket
    }

    /// The local port, once bound.
    var localPort: UInt16? {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return result == 0 ? UInt16(bigEndian: address.sin_port) : nil
    }

    /// Waits up to `timeout` seconds for one connection.
    func accept(timeout: Double) throws(TransportError) -> Socket {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&poller, 1, Int32(min(timeout, 1e6) * 1000))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { throw .timedOut(seconds: timeout) }
            break
        }
        let peer = try Self.checked("accept", Glibc.accept(fd, nil, nil))
        return Socket(fd: peer)
    }

    static func connect(host: String, port: UInt16, timeout: Double) throws(TransportError) -> Socket {
        var address = try socketAddress(host: host, port: port)
        let deadline = Date(timeIntervalSinceNow: timeout)
        while true {
            let socket = try Socket(fd: checked("socket", Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)))
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(socket.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if result == 0 { return socket }
            let code = errno
            socket.close()
            guard code == ECONNREFUSED || code == EINTR || code == ENOENT, Date() < deadline else {
                throw .connectionFailed("\(host):\(port) (errno \(code))")
            }
            usleep(20_000)  // the peer is not listening yet
        }
    }

    /// TCP_NODELAY (rounds are small and latency-bound: without it a round trip took 43 ms here) and the
    /// receive timeout.
    func configure(timeout: Double) throws(TransportError) {
        var one: Int32 = 1
        let noDelay = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        guard noDelay == 0 || errno == EOPNOTSUPP else {  // an adopted Unix-domain socket has no Nagle to disable
            throw .system(call: "setsockopt(TCP_NODELAY)", errno: errno)
        }
        var limit = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
        _ = try Self.checked(
            "setsockopt(SO_RCVTIMEO)",
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size)))
    }

    func sendAll(_ bytes: UnsafeRawBufferPointer) throws(TransportError) {
        var offset = 0
        while offset < bytes.count {
            let sent = Glibc.send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if sent < 0 {
                let code = errno
                if code == EINTR { continue }
                if code == EPIPE || code == ECONNRESET { throw .peerClosed }
                throw .system(call: "send", errno: code)
            }
            offset += sent
        }
    }

    func receiveAll(_ bytes: UnsafeMutableRawBufferPointer, timeout: Double) throws(TransportError) {
        var offset = 0
        while offset < bytes.count {
            let got = recv(fd, bytes.baseAddress! + offset, bytes.count - offset, 0)
            if got == 0 { throw .peerClosed }
            if got < 0 {
                let code = errno
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK { throw .timedOut(seconds: timeout) }
                if code == ECONNRESET { throw .peerClosed }
                throw .system(call: "recv", errno: code)
            }
            offset += got
        }
    }

    /// Ends both directions, waking a blocked reader; the descriptor is released by `close`.
    func shutdown() { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }

    func close() {
        closeLock.lock()
        defer { closeLock.unlock() }
        guard !isClosed else { return }
        isClosed = true
        _ = Glibc.close(fd)
    }

    private static func checked(_ call: String, _ result: Int32) throws(TransportError) -> Int32 {
        guard result >= 0 else { throw .system(call: call, errno: errno) }
        return result
    }

    private static func socketAddress(host: String, port: UInt16) throws(TransportError) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        let name = host == "localhost" ? "127.0.0.1" : host
        guard inet_pton(AF_INET, name, &address.sin_addr) == 1 else {
            throw .connectionFailed("'\(host)' is not an IPv4 address")
        }
        return address
    }
}

/// A connected byte stream that frames travel on: a plain socket, or TLS over one. One reader thread and one
/// writer thread may use it at once.
protocol ByteStream: AnyObject, Sendable {
    func sendAll(_ bytes: UnsafeRawBufferPointer) throws(TransportError)
    func receiveAll(_ bytes: UnsafeMutableRawBufferPointer, timeout: Double) throws(TransportError)
    /// Ends both directions, waking a blocked reader.
    func shutdown()
}

extension ByteStream {
    /// Writes an 8-byte little-endian length and the payload.
    func sendFrame(_ payload: [UInt8]) throws(TransportError) {
        let length = UInt64(payload.count)
        try sendAll((0..<8).map { UInt8(truncatingIfNeeded: length >> UInt64(8 * $0)) })
        try sendAll(payload)
    }

    /// Reads a frame's length; one above `limit` is refused before any allocation.
    private func receiveFrameLength(limit: Int, timeout: Double) throws(TransportError) -> Int {
        var header = [UInt8](repeating: 0, count: 8)
        try receiveAll(&header, timeout: timeout)
        let length = header.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << UInt64(8 * $1.offset) }
        guard length <= UInt64(limit) else { throw .frameTooLarge(Int(clamping: length), limit: limit) }
        return Int(length)
    }

    /// Reads one frame; a length above `limit` is refused before any allocation.
    func receiveFrame(limit: Int, timeout: Double) throws(TransportError) -> [UInt8] {
        let length = try receiveFrameLength(limit: limit, timeout: timeout)
        // Not zero-filled first: a large frame would otherwise be written twice (and fault its pages in twice).
        var failure: TransportError?
        let payload = [UInt8](unsafeUninitializedCapacity: length) { buffer, initialized in
            do throws(TransportError) {
                try receiveAll(UnsafeMutableRawBufferPointer(buffer), timeout: timeout)
            } catch { failure = error }
            initialized = length  // bytes (a trivial type): on failure they are discarded unread
        }
        if let failure { throw failure }
        return payload
    }

    /// Reads one frame into `buffer` (grown to fit, kept for the next); returns its length.
    func receiveFrame(into buffer: ReceiveBuffer, limit: Int, timeout: Double) throws(TransportError) -> Int {
        let length = try receiveFrameLength(limit: limit, timeout: timeout)
        buffer.reserve(length)
        try receiveAll(UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[0..<length]), timeout: timeout)
        return length
    }

    func sendRaw(_ bytes: [UInt8]) throws(TransportError) { try sendAll(bytes) }

    // `withUnsafeBytes` is not typed-throws, so errors travel back as a `Result`.
    func sendAll(_ array: [UInt8]) throws(TransportError) {
        try array.withUnsafeBytes { bytes in Result { () throws(TransportError) in try sendAll(bytes) } }.get()
    }

    func receiveAll(_ array: inout [UInt8], timeout: Double) throws(TransportError) {
        try array.withUnsafeMutableBytes { bytes in
            Result { () throws(TransportError) in try receiveAll(bytes, timeout: timeout) }
        }.get()
    }
}

/// Memory a channel receives its rounds into, kept from round to round (its pages are faulted in once).
final class ReceiveBuffer: @unchecked Sendable {  // used by one reading thread at a time
    private(set) var bytes = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    deinit { bytes.deallocate() }

    /// Room for at least `count` bytes; the contents need not survive.
    func reserve(_ count: Int) {
        guard count > bytes.count else { return }
        bytes.deallocate()
        bytes = .allocate(byteCount: max(count, 2 * bytes.count), alignment: 64)
    }
}
