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

extension Cleartext {
    public func matmul(_ x: RingTensor, _ w: RingTensor, m: Int, k: Int, n: Int, batch: Int) throws -> RingTensor {
        let z = RingMatrix.multiply(x.values, w.values, m: m, k: k, n: n, batch: batch)
        return RingTensor(ring: x.ring, shape: [batch * m, n], values: z)
    }

    public func mul(_ x: RingTensor, _ y: RingTensor) throws -> RingTensor {
        RingTensor(ring: x.ring, shape: x.shape, values: zip(x.values, y.values).map { $0 &* $1 })
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
        let ring = x.ring
        let bits = ring.bitwidth
        try keys.expectGate(mulTag, count: x.count)
        let maskX = try keys.words(x.count, bits: bits)
        let maskY = try keys.words(x.count, bits: bits)
        let c = try keys.words(x.count, bits: bits)
        let share = (0..<x.count).map { i -> UInt64 in
            let xh = x.values[i]
            let yh = y.values[i]
            let publicTerm = leads ? xh &* yh : 0
            return (publicTerm &- xh &* maskY[i] &- maskX[i] &* yh &+ c[i]) & ring.mask
        }
        return RingTensor(ring: ring, shape: x.shape, values: try reconstruct(share, bits: bits))
    }
}
