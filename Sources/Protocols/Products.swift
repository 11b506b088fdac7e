import FSS
import Ring

// Beaver products on masked values. With X̂ = X + R_X and Ŵ = W + R_W public to both parties,
//
//     X·W = X̂Ŵ − X̂·R_W − R_X·Ŵ + R_X·R_W,
//
// so the dealer gives each party shares of R_X, R_W and C = R_X·R_W + R_Z, party b computes
// Ẑ_b = [b = 0]·X̂Ŵ − X̂·[R_W]_b − [R_X]_b·Ŵ + [C]_b, and one reveal gives Ẑ = X·W + R_Z.

private let matmulTag = GateTag("MATM")
private let mulTag = GateTag("MULT")
private let broadcastMulTag = GateTag("MULB")

/// How a compact operand y repeats over a tensor of rows laid end to end, for `mul(_:_:broadcast:)`.
public enum Broadcast: Sendable, Equatable {
    /// y[r] over all of row r, for rows of these lengths (LayerNorm's 1/σ, softmax's row inverse).
    case rows(lengths: [Int])
    /// y, one row of y.count values, over every row (LayerNorm's γ).
    case columns

    /// Rows of one length.
    public static func rows(_ count: Int, length: Int) -> Broadcast {
        .rows(lengths: [Int](repeating: length, count: count))
    }

    /// y repeated out to `count` values: a fill per row, or a copy of y per row.
    public func expand(_ y: [UInt64], count: Int) -> [UInt64] {
        [UInt64](unsafeUninitializedCapacity: count) { out, initialized in
            y.withUnsafeBufferPointer { y in
                forEachRun(count: count, compact: y.count) { run, first, step in
                    let target = UnsafeMutableBufferPointer(rebasing: out[run])
                    if step == 0 {
                        target.initialize(repeating: y[first])
                    } else {
                        _ = target.initialize(from: UnsafeBufferPointer(rebasing: y[first..<(first + run.count)]))
                    }
                }
            }
            initialized = count
        }
    }

    /// Calls `body` with runs of elements: element run.lowerBound + i takes y[first + step·i] (step 0 for a row's
    /// value, 1 for a row of columns).
    func forEachRun(count: Int, compact: Int, _ body: (_ run: Range<Int>, _ first: Int, _ step: Int) -> Void) {
        switch self {
        case .rows(let lengths):
            precondition(lengths.count == compact && lengths.reduce(0, +) == count, "one y value per row")
            var start = 0
            for (row, length) in lengths.enumerated() {
                body(start..<(start + length), row, 0)
                start += length
            }
        case .columns:
            precondition(compact > 0 && count % compact == 0, "whole rows of y.count values")
            for start in stride(from: 0, to: count, by: compact) { body(start..<(start + compact), 0, 1) }
        }
    }
}

extension Cleartext {
    public func matmul(_ x: RingTensor, _ w: RingTensor, m: Int, k: Int, n: Int, batch: Int) throws -> RingTensor {
        let z = RingMatrix.multiply(x.values, w.values, m: m, k: k, n: n, batch: batch)
        return RingTensor(ring: x.ring, shape: [batch * m, n], values: z)
    }

    public func mul(_ x: RingTensor, _ y: RingTensor) throws -> RingTensor {
        RingTensor(ring: x.ring, shape: x.shape, values: zip(x.values, y.values).map { $0 &* $1 })
    }

    public func mul(_ x: RingTensor, _ y: RingTensor, broadcast: Broadcast) throws -> RingTensor {
        try mul(x, RingTensor(ring: y.ring, shape: x.shape, values: broadcast.expand(y.values, count: x.count)))
    }
}

extension Dealer {
    public func matmul(_ x: RingTensor, _ w: RingTensor, m: Int, k: Int, n: Int, batch: Int) throws -> RingTensor {
        let ring = x.ring
        try beginGate(matmulTag, count: batch * m * n)
        let maskZ = randomWords(batch * m * n, ring: ring)
        let product = RingMatrix.multiply(x.values, w.values, m: m, k: k, n: n, batch: batch)
        try share(x.values, bits: ring.bitwidth)
        try share(w.values, bits: ring.bitwidth)
        try share(zip(product, maskZ).map { ($0 &+ $1) & ring.mask }, bits: ring.bitwidth)
        return RingTensor(ring: ring, shape: [batch * m, n], values: maskZ)
    }

    public func mul(_ x: RingTensor, _ y: RingTensor) throws -> RingTensor {
        let ring = x.ring
        try beginGate(mulTag, count: x.count)
        let maskZ = randomWords(x.count, ring: ring)
        try share(x.values, bits: ring.bitwidth)
        try share(y.values, bits: ring.bitwidth)
        try share((0..<x.count).map { (x.values[$0] &* y.values[$0] &+ maskZ[$0]) & ring.mask }, bits: ring.bitwidth)
        return RingTensor(ring: ring, shape: x.shape, values: maskZ)
    }

