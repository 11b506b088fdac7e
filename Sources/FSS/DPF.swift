internal import CSigmaKernels
import Dispatch

/// Distributed point functions with early termination (Boyle, Gilboa, Ishai, CCS 2016) and one-bit output:
/// keys k_0, k_1 for a point α ∈ [0, 2^b) such that Eval(k_0, x) ⊕ Eval(k_1, x) = 1{x = α}.
///
/// For b > 7 the tree has d = b − 7 levels. Levels 1 ... d−1 carry a seed correction word (127 bits plus the
/// left control-bit correction in bit 0) and a right control-bit correction; the last level produces a 128-bit
/// leaf directly from the parent seed, corrected by one of two leaf words L_0, L_1, and the low 7 bits of x
/// pick a bit of the leaf. Evaluation costs d half-PRG calls (one AES each). A key for b > 7 takes
/// 16(b−7) + 16 bytes plus b−8 bits, and a batch one 16-byte seed from which the party expands its keys' root
/// seeds (`DPFKeys.encodedSize`); for b ≤ 7 it is a secret-shared truth table of 2^b bits.
///
/// The same key also gives shares of 1{x < α} (`DPFKeys.lessThan`), on the evaluation path only, after Grotto
/// (Storrier et al., ePrint 2023/108) as used by SIGMA §2.6: a tree node lies on α's path exactly when the
/// parties' control bits differ, and the parent's share XOR the child's share is a share of the sibling being on
/// α's path. Summing the right siblings of x's path (and, in the leaf, the parity of the bits above x's) gives
/// 1{α > x}.
public enum DPF {
    /// Generates a batch of keys, one per point in `alphas` (each < 2^`inputBits`), for both parties.
    public static func generate(
        alphas: [UInt64], inputBits: Int, random: inout SecureRandom, prg: FixedKeyPRG = .shared
    ) -> (p0: DPFKeys, p1: DPFKeys) {
        precondition((1...64).contains(inputBits), "DPF input bits must be 1...64")
        let layout = DPFLayout(inputBits: inputBits, count: alphas.count)
        var bytes0 = [UInt8](repeating: 0, count: layout.totalSize)
        var bytes1 = bytes0
        KeyHeader.write(
            kind: DPFLayout.kind, party: .p0, inputBits: inputBits, payloadBits: 1, count: alphas.count,
            into: &bytes0)
        KeyHeader.write(
            kind: DPFLayout.kind, party: .p1, inputBits: inputBits, payloadBits: 1, count: alphas.count,
            into: &bytes1)
        bytes0.withUnsafeMutableBytes { out0 in
            bytes1.withUnsafeMutableBytes { out1 in
                if layout.usesTruthTable {
                    generateTables(alphas, layout: layout, out0, out1, random: &random)
                }
            }
        }
        var roots: (p0: [Block], p1: [Block]) = ([], [])
        if !layout.usesTruthTable {
            // Each party's root seeds expand from a seed of its own, stored once per batch instead of 16 B per key.
            let seeds = (random.seed(), random.seed())
            bytes0.replaceSubrange(layout.rootSeedOffset..<(layout.rootSeedOffset + 16), with: seeds.0)
            bytes1.replaceSubrange(layout.rootSeedOffset..<(layout.rootSeedOffset + 16), with: seeds.1)
            roots = (
                expandRoots(seed: seeds.0, count: alphas.count, party: .p0),
                expandRoots(seed: seeds.1, count: alphas.count, party: .p1)
            )
            bytes0.withUnsafeMutableBytes { out0 in
                for start in stride(from: 0, to: alphas.count, by: generationChunk) {
                    let keys = start..<min(start + generationChunk, alphas.count)
                    generateTrees(alphas, keys: keys, roots: roots, layout: layout, out0, prg: prg)
                }
            }
            let shared = layout.rootSeedOffset + 16
            bytes1.replaceSubrange(shared..<layout.totalSize, with: bytes0[shared..<layout.totalSize])
        }
        KeyHeader.seal(&bytes0)
        KeyHeader.seal(&bytes1)
        return (
            DPFKeys(unchecked: bytes0, party: .p0, layout: layout, roots: roots.p0),
            DPFKeys(unchecked: bytes1, party: .p1, layout: layout, roots: roots.p1)
        )
    }

