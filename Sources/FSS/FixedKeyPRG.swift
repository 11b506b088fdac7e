internal import CSigmaKernels

/// The length-doubling PRG of every DPF and DCF tree: the fixed-key correlation-robust hash of Guo, Katz, Wang
/// and Yu (S&P 2020),
///
///     H_j(x) = π_j(σ(x)) ⊕ σ(x),    σ(x_hi ‖ x_lo) = (x_hi ⊕ x_lo) ‖ x_hi,
///
/// with π_j AES-128 under a fixed public key k_j. G(s) = (H_0(s), H_1(s)) doubles a seed; H_2 and H_3 give a DCF
/// node's two payload values. Evaluating one child is one AES call.
///
/// Assumption: with each π_j modelled as an independent random permutation, H_j is circular correlation robust,
/// so its outputs on seeds of ≥ 127 bits of min-entropy are pseudorandom and independent across j. This
/// replaces the reference code's per-node AES re-keying (one key expansion per tree node).
///
/// The keys are nothing-up-my-sleeve constants: the first 64 bytes of the fractional part of π in hexadecimal.
public final class FixedKeyPRG: @unchecked Sendable {  // immutable after init; C reads it concurrently
    let state: UnsafeMutablePointer<sigma_prg>
    public let backend: AESBackend

    /// The PRG shared by all keys and all parties.
    public static let shared = FixedKeyPRG(backend: .best)

    static let fixedKeys: [UInt8] = {
        let hex =
            "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89"
            + "452821E638D01377BE5466CF34E90C6CC0AC29B7C97C50DD3F84D5B5B5470917"
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }()

    /// A PRG running on `backend` (an unsupported backend silently runs on the best supported one).
    public init(backend: AESBackend) {
        self.backend = backend
        state = .allocate(capacity: 1)
        Self.fixedKeys.withUnsafeBytes { sigma_prg_init(state, $0.baseAddress!) }
    }

    deinit { state.deallocate() }

    /// out[i] = H_{base + select[i]}(input[i]); `base` is 0 (seed children) or 2 (DCF values).
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

    /// Both halves (H_base(x), H_base+1(x)) of every input block.
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
