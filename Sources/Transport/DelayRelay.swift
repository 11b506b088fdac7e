import Foundation
import Protocols

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP relay that holds every byte for a fixed one-way delay in each direction: the latency half of a network
/// emulator, for kernels without netem (scripts/netns-bench.sh shapes the bandwidth with tbf and puts this relay in
/// the path). Bytes keep their order and their arrival spacing; only their departure is shifted by `delay`.
///
/// Not a perfect long link: the relay acknowledges bytes at once, so the sender's TCP never sees the round trip
/// (its window and slow start are those of a short link); Sigma's rounds, which wait for the peer's message, do
/// see the full round trip.
public final class DelayRelay: @unchecked Sendable {  // each connection's state lives on its own threads
    private let listener: Socket
    public let port: UInt16
    private let target: (host: String, port: UInt16)
    private let delay: Double

    public init(listenHost: String, listenPort: UInt16, targetHost: String, targetPort: UInt16, delay: Double)
        throws(TransportError)
    {
        listener = try Socket.listen(host: listenHost, port: listenPort)
        port = listener.localPort ?? listenPort
        target = (targetHost, targetPort)
        self.delay = delay
    }

    /// Relays connections one after another until the process ends.
    public func run() throws(TransportError) -> Never {
        while true {
            let inbound = try listener.accept(timeout: 1e6)
            let outbound = try Socket.connect(host: target.host, port: target.port, timeout: 60)
            for socket in [inbound, outbound] {
                var one: Int32 = 1
                setsockopt(socket.fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            let finished = DispatchGroup()
            for (from, to) in [(inbound, outbound), (outbound, inbound)] {
                finished.enter()
                Self.pipe(from: from, to: to, delay: delay) { finished.leave() }
            }
            finished.notify(queue: .global()) {
                inbound.close()
                outbound.close()
            }
        }
    }

    /// One direction: a reader thread stamps each chunk with its arrival time, a writer thread sends it `delay`
    /// later.
    static func pipe(from: Socket, to: Socket, delay: Double, done: @escaping @Sendable () -> Void) {
        final class Queue: @unchecked Sendable {  // guarded by `condition`
            let condition = NSCondition()
            var chunks: [(due: UInt64, bytes: [UInt8])] = []
            var ended = false
        }
        let queue = Queue()
        let delayNanoseconds = UInt64(delay * 1e9)
        let reader = Thread {
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let got = buffer.withUnsafeMutableBytes { recv(from.fd, $0.baseAddress, $0.count, 0) }
                if got < 0 && errno == EINTR { continue }
                let now = DispatchTime.now().uptimeNanoseconds
                queue.condition.withLock {
                    if got > 0 {
                        queue.chunks.append((now + delayNanoseconds, Array(buffer[0..<got])))
                    } else {
                        queue.ended = true
                    }
                    queue.condition.signal()
                }
                if got <= 0 { return }
            }
        }
        let writer = Thread {
            defer { done() }
            while true {
                queue.condition.lock()
                while queue.chunks.isEmpty && !queue.ended { queue.condition.wait() }
                if queue.chunks.isEmpty {
                    queue.condition.unlock()
                    _ = Glibc.shutdown(to.fd, Int32(SHUT_WR))
                    return
                }
                let (due, bytes) = queue.chunks.removeFirst()
                queue.condition.unlock()
                let now = DispatchTime.now().uptimeNanoseconds
                if due > now { usleep(UInt32(min((due - now) / 1000, UInt64(UInt32.max)))) }
                do { try to.sendAll(bytes) } catch {
                    from.shutdown()
                    return
                }
            }
        }
        reader.start()
        writer.start()
    }
}