    /// Key k's root seed (control bit = the party) is block k of AES-CTR under the batch's root seed for that party.
    static func expandRoots(seed: [UInt8], count: Int, party: Party) -> [Block] {
        var stream = SecureRandom(expanding: seed)
        var roots = stream.blocks(count)
        roots.withUnsafeMutableBufferPointer { roots in  // in place: a party expands every batch it views
            for k in 0..<roots.count { roots[k] = roots[k].withControlBit(party.rawValue) }
        }
        return roots
    }

    /// Keys generated together; bounds the dealer's scratch memory.
    static let generationChunk = 1 << 14

    private static func generateTables(
        _ alphas: [UInt64], layout: DPFLayout, _ out0: UnsafeMutableRawBufferPointer,
        _ out1: UnsafeMutableRawBufferPointer, random: inout SecureRandom
    ) {
        let tableBytes = layout.tableBytes
        let body = UnsafeMutableRawBufferPointer(rebasing: out0[layout.tablesOffset..<layout.totalSize])
        random.fill(body)
        let domainMask: UInt8 = layout.inputBits >= 3 ? 0xFF : UInt8((1 << (1 << layout.inputBits)) - 1)
        for (k, alpha) in alphas.enumerated() {
            let base = layout.tablesOffset + k * tableBytes
            for i in 0..<tableBytes {
                out0[base + i] &= domainMask
                out1[base + i] = out0[base + i]
            }
            let point = Int(alpha & layout.domainMask)
            out1[base + point / 8] ^= 1 << UInt8(point % 8)
        }
    }

    private static func generateTrees(
        _ alphas: [UInt64], keys: Range<Int>, roots: (p0: [Block], p1: [Block]), layout: DPFLayout,
        _ out0: UnsafeMutableRawBufferPointer, prg: FixedKeyPRG
    ) {
        let b = layout.inputBits
        var seeds0 = Array(roots.p0[keys])
        var seeds1 = Array(roots.p1[keys])
        // The C kernels write the sections both parties share (level words, leaf words, δ bits) into P0's encoding;
        // `generate` copies them to P1's once every chunk is done. They advance the seeds in place (copies).
        let base = out0.baseAddress!
        alphas.withUnsafeBufferPointer { alpha in
            seeds0.withUnsafeMutableBytes { s0 in
                seeds1.withUnsafeMutableBytes { s1 in
                    let a = alpha.baseAddress! + keys.lowerBound
                    for level in 1..<max(layout.depth, 1) {
                        sigma_dpf_keygen_level(
                            prg.backend.cValue, prg.state, s0.baseAddress!, s1.baseAddress!, a, UInt32(b - level),
                            base + layout.levelOffset(level) + 16 * keys.lowerBound,
                            (base + layout.deltaOffset(level)).assumingMemoryBound(to: UInt8.self), keys.lowerBound,
                            keys.count)
                    }
                    sigma_dpf_keygen_leaf(
                        prg.backend.cValue, prg.state, s0.baseAddress!, s1.baseAddress!, a,
                        base + layout.leavesOffset + 32 * keys.lowerBound, keys.count)
                }
            }
        }
    }
}

