internal import CSigmaKernels

/// The dealer's randomness: a 128-bit key from the operating system's CSPRNG (getrandom), expanded with
/// AES-128 in counter mode.
///
/// Not thread-safe: give each thread its own generator (`split()` makes independent ones).
public struct SecureRandom: ~Copyable {
    private let cipher: AES128
    private var counter: UInt64 = 0
    private var stream: UInt64 = 0
    private var buffer: [Block] = []
    private var position = 0

    /// A generator keyed from the operating system's CSPRNG.
    public init() {
        var key = [UInt8](repeating: 0, count: 16)
        let status = key.withUnsafeMutableBytes { sigma_os_random($0.baseAddress!, 16) }
        precondition(status == 0, "getrandom failed with errno \(status)")
        cipher = AES128(key: key)
    }

    /// A deterministic generator for tests and reproducible benchmarks. Never use it for real keys: anyone who
    /// knows the seed can recompute every key.
    public init(insecureTestSeed seed: UInt64) {
        var key = [UInt8](repeating: 0x5A, count: 16)
        for i in 0..<8 { key[i] = UInt8(truncatingIfNeeded: seed >> UInt64(8 * i)) }
        cipher = AES128(key: key)
    }

    /// The generator that a 16-byte `seed` keys (AES-128 in counter mode). The dealer draws the seed from its own
    /// CSPRNG stream and gives it to a party, which then expands the same values: a party's copy of a long run of
    /// dealer randomness (a weight mask) costs 16 bytes of key instead of the whole run.
    public init(expanding seed: [UInt8]) {
        self.init(expanding: seed, stream: 0)
    }

    /// Stream `stream` of the values a seed keys: AES-128 in counter mode with the counter's high 64 bits fixed to
    /// `stream`, so 2^64 independent runs (one per weight tensor of a model) come from one 16-byte seed, each
    /// reachable without expanding the others.
    public init(expanding seed: [UInt8], stream: UInt64) {
        precondition(seed.count == 16, "seeds are 16 bytes")
        cipher = AES128(key: seed)
        self.stream = stream
    }

    /// 16 bytes for `init(expanding:)`.
    public mutating func seed() -> [UInt8] { bytes(16) }

    /// `count` pseudorandom bytes (session ids, secrets, seeds).
    public mutating func bytes(_ count: Int) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        result.withUnsafeMutableBytes { fill($0) }
        return result
    }

    /// An independent generator keyed from this one's stream.
    public mutating func split() -> SecureRandom {
        let keyBlock = nextBlock()
        var key = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 {
            key[i] = UInt8(truncatingIfNeeded: keyBlock.lo >> UInt64(8 * i))
            key[8 + i] = UInt8(truncatingIfNeeded: keyBlock.hi >> UInt64(8 * i))
        }
        return SecureRandom(cipher: AES128(key: key))
    }

    private init(cipher: AES128) { self.cipher = cipher }

    /// Fills `destination` with pseudorandom bytes.
    public mutating func fill(_ destination: UnsafeMutableRawBufferPointer) {
        let whole = destination.count & ~15
        if whole > 0 {
            cipher.keystream(
                counter: Block(lo: counter, hi: stream),
                into: UnsafeMutableRawBufferPointer(rebasing: destination[0..<whole]))
            counter &+= UInt64(whole / 16)
        }
        if whole < destination.count {
            let tail = nextBlock()
            withUnsafeBytes(of: tail) { bytes in
                for i in whole..<destination.count { destination[i] = bytes[i - whole] }
            }
        }
    }

    /// One pseudorandom block.
    public mutating func nextBlock() -> Block {
        if position == buffer.count {
            buffer = blocks(256)
            position = 0
        }
        defer { position += 1 }
        return buffer[position]
    }

    /// `count` pseudorandom blocks.
    public mutating func blocks(_ count: Int) -> [Block] {
        [Block](unsafeUninitializedCapacity: count) { result, initialized in
            fill(UnsafeMutableRawBufferPointer(result))
            initialized = count
        }
    }

    /// `count` uniformly random values below 2^`bits` (1 ... 64).
    public mutating func values(_ count: Int, bits: Int) -> [UInt64] {
        precondition((1...64).contains(bits))
        let mask = bits == 64 ? ~0 : (UInt64(1) << UInt64(bits)) &- 1
        return [UInt64](unsafeUninitializedCapacity: count) { result, initialized in
            fill(UnsafeMutableRawBufferPointer(result))
            if bits < 64 { for i in 0..<count { result[i] &= mask } }
            initialized = count
        }
    }

    /// `count` uniformly random bits, one per byte (from ⌈count/8⌉ pseudorandom bytes).
    public mutating func bits(_ count: Int) -> [UInt8] {
        let packed = bytes((count + 7) / 8)
        return [UInt8](unsafeUninitializedCapacity: count) { bits, initialized in
            for i in 0..<count { bits[i] = (packed[i >> 3] >> UInt8(i & 7)) & 1 }
            initialized = count
        }
    }

    /// A uniformly random value below 2^`bits`.
    public mutating func next(bits: Int = 64) -> UInt64 {
        let block = nextBlock()
        return bits >= 64 ? block.lo : block.lo & ((UInt64(1) << UInt64(bits)) &- 1)
    }
}