    /// Shares of R_X per element, of R_Y once per value of y, and of C = R_X ⊙ R_Y′ + R_Z per element.
    public func mul(_ x: RingTensor, _ y: RingTensor, broadcast: Broadcast) throws -> RingTensor {
        let ring = x.ring
        try beginGate(broadcastMulTag, count: x.count)
        let maskZ = randomWords(x.count, ring: ring)
        try share(x.values, bits: ring.bitwidth)
        try share(y.values, bits: ring.bitwidth)
        let maskY = broadcast.expand(y.values, count: x.count)
        try share((0..<x.count).map { (x.values[$0] &* maskY[$0] &+ maskZ[$0]) & ring.mask }, bits: ring.bitwidth)
        return RingTensor(ring: ring, shape: x.shape, values: maskZ)
    }
}

extension PartyContext {
    public func matmul(_ x: RingTensor, _ w: RingTensor, m: Int, k: Int, n: Int, batch: Int) throws -> RingTensor {
        let ring = x.ring
        let bits = ring.bitwidth
        try keys.expectGate(matmulTag, count: batch * m * n)
        let maskX = try keys.words(x.count, bits: bits)
        let maskW = try keys.words(w.count, bits: bits)
        let c = try keys.words(batch * m * n, bits: bits)
        // [b = 0]·X̂Ŵ − X̂·[R_W]_b − [R_X]_b·Ŵ = X̂·([b = 0]·Ŵ − [R_W]_b) − [R_X]_b·Ŵ: two products, not three.
        let left = leads ? zip(w.values, maskW).map { $0 &- $1 } : maskW.map { 0 &- $0 }
        let first = RingMatrix.multiply(x.values, left, m: m, k: k, n: n, batch: batch)
        let second = RingMatrix.multiply(maskX, w.values, m: m, k: k, n: n, batch: batch)
        let share = (0..<c.count).map { (first[$0] &- second[$0] &+ c[$0]) & ring.mask }
        return RingTensor(ring: ring, shape: [batch * m, n], values: try reconstruct(share, bits: bits))
    }

    public func mul(_ x: RingTensor, _ y: RingTensor) throws -> RingTensor {
        RingTensor(ring: x.ring, shape: x.shape, values: try reconstruct(mulShares(x, y), bits: x.ring.bitwidth))
    }

    /// This party's share of x ⊙ y + r_out (the mul gate without its reveal).
    func mulShares(_ x: RingTensor, _ y: RingTensor) throws -> [UInt64] {
        let ring = x.ring
        let bits = ring.bitwidth
        try keys.expectGate(mulTag, count: x.count)
        let maskX = try keys.words(x.count, bits: bits)
        let maskY = try keys.words(x.count, bits: bits)
        let c = try keys.words(x.count, bits: bits)
        return (0..<x.count).map { i -> UInt64 in
            let xh = x.values[i]
            let yh = y.values[i]
            let publicTerm = leads ? xh &* yh : 0
            return (publicTerm &- xh &* maskY[i] &- maskX[i] &* yh &+ c[i]) & ring.mask
        }
    }

    public func mul(_ x: RingTensor, _ y: RingTensor, broadcast: Broadcast) throws -> RingTensor {
        let bits = x.ring.bitwidth
        try keys.expectGate(broadcastMulTag, count: x.count)
        let maskX = try keys.words(x.count, bits: bits)
        let maskY = try keys.words(y.count, bits: bits)
        let c = try keys.words(x.count, bits: bits)
        // x̂·(ŷ′·[b = 0] − [R_Y]′) − [R_X]·ŷ′ + [C], the first factor computed once per value of y.
        let factor = zip(y.values, maskY).map { leads ? $0 &- $1 : 0 &- $1 }
        let (xh, yh, mask) = (x.values, y.values, x.ring.mask)
        let shares = [UInt64](unsafeUninitializedCapacity: x.count) { out, initialized in
            broadcast.forEachRun(count: x.count, compact: y.count) { run, first, step in
                for i in run {
                    let j = first + step * (i - run.lowerBound)
                    out[i] = (xh[i] &* factor[j] &- maskX[i] &* yh[j] &+ c[i]) & mask
                }
            }
            initialized = x.count
        }
        return RingTensor(ring: x.ring, shape: x.shape, values: try reconstruct(shares, bits: bits))
    }
}