/// Where each section of a DPF key batch lives in its encoding (offsets from the start of the header).
///
/// Body for b > 7 (d = b − 7, N keys), structure-of-arrays:
///
///     root seed     16 B          key k's root seed is block k of AES-CTR under it, control bit in bit 0 set to
///                                 the party (`DPF.expandRoots`): 16 B per batch instead of 16 B per key
///     levels        (d−1) × N × 16 B, level-major: seed correction, left control-bit correction t_L in bit 0
///     leaves        N × 32 B      L_0, L_1 per key
///     deltas        (d−1) × ⌈N/8⌉ B, level-major, bit k of a level = t_R ⊕ t_L of key k (so the right child's
///                   correction is the stored word with bit 0 flipped by one masked XOR)
///     padding       8 zero bytes per batch, so the kernels may load a whole word at the last right bit
///
/// Body for b ≤ 7: N truth tables of max(1, 2^b / 8) bytes, bit i of table k = the party's share of 1{i = α_k}.
struct DPFLayout: Equatable, Sendable {
    static let kind: UInt8 = 1

    let inputBits: Int
    let count: Int

    var usesTruthTable: Bool { inputBits <= 7 }
    var depth: Int { max(inputBits - 7, 0) }
    var domainMask: UInt64 { inputBits == 64 ? ~0 : (1 << UInt64(inputBits)) - 1 }
    var tableBytes: Int { max(1, (1 << min(inputBits, 7)) / 8) }
    var bitBytes: Int { (count + 7) / 8 }

    var tablesOffset: Int { KeyHeader.size }
    var rootSeedOffset: Int { KeyHeader.size }
    func levelOffset(_ level: Int) -> Int { rootSeedOffset + 16 + 16 * count * (level - 1) }
    var leavesOffset: Int { levelOffset(depth) }
    func deltaOffset(_ level: Int) -> Int { leavesOffset + 32 * count + bitBytes * (level - 1) }

    static let padding = 8

    var bodySize: Int {
        usesTruthTable
            ? count * tableBytes : 16 + count * (16 * depth + 16) + bitBytes * (depth - 1) + Self.padding
    }
    var totalSize: Int { KeyHeader.size + bodySize }

    /// The body size for untrusted parameters, with overflow checks.
    static func checkedBodySize(inputBits: Int, count: Int) throws(KeyDecodingError) -> Int {
        guard (1...64).contains(inputBits) else { throw .badParameter("DPF input bits \(inputBits)") }
        let layout = DPFLayout(inputBits: inputBits, count: count)
        if layout.usesTruthTable { return try checkedSize(count, layout.tableBytes) }
        let trees = try checkedSize(count, 16 * layout.depth + 16)
        let (total, overflow) = trees.addingReportingOverflow(try checkedSize(layout.bitBytes, layout.depth - 1))
        guard !overflow, total < Int.max - padding - 16 else { throw .badParameter("section size overflows") }
        return 16 + total + padding
    }
}

/// One party's keys for a batch of DPFs, in their encoded form; evaluation reads the encoding in place.
///
/// Keys are evaluated in batches: the AES kernel always has a whole tree level of many keys in flight.
public struct DPFKeys: Sendable {
    public let party: Party
    let layout: DPFLayout
    let storage: KeyBytes
    /// The party's root seeds, expanded from the batch's root seed (tree keys; empty for truth tables).
    let roots: [Block]

    /// The versioned encoding: a 32-byte header, then the sections (see `DPFLayout`).
    public var encoded: [UInt8] { storage.array }

    /// Input bits b: the keys' domain is [0, 2^b).
    public var inputBits: Int { layout.inputBits }
    /// Number of keys in the batch.
    public var count: Int { layout.count }

    /// The exact size of the encoding of `count` keys with b-bit inputs.
    ///
    /// For b > 7 that is a 32-byte header, a 16-byte root seed, 8 bytes of padding, and per key 16(b−7) + 16 bytes
    /// plus b−8 bits: in a batch of 8 or more keys the right control bits of a level pack 8 keys to a byte, so a key
    /// costs at most 16(b−7) + 16 + ⌈(b−7)/8⌉ bytes — 16 less than the reference's size, whose keys each carry
    /// their root seed (and one less level of bits, because the last level's control bits are folded into the
    /// leaf words). For b ≤ 7 each key is a max(1, 2^b/8)-byte truth table.
    public static func encodedSize(inputBits: Int, count: Int) -> Int {
        DPFLayout(inputBits: inputBits, count: count).totalSize
    }

