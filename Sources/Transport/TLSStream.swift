import CSigmaCrypto
import FSS
import Foundation
import Protocols

/// How a channel protects its bytes.
public enum ChannelSecurity: Sendable, CustomStringConvertible {
    /// TLS 1.3 authenticated by a pre-shared key both sides hold (`Credentials`), with an ephemeral X25519 exchange
    /// for forward secrecy; a peer without the key is refused during the handshake.
    case tls(presharedKey: [UInt8], identity: String)
    /// Plain TCP: anyone on the path reads and alters the masked values. Only behind `--insecure-transport`.
    case insecure

    /// TLS under a fresh random key, for two endpoints in one process (benchmarks, tests).
    public static func ephemeral() -> ChannelSecurity {
        var random = SecureRandom()
        return .tls(presharedKey: random.bytes(32), identity: "sigma/1/ephemeral")
    }

    public var description: String {
        switch self {
        case .tls: "TLS 1.3 (TLS_AES_128_GCM_SHA256, pre-shared key with X25519)"
        case .insecure: "plain TCP (--insecure-transport: not encrypted, not authenticated)"
        }
    }
}

/// TLS 1.3 over a connected socket, through the C shim (OpenSSL's libssl). The shim serialises the SSL calls of the
/// reader and the writer thread, so frames flow in both directions at once as on a plain socket.
final class TLSStream: ByteStream, @unchecked Sendable {  // the C endpoint serialises its own calls
    private let socket: Socket
    private let endpoint: OpaquePointer
    private let timeoutMilliseconds: Int32
    /// The negotiated protocol and cipher suite.
    let negotiated: String

    init(socket: Socket, isServer: Bool, presharedKey: [UInt8], identity: String, timeout: Double)
        throws(TransportError)
    {
        self.socket = socket
        let milliseconds = Int32(clamping: Int(min(timeout, 1e6) * 1000))
        timeoutMilliseconds = milliseconds
        let fd = socket.fd
        var message = [CChar](repeating: 0, count: 256)
        let opened = presharedKey.withUnsafeBufferPointer { key in
            sigma_tls_open(
                fd, isServer ? 1 : 0, key.baseAddress, key.count, identity, milliseconds, &message,
                message.count)
        }
        guard let opened else {
            throw .authenticationFailed(
                String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        endpoint = opened
        var description = [CChar](repeating: 0, count: 128)
        sigma_tls_describe(endpoint, &description, description.count)
        negotiated = String(decoding: description.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit {
        sigma_tls_free(endpoint)
        socket.close()
    }

    func sendAll(_ bytes: UnsafeRawBufferPointer) throws(TransportError) {
        try check(sigma_tls_write_all(endpoint, bytes.baseAddress, bytes.count, timeoutMilliseconds), timeout: nil)
    }

    func receiveAll(_ bytes: UnsafeMutableRawBufferPointer, timeout: Double) throws(TransportError) {
        let milliseconds = Int32(clamping: Int(min(timeout, 1e6) * 1000))
        try check(sigma_tls_read_all(endpoint, bytes.baseAddress, bytes.count, milliseconds), timeout: timeout)
    }

    func shutdown() { socket.shutdown() }

    private func check(_ status: Int32, timeout: Double?) throws(TransportError) {
        switch Int(status) {
        case Int(SIGMA_TLS_OK): return
        case Int(SIGMA_TLS_CLOSED): throw .peerClosed
        case Int(SIGMA_TLS_TIMEOUT): throw .timedOut(seconds: timeout ?? Double(timeoutMilliseconds) / 1000)
        default: throw .tls(String(cString: sigma_tls_error(endpoint)))
        }
    }
}
