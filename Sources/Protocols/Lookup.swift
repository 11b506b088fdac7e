import FSS
import Ring

// Lookup tables from a full-domain DPF (Pika; SIGMA §3.3). The dealer gives a DPF key for the input mask r;
// each party sums the table over its share bits, rotated by x̂: v_0 − v_1 = s·T[x] for a sign s = ±1 that
// depends on which party holds the 1 at r, and u = (count_0 − count_1) mod 4 is 1 or 3 accordingly. Neither
// party may learn s (with its own share bits it would narrow r to half the domain), so:
//
// 1. one message each way carries u + 2·m_σ (mod 4) and w + r_w: the parties learn the masked sign bit
//    σ̂ = σ ⊕ m_σ (bit 1 of the sum; bit 0 is always 1) and ŵ = s·T[x] + r_w together (the reference sends them
//    in two messages);
// 2. T[x] = (1 − 2σ)·w, where σ = σ̂ ⊕ m_σ: with M = 1 − 2·m_σ, the output share is ±[M]·ŵ plus one of two
//    dealer candidates (three words of key), revealed or merged into the next gate's reveal.

private let lookupTag = GateTag("LOOK")

extension Cleartext {
    /// T[x] for a b-bit x (the table has 2^b entries), in `output`.
    public func lookup(_ x: RingTensor, table: [UInt64], output: Ring) throws -> RingTensor {
        RingTensor(ring: output, shape: x.shape, values: x.values.map { table[Int($0)] })
    }
}

extension Dealer {
    /// Keys for T[x] with input masks `masks` (b bits); returns the output masks.
    func lookupKeys(masks: [UInt64], inputBits b: Int, output: Ring) throws -> [UInt64] {
        let keys = DPF.generate(alphas: masks, inputBits: b, random: &random)
        try p0.dpf(keys.p0)
        try p1.dpf(keys.p1)
        let count = masks.count
        let signMasks = randomBits(count)
        try share(signMasks.map { UInt64($0) << 1 }, bits: 2)
        let valueMasks = randomWords(count, ring: output)
        try share(valueMasks, bits: output.bitwidth)
        let outputMasks = randomWords(count, ring: output)
        let sign = signMasks.map { $0 == 0 ? UInt64(1) : output.mask }  // M = 1 − 2·m_σ
        try share(sign, bits: output.bitwidth)
        try candidates(
            whenZero: (0..<count).map { (outputMasks[$0] &- sign[$0] &* valueMasks[$0]) & output.mask },
            whenOne: (0..<count).map { (outputMasks[$0] &+ sign[$0] &* valueMasks[$0]) & output.mask },
            bits: output.bitwidth)
        return outputMasks
    }

    public func lookup(_ x: RingTensor, table: [UInt64], output: Ring) throws -> RingTensor {
        precondition(table.count == 1 << x.ring.bitwidth, "one table entry per input value")
        try beginGate(lookupTag, count: x.count)
        let masks = try lookupKeys(masks: x.values, inputBits: x.ring.bitwidth, output: output)
        return RingTensor(ring: output, shape: x.shape, values: masks)
    }
}

extension PartyContext {
    /// This party's share of T[x] + r_out, for masked b-bit inputs: one round.
    func lookupShares(_ masked: [UInt64], table: [UInt64], output: Ring) throws -> [UInt64] {
        let keys = try self.keys.dpf()
        let count = masked.count
        let signMaskShares = try self.keys.words(count, bits: 2)
        let valueMaskShares = try self.keys.words(count, bits: output.bitwidth)
        let sign = try self.keys.words(count, bits: output.bitwidth)
        let (counts, dots) = keys.fullDomainInnerProduct(table: table, offsets: masked)
        let u = (0..<count).map { i in ((leads ? counts[i] : 0 &- counts[i]) &+ signMaskShares[i]) & 3 }
        let w = (0..<count).map { i in ((leads ? dots[i] : 0 &- dots[i]) &+ valueMaskShares[i]) & output.mask }
        let revealed = try reconstructMany([(u, 2), (w, output.bitwidth)])
        let signBits = revealed[0].map { UInt8($0 >> 1) }
        let picked = try pickCandidates(signBits, bits: output.bitwidth)
        return (0..<count).map { i in
            let term = sign[i] &* revealed[1][i]
            return ((signBits[i] == 0 ? term : 0 &- term) &+ picked[i]) & output.mask
        }
    }

    public func lookup(_ x: RingTensor, table: [UInt64], output: Ring) throws -> RingTensor {
        try keys.expectGate(lookupTag, count: x.count)
        let shares = try lookupShares(x.values, table: table, output: output)
        return RingTensor(ring: output, shape: x.shape, values: try reconstruct(shares, bits: output.bitwidth))
    }

    /// Several share vectors, each packed to its own width, reconstructed in one round.
    func reconstructMany(_ parts: [([UInt64], Int)]) throws -> [[UInt64]] {
        var message: [UInt8] = []
        for (shares, bits) in parts { BitPacking.pack(shares, bits: bits, into: &message) }
        return try channel.exchange(message) { theirs in
            guard theirs.count == message.count else {
                throw ProtocolError.malformedMessage(expected: message.count, received: theirs.count)
            }
            var offset = 0
            return try parts.map { shares, bits in
                let size = BitPacking.byteCount(count: shares.count, bits: bits)
                let piece = UnsafeRawBufferPointer(rebasing: theirs[offset..<(offset + size)])
                guard let peer = BitPacking.unpack(piece, count: shares.count, bits: bits) else {
                    throw ProtocolError.malformedMessage(expected: message.count, received: theirs.count)
                }
                offset += size
                let mask: UInt64 = bits == 64 ? ~0 : (1 << UInt64(bits)) - 1
                return RingTensor.combine(shares, peer, mask: mask) { $0 &+ $1 }
            }
        }
    }
}