    init(unchecked encoded: [UInt8], party: Party, layout: DPFLayout, roots: [Block]) {
        storage = .owned(encoded)
        self.party = party
        self.layout = layout
        self.roots = roots
    }

    /// A view of the encoding and the expanded root seeds, for the duration of `body`.
    func withView<T>(_ body: (DPFKeyView) -> T) -> T {
        storage.withUnsafeBytes { bytes in
            roots.withUnsafeBytes { roots in
                body(DPFKeyView(bytes: bytes, party: party, layout: layout, roots: roots.baseAddress))
            }
        }
    }

    /// The root seeds of a batch whose encoding (header and size already checked) is `bytes`.
    static func roots(of bytes: UnsafeRawBufferPointer, layout: DPFLayout, party: Party) -> [Block] {
        guard !layout.usesTruthTable else { return [] }
        let seed = Array(bytes[layout.rootSeedOffset..<(layout.rootSeedOffset + 16)])
        return DPF.expandRoots(seed: seed, count: layout.count, party: party)
    }

    /// Keys read in place from memory that `owner` keeps alive (a mapped key file): validates the header and
    /// the exact size, not the checksum (key files carry their own integrity checks). Never traps on bad input.
    public init(viewing bytes: UnsafeRawBufferPointer, owner: AnyObject & Sendable) throws(KeyDecodingError) {
        let fields = try KeyHeader.read(bytes, kind: DPFLayout.kind)
        guard fields.payloadBits == 1 else { throw .badParameter("DPF payload bits \(fields.payloadBits)") }
        let body = try DPFLayout.checkedBodySize(inputBits: fields.inputBits, count: fields.count)
        guard bytes.count >= KeyHeader.size + body else {
            throw .truncated(needed: KeyHeader.size + body, available: bytes.count)
        }
        guard bytes.count == KeyHeader.size + body else { throw .trailingBytes(bytes.count - KeyHeader.size - body) }
        storage = .viewed(UnsafeSendable(bytes), owner: owner)
        party = fields.party
        layout = DPFLayout(inputBits: fields.inputBits, count: fields.count)
        roots = Self.roots(of: bytes, layout: layout, party: party)
    }

    /// The encoded size read from the header at the start of `bytes`, to find where a key batch ends in a stream.
    /// How many leading bytes `encodedSize(of:)` reads.
    public static let encodedHeaderSize = KeyHeader.size

    public static func encodedSize(of bytes: UnsafeRawBufferPointer) throws(KeyDecodingError) -> Int {
        let fields = try KeyHeader.read(bytes, kind: DPFLayout.kind)
        return KeyHeader.size + (try DPFLayout.checkedBodySize(inputBits: fields.inputBits, count: fields.count))
    }

    /// Decodes and validates an encoding: header, exact size and checksum. Never traps on bad input.
    public init(decoding encoded: [UInt8]) throws(KeyDecodingError) {
        let fields = try withDecodedBytes(encoded) { bytes throws(KeyDecodingError) in
            let fields = try KeyHeader.read(bytes, kind: DPFLayout.kind)
            guard fields.payloadBits == 1 else { throw .badParameter("DPF payload bits \(fields.payloadBits)") }
            let body = try DPFLayout.checkedBodySize(inputBits: fields.inputBits, count: fields.count)
            try KeyHeader.verify(bytes, bodySize: body)
            return fields
        }
        let layout = DPFLayout(inputBits: fields.inputBits, count: fields.count)
        self.init(
            unchecked: encoded, party: fields.party, layout: layout,
            roots: encoded.withUnsafeBytes { Self.roots(of: $0, layout: layout, party: fields.party) })
    }

