internal import CSigmaKernels

/// Full-domain evaluation of DPF keys: every output bit y_k[i], i ∈ [0, 2^b), for lookup tables (Pika-style
/// LUTs, SIGMA §3.3). The tree is expanded breadth-first for a chunk of keys at a time, so every AES call has a
/// whole level of many keys in flight, and the table inner product is taken as soon as a chunk's leaves exist,
/// while they are still in cache.
extension DPFKeys {
    /// All 2^b share bits of every key, key-major (for tests and small domains; b ≤ 20).
    public func evaluateFullDomain() -> [UInt8] {
        precondition(inputBits <= 20, "full-domain bit output is for small domains")
        let domain = 1 << inputBits
        var output = [UInt8](repeating: 0, count: count * domain)
        withView { view in
            view.expandLeaves(keys: 0..<count) { k, leaves in
                for i in 0..<domain {
                    output[k * domain + i] =
                        view.layout.usesTruthTable
                        ? view.tableBit(key: k, point: i) : leaves[i / 128].bit(i % 128)
                }
            }
        }
        return output
    }

    /// For each key k, over its whole domain D = 2^b:
    ///
    ///     counts[k] = Σ_i y_k[i]                                 (an integer; mod 4 it tells the sign below)
    ///     dots[k]   = Σ_i y_k[i] · table[(offsets[k] − i) mod D]   (mod 2^64)
    ///
    /// With keys for α = r (the input mask) and offset x̂ = x + r, the two parties' dots differ by exactly
    /// ±table[x]: every other i has y_0[i] = y_1[i]. `counts` tells the sign (the LUT protocol's u).
    public func fullDomainInnerProduct(table: [UInt64], offsets: [UInt64], threads: Int = 1)
        -> (counts: [UInt64], dots: [UInt64])
    {
        let domain = 1 << inputBits
        precondition(inputBits <= 24 && table.count == domain, "the table has one entry per domain point")
        precondition(offsets.count == count, "one offset per key")
        // reversed[m] = table[(−m) mod D], twice, so table[(o − i) mod D] = reversed[s + i] with s = (−o) mod D
        // is a contiguous window for i ∈ [0, D).
        var reversed = [UInt64](repeating: 0, count: 2 * domain)
        for m in 0..<(2 * domain) { reversed[m] = table[(domain - m % domain) % domain] }
        // Small entries (softmax's e^{−x}, GeLU's δ: 13 bits at most) in 16-bit lanes, 32 to a masked add: each
        // lane sums domain/32 entries, which must stay below 2^16. The sums are exact, so equal mod 2^64.
        let useNarrow = domain >= 64 && (table.max() ?? 0) < UInt64((1 << 16) / (domain / 32))
        let narrow: [UInt16] = useNarrow ? reversed.map { UInt16(truncatingIfNeeded: $0) } : []
        var counts = [UInt64](repeating: 0, count: count)
        var dots = [UInt64](repeating: 0, count: count)
        let chunk = max(1, DPFKeys.fullDomainChunkBlocks >> max(0, inputBits - 7))
        let chunks = (count + chunk - 1) / chunk
        withView { view in
            reversed.withUnsafeBufferPointer { window in
                narrow.withUnsafeBufferPointer { narrowTable in
                    counts.withUnsafeMutableBufferPointer { countsOut in
                        dots.withUnsafeMutableBufferPointer { dotsOut in
                            let work = UnsafeSendable((view, window, useNarrow ? narrowTable : nil, countsOut, dotsOut))
                            parallelFor(chunks, threads: threads) { c in
                                let (view, window, narrowWindow, countsOut, dotsOut) = work.value
                                let keys = (c * chunk)..<min((c + 1) * chunk, view.layout.count)
                                view.expandLeaves(keys: keys) { k, leaves in
                                    let start = Int(
                                        (UInt64(domain) &- (offsets[k] & UInt64(domain - 1))) & UInt64(domain - 1))
                                    let w = window.baseAddress! + start
                                    if view.layout.usesTruthTable {
                                        var count: UInt64 = 0
                                        var dot: UInt64 = 0
                                        for i in 0..<domain where view.tableBit(key: k, point: i) == 1 {
                                            count += 1
                                            dot &+= w[i]
                                        }
                                        countsOut[k] = count
                                        dotsOut[k] = dot
                                    } else {
                                        var count = 0
                                        for l in 0..<(domain / 128) {
                                            count += leaves[l].lo.nonzeroBitCount + leaves[l].hi.nonzeroBitCount
                                        }
                                        countsOut[k] = UInt64(count)
                                        dotsOut[k] =
                                            narrowWindow.map {
                                                sigma_bits_dot16(leaves, $0.baseAddress! + start, domain)
                                            }
                                            ?? sigma_bits_dot(leaves, w, domain)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return (counts, dots)
    }

    /// Leaf blocks expanded together per chunk (256 KiB).
    static let fullDomainChunkBlocks = 1 << 14
}

extension DPFKeyView {
    /// Expands `keys` to their 2^d leaf blocks (in domain order) and calls `body(k, leaves of key k)` for each
    /// key. Truth-table keys (b ≤ 7) have no leaves; `body` gets an empty pointer and reads the table.
    func expandLeaves(keys: Range<Int>, prg: FixedKeyPRG = .shared, _ body: (Int, UnsafePointer<Block>) -> Void) {
        guard !keys.isEmpty else { return }
        if layout.usesTruthTable {
            let none = UnsafeMutablePointer<Block>.allocate(capacity: 1)
            defer { none.deallocate() }
            for k in keys { body(k, none) }
            return
        }
        let leavesPerKey = 1 << layout.depth
        var current = UnsafeMutablePointer<Block>.allocate(capacity: keys.count * leavesPerKey)
        var next = UnsafeMutablePointer<Block>.allocate(capacity: keys.count * leavesPerKey)
        defer {
            current.deallocate()
            next.deallocate()
        }
        for (i, k) in keys.enumerated() { current[i] = root(k) }
        let base = bytes.baseAddress!
        var nodesPerKey = 1
        for level in 1...layout.depth {
            let isLeafLevel = level == layout.depth
            let words =
                isLeafLevel
                ? base + layout.leavesOffset + 32 * keys.lowerBound
                : base + layout.levelOffset(level) + 16 * keys.lowerBound
            let deltas =
                isLeafLevel ? nil : (base + layout.deltaOffset(level)).assumingMemoryBound(to: UInt8.self)
            sigma_dpf_expand_level(
                prg.backend.cValue, prg.state, current, next, words, deltas, keys.lowerBound,
                nodesPerKey, keys.count * nodesPerKey)
            swap(&current, &next)
            nodesPerKey *= 2
        }
        for (i, k) in keys.enumerated() { body(k, current + i * leavesPerKey) }
    }
}
