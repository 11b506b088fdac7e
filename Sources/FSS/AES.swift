internal import CSigmaKernels

/// An AES implementation of the C kernel target, chosen at run time by CPU feature detection.
public enum AESBackend: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// VAES on 512-bit registers, 16 blocks in flight.
    case vaes512 = 0
    /// VAES on 256-bit registers, 16 blocks in flight.
    case vaes256 = 1
    /// AES-NI on 128-bit registers, 8 blocks in flight.
    case aesni = 2
    /// Byte-oriented C. Not constant time: only for machines without AES instructions.
    case portable = 3

    /// The fastest backend this CPU supports.
    public static let best = AESBackend(rawValue: Int(sigma_aes_best_backend().rawValue)) ?? .portable

    /// Whether this backend can run here.
    public var isSupported: Bool { sigma_aes_backend_supported(cValue) != 0 }

    var cValue: sigma_aes_backend { sigma_aes_backend(rawValue: UInt32(rawValue)) }

    public var description: String {
        switch self {
        case .vaes512: "VAES-512"
        case .vaes256: "VAES-256"
        case .aesni: "AES-NI"
        case .portable: "portable"
        }
    }
}

/// An AES-128 key with its expanded schedule.
public struct AES128: Sendable {
    var schedule: sigma_aes_key

    /// Expands `key` (16 bytes) with the FIPS-197 key schedule.
    public init(key: [UInt8]) {
        precondition(key.count == 16, "AES-128 keys are 16 bytes")
        var schedule = sigma_aes_key()
        key.withUnsafeBytes { sigma_aes_expand_key($0.baseAddress!, &schedule) }
        self.schedule = schedule
    }

    /// ECB encryption of whole blocks: output[i] = AES_k(input[i]).
    public func encrypt(_ input: [Block], backend: AESBackend = .best) -> [Block] {
        var output = [Block](repeating: .zero, count: input.count)
        input.withUnsafeBytes { src in
            output.withUnsafeMutableBytes { dst in
                encrypt(src, into: dst, backend: backend)
            }
        }
        return output
    }

    /// ECB encryption of `source.count / 16` blocks from raw memory; `destination` may alias `source`.
    public func encrypt(
        _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer,
        backend: AESBackend = .best
    ) {
        precondition(source.count % 16 == 0 && destination.count >= source.count)
        guard source.count > 0 else { return }
        withUnsafePointer(to: schedule) { key in
            sigma_aes_ecb(backend.cValue, key, source.baseAddress!, destination.baseAddress!, source.count / 16)
        }
    }

    /// The counter-mode keystream AES_k(counter), AES_k(counter + 1), ... written over `destination`.
    public func keystream(
        counter: Block, into destination: UnsafeMutableRawBufferPointer,
        backend: AESBackend = .best
    ) {
        precondition(destination.count % 16 == 0)
        guard destination.count > 0 else { return }
        withUnsafePointer(to: schedule) { key in
            sigma_aes_ctr_keystream(
                backend.cValue, key, counter.lo, counter.hi, destination.baseAddress!,
                destination.count / 16)
        }
    }
}