    /// Shares of 1{x = α_k}: for `pointsPerKey` = E, `points[k·E + e]` is evaluated under key k.
    /// Returns one bit (0 or 1) per point; the two parties' bits XOR to the result.
    public func evaluate(at points: [UInt64], pointsPerKey: Int = 1, threads: Int = 1) -> [UInt8] {
        evaluate(points, pointsPerKey: pointsPerKey, threads: threads, comparison: false)
    }

    /// Shares of 1{x < α_k} for every point (unsigned, in [0, 2^b)), from the DPF path alone.
    public func lessThan(at points: [UInt64], pointsPerKey: Int = 1, threads: Int = 1) -> [UInt8] {
        evaluate(points, pointsPerKey: pointsPerKey, threads: threads, comparison: true)
    }

    /// Shares of 1{(x_k + shift_e) mod 2^b < α_k}: one key evaluated at several public shifts of the same input
    /// (GeLU needs three). The result is key-major: index k·shifts.count + e.
    ///
    /// The points of a key share their path down to the highest bit in which they differ, so with shifts much
    /// smaller than the domain (GeLU's ±2^14 in 38 bits) the extra points cost only the last few levels: about
    /// half the AES calls of evaluating each point alone.
    public func lessThan(inputs: [UInt64], shifts: [UInt64], threads: Int = 1) -> [UInt8] {
        precondition(inputs.count == count, "one input per key")
        precondition((1...64).contains(shifts.count), "1 to 64 shifts")
        guard !layout.usesTruthTable else {
            var points = [UInt64](repeating: 0, count: inputs.count * shifts.count)
            for (k, x) in inputs.enumerated() {
                for (e, shift) in shifts.enumerated() { points[k * shifts.count + e] = x &+ shift }
            }
            return lessThan(at: points, pointsPerKey: shifts.count, threads: threads)
        }
        var output = [UInt8](repeating: 0, count: count * shifts.count)
        let chunk = DPFKeys.shiftedEvaluationChunk
        let chunks = (count + chunk - 1) / chunk
        withView { view in
            inputs.withUnsafeBufferPointer { x in
                shifts.withUnsafeBufferPointer { shifts in
                    output.withUnsafeMutableBufferPointer { out in
                        let work = UnsafeSendable((view, x, shifts, out))
                        parallelFor(chunks, threads: threads) { c in
                            let (view, x, shifts, out) = work.value
                            view.evaluateShifted(
                                keys: (c * chunk)..<min((c + 1) * chunk, view.layout.count), inputs: x,
                                shifts: shifts, output: out)
                        }
                    }
                }
            }
        }
        return output
    }

    private func evaluate(_ points: [UInt64], pointsPerKey: Int, threads: Int, comparison: Bool) -> [UInt8] {
        precondition(pointsPerKey > 0 && points.count == count * pointsPerKey, "points must be count × pointsPerKey")
        var output = [UInt8](repeating: 0, count: points.count)
        let chunk = max(1, DPFKeys.evaluationChunk / pointsPerKey)
        let chunks = (count + chunk - 1) / chunk
        withView { view in
            points.withUnsafeBufferPointer { x in
                output.withUnsafeMutableBufferPointer { out in
                    let work = UnsafeSendable((view, x, out))
                    parallelFor(chunks, threads: threads) { c in
                        let (view, x, out) = work.value
                        let keys = (c * chunk)..<min((c + 1) * chunk, view.layout.count)
                        view.evaluatePaths(
                            keys: keys, pointsPerKey: pointsPerKey, points: x, output: out,
                            comparison: comparison)
                    }
                }
            }
        }
        return output
    }

    /// Points evaluated together per chunk: their seeds (64 KiB) stay in L2 across all levels.
    static let evaluationChunk = 4096
    /// Keys per work item of the shifted evaluation (a multiple of the kernel's 16-point groups).
    static let shiftedEvaluationChunk = 4096
}