// A product with the server's own weights: P0 knows W, so X·W = X̂·W − R_X·W and
// R_X·W = R_X·Ŵ − R_X·R_W. The dealer gives P0 the weight mask R_W (for Ŵ = W + R_W, sent to P1), shares of R_X,
// and shares of C = R_X·R_W + R_Z; P0 computes X̂·W − [R_X]_0·Ŵ + [C]_0 and P1 −[R_X]_1·Ŵ + [C]_1. Compared with
// a private input followed by Beaver's product, the keys hold no shares of R_W, and P1 computes one product
// instead of two.

private let serverMatmulTag = GateTag("MATS")
let preparedMatmulTag = GateTag("MATP")

extension Cleartext {
    public func matmulMaskedWeights(
        _ x: RingTensor, _ w: MaskedServerWeights, m: Int, k: Int, n: Int, bias: [UInt64]?
    ) throws -> RingTensor {
        var product = w.product(x.values, w.shared, m: m, k: k, n: n)
        if let bias { for i in product.indices { product[i] = (product[i] &+ bias[i % n]) & x.ring.mask } }
        return RingTensor(ring: x.ring, shape: [m, n], values: product)
    }
}

extension Dealer {
    public func matmulMaskedWeights(
        _ x: RingTensor, _ w: MaskedServerWeights, m: Int, k: Int, n: Int, bias: [UInt64]?
    ) throws -> RingTensor {
        let ring = x.ring
        // With a preprocessing stream the shares of R_X and C go there (the online keys keep the gate's tag), and
        // the parties fold them with Ŵ before the online phase.
        try beginGate(
            preprocessing == nil ? serverMatmulTag : preparedMatmulTag, count: m * n, seeding: preprocessing == nil)
        if let preprocessing { try beginGate(preparedMatmulTag, count: m * n, on: preprocessing) }
        let outputMask = randomWords(m * n, ring: ring)
        try share(x.values, bits: ring.bitwidth, to: preprocessing)
        let product = w.product(x.values, w.shared, m: m, k: k, n: n)
        try share(zip(product, outputMask).map { ($0 &+ $1) & ring.mask }, bits: ring.bitwidth, to: preprocessing)
        return RingTensor(ring: ring, shape: [m, n], values: outputMask)
    }
}

extension PartyContext {
    public func matmulMaskedWeights(
        _ x: RingTensor, _ w: MaskedServerWeights, m: Int, k: Int, n: Int, bias: [UInt64]?
    ) throws -> RingTensor {
        let ring = x.ring
        let bits = ring.bitwidth
        if preparedProducts != nil {
            // −[R_X]_b·Ŵ + [C]_b came from `preprocess`: the server's X̂·W (+ b) is the only product left.
            try keys.expectGate(preparedMatmulTag, count: m * n)
            var share = try takePreparedProduct(count: m * n)
            if let own = w.own {
                let direct = w.product(x.values, own, m: m, k: k, n: n)
                for i in share.indices { share[i] = (share[i] &+ direct[i] &+ (bias?[i % n] ?? 0)) & ring.mask }
            }
            return RingTensor(ring: ring, shape: [m, n], values: try reconstruct(share, bits: bits))
        }
        try keys.expectGate(serverMatmulTag, count: m * n)
        let maskShares = try keys.words(x.count, bits: bits)
        let c = try keys.words(m * n, bits: bits)
        let masked = w.product(maskShares, w.shared, m: m, k: k, n: n)
        let direct = w.own.map { w.product(x.values, $0, m: m, k: k, n: n) }
        let ownBias = leads ? bias : nil
        let share = (0..<(m * n)).map { i in
            ((direct?[i] ?? 0) &+ (ownBias?[i % n] ?? 0) &- masked[i] &+ c[i]) & ring.mask
        }
        return RingTensor(ring: ring, shape: [m, n], values: try reconstruct(share, bits: bits))
    }
}

extension RingBackend {
    /// The same without a bias.
    public func matmulMaskedWeights(_ x: RingTensor, _ w: MaskedServerWeights, m: Int, k: Int, n: Int) throws
        -> RingTensor
    {
        try matmulMaskedWeights(x, w, m: m, k: k, n: n, bias: nil)
    }

    /// X[m×k] · W[k×n] for the server's own weights W (`weights` on the server and the cleartext backend, nil
    /// elsewhere): `maskServerWeights`, then `matmulMaskedWeights` — one reveal, no shares of the weight mask in the
    /// keys.
    public func matmulServerWeights(_ x: RingTensor, weights: [UInt64]?, m: Int, k: Int, n: Int) throws -> RingTensor {
        try matmulMaskedWeights(x, try maskServerWeights(weights, count: k * n, ring: x.ring), m: m, k: k, n: n)
    }
}
