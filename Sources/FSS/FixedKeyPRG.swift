internal import CSigmaKernels

/// The length-doubling PRG of every DPF and DCF tree: the fixed-key correlation-robust hash of Guo, Katz, Wang
/// and Yu (S&P 2020) with a public tweak per output,
///
///     H(x) = π(σ(x)) ⊕ σ(x),   σ(x_hi ‖ x_lo) = (x_hi ⊕ x_lo) ‖ x_hi,   G_c(s) = H(s ⊕ τ_c),
///
/// with π AES-128 under one fixed public key and τ_0 = 0, τ_1, τ_2, τ_3 distinct constants. G_0, G_1 double a
/// seed; G_2, G_3 give a DCF node's two payload values. One output costs one AES call.
///
/// Assumption: with π modelled as a random permutation, H is circular correlation robust, so H(s ⊕ τ_c) for a
/// secret uniform seed s (≥ 127 bits of min-entropy) and distinct public τ_c are jointly pseudorandom. This
/// replaces the reference code's per-node AES re-keying; a tweak rather than a key per half lets every block
/// share one key schedule, which the vector kernels keep in registers.
///
/// The key and tweaks are nothing-up-my-sleeve constants: the key is the first 16 bytes of the fractional part
/// of π in hexadecimal, τ_c = c.
public final class FixedKeyPRG: @unchecked Sendable {  // immutable after init; C reads it concurrently
    let state: UnsafeMutablePointer<sigma_prg>
    public let backend: AESBackend

    /// The PRG shared by all keys and all parties.
    public static let shared = FixedKeyPRG(backend: .best)

    static let tweaks: [UInt8] = (0..<4).flatMap { c in [UInt8(c)] + [UInt8](repeating: 0, count: 15) }

    static let fixedKey: [UInt8] = hexadecimalBytes("243F6A8885A308D313198A2E03707344")

    /// A PRG running on `backend` (an unsupported backend silently runs on the best supported one).
    public init(backend: AESBackend) {
        self.backend = backend
        state = .allocate(capacity: 1)
        Self.fixedKey.withUnsafeBytes { key in
            Self.tweaks.withUnsafeBytes { sigma_prg_init(state, key.baseAddress!, $0.baseAddress!) }
        }
    }

    deinit { state.deallocate() }

    /// out[i] = G_{base + select[i]}(input[i]); `base` is 0 (seed children) or 2 (DCF values).
    public func hash(_ input: [Block], select: [UInt8], base: Int = 0) -> [Block] {
        precondition(input.count == select.count && (base == 0 || base == 2))
        var output = [Block](repeating: .zero, count: input.count)
        input.withUnsafeBytes { src in
            output.withUnsafeMutableBytes { dst in
                select.withUnsafeBufferPointer { sel in
                    guard let s = src.baseAddress, let d = dst.baseAddress, let p = sel.baseAddress else { return }
                    sigma_crhash_select(backend.cValue, state, UInt32(base), s, p, d, input.count)
                }
            }
        }
        return output
    }

    /// Both halves (G_base(x), G_base+1(x)) of every input block.
    public func hashPair(_ input: [Block], base: Int = 0) -> (left: [Block], right: [Block]) {
        var left = [Block](repeating: .zero, count: input.count)
        var right = left
        input.withUnsafeBytes { src in
            left.withUnsafeMutableBytes { l in
                right.withUnsafeMutableBytes { r in
                    hashPair(src, left: l, right: r, base: base)
                }
            }
        }
        return (left, right)
    }

    func hashPair(
        _ src: UnsafeRawBufferPointer, left: UnsafeMutableRawBufferPointer,
        right: UnsafeMutableRawBufferPointer, base: Int
    ) {
        guard src.count > 0 else { return }
        sigma_crhash_pair(
            backend.cValue, state, UInt32(base), src.baseAddress!, left.baseAddress!,
            right.baseAddress!, src.count / 16)
    }
}

/// The bytes a string of hexadecimal digit pairs spells ("0a1B" → [0x0a, 0x1b]); traps on anything else, so it is
/// for constants written in the source and in tests.
func hexadecimalBytes(_ hex: String) -> [UInt8] {
    precondition(hex.count % 2 == 0, "hexadecimal bytes come in digit pairs")
    var bytes: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        bytes.append(UInt8(hex[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}