/// A read-only view of one party's encoded DPF key batch, wherever it lives (an array or a mapped key file).
struct DPFKeyView: @unchecked Sendable {  // read-only memory; the owner outlives every use
    let bytes: UnsafeRawBufferPointer
    let party: Party
    let layout: DPFLayout
    /// The expanded root seeds (`DPFKeys.roots`), 16 B per key.
    let roots: UnsafeRawPointer?

    func root(_ k: Int) -> Block { roots!.loadUnaligned(fromByteOffset: 16 * k, as: Block.self) }

    func tableBit(key k: Int, point: Int) -> UInt8 {
        (bytes[layout.tablesOffset + k * layout.tableBytes + point / 8] >> UInt8(point % 8)) & 1
    }

    /// Key k's truth table (b ≤ 7) as bits 0 ... 127 of two little-endian words.
    func table(key k: Int) -> (low: UInt64, high: UInt64) {
        let start = layout.tablesOffset + k * layout.tableBytes
        var words: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &words) {
            $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[start..<(start + layout.tableBytes)]))
        }
        return (UInt64(littleEndian: words.0), UInt64(littleEndian: words.1))
    }

    /// Evaluates `keys` at their points (E per key), writing one share bit per point into `output`.
    func evaluatePaths(
        keys: Range<Int>, pointsPerKey e: Int, points: UnsafeBufferPointer<UInt64>,
        output: UnsafeMutableBufferPointer<UInt8>, comparison: Bool, prg: FixedKeyPRG = .shared
    ) {
        let first = keys.lowerBound * e
        let m = keys.count * e
        guard m > 0 else { return }
        if layout.usesTruthTable {
            // Branch-free (x is uniformly random): the words above x's, masked, and the parity of what is left.
            let ones: UInt64 = ~0
            for j in 0..<m {
                let (low, high) = table(key: keys.lowerBound + j / e)
                let x = points[first + j] & layout.domainMask  // 0 ..< 128
                if comparison {
                    // Bits x + 1 ... 127 (bits past the domain are zero).
                    let s = x + 1
                    let lowAbove = s < 64 ? low & (ones &<< s) : 0
                    let highAbove = s < 64 ? high : s < 128 ? high & (ones &<< (s &- 64)) : 0
                    output[first + j] = UInt8((lowAbove ^ highAbove).nonzeroBitCount & 1)
                } else {
                    let word = x < 64 ? low : high
                    output[first + j] = UInt8(truncatingIfNeeded: (word &>> (x & 63)) & 1)
                }
            }
            return
        }
        var fields = keyFields
        sigma_dpf_eval(
            prg.backend.cValue, prg.state, &fields, points.baseAddress! + first, keys.lowerBound, e, m,
            comparison ? 1 : 0, output.baseAddress! + first)
    }

    /// Shares of 1{inputs[k] + shifts[e] < α_k} for `keys` (tree keys only), into output[k·E + e].
    func evaluateShifted(
        keys: Range<Int>, inputs: UnsafeBufferPointer<UInt64>, shifts: UnsafeBufferPointer<UInt64>,
        output: UnsafeMutableBufferPointer<UInt8>, prg: FixedKeyPRG = .shared
    ) {
        guard !keys.isEmpty else { return }
        var fields = keyFields
        sigma_dpf_eval_shifted(
            prg.backend.cValue, prg.state, &fields, inputs.baseAddress! + keys.lowerBound, keys.lowerBound,
            shifts.baseAddress!, shifts.count, keys.count, 1, output.baseAddress! + keys.lowerBound * shifts.count)
    }

    /// The C kernels' view of the fields (tree keys, b > 7).
    private var keyFields: sigma_dpf_keys {
        let base = bytes.baseAddress!
        return sigma_dpf_keys(
            roots: roots, levels: base + layout.levelOffset(1), level_stride: 16 * layout.count,
            deltas: (base + layout.deltaOffset(1)).assumingMemoryBound(to: UInt8.self),
            delta_stride: layout.bitBytes, leaves: base + layout.leavesOffset, input_bits: UInt32(layout.inputBits))
    }
}
