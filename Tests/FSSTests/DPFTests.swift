import Testing

@testable import FSS

func reconstruct(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] { zip(a, b).map { $0 ^ $1 } }

/// How many positions differ (short failure messages for long bit vectors).
func mismatches(_ a: [UInt8], _ b: [UInt8]) -> Int {
    a.count == b.count ? zip(a, b).filter { $0 != $1 }.count : max(a.count, b.count)
}

@Suite("DPF and DPF comparison")
struct DPFTests {
    @Test("every input of every key, bitwidths 1...10", arguments: 1...10)
    func exhaustive(bits: Int) {
        var random = SecureRandom(insecureTestSeed: UInt64(bits))
        let domain = UInt64(1) << UInt64(bits)
        // Every α for small domains; otherwise the edges plus random points.
        let alphas: [UInt64] =
            bits <= 7 ? Array(0..<domain) : [0, 1, 127, 128, domain / 2, domain - 1] + random.values(10, bits: bits)
        let (k0, k1) = DPF.generate(alphas: alphas, inputBits: bits, random: &random)
        let points = alphas.flatMap { _ in Array(0..<domain) }
        let equal = reconstruct(
            k0.evaluate(at: points, pointsPerKey: Int(domain)),
            k1.evaluate(at: points, pointsPerKey: Int(domain)))
        let less = reconstruct(
            k0.lessThan(at: points, pointsPerKey: Int(domain)),
            k1.lessThan(at: points, pointsPerKey: Int(domain)))
        for (k, alpha) in alphas.enumerated() {
            for x in 0..<domain {
                let j = k * Int(domain) + Int(x)
                #expect(equal[j] == (x == alpha ? 1 : 0), "b=\(bits) α=\(alpha) x=\(x) equality")
                #expect(less[j] == (x < alpha ? 1 : 0), "b=\(bits) α=\(alpha) x=\(x) comparison")
            }
        }
    }

    @Test("random keys and points, bitwidths up to 64", arguments: [11, 12, 15, 16, 20, 32, 37, 38, 50, 63, 64])
    func randomWide(bits: Int) {
        var random = SecureRandom(insecureTestSeed: 100 + UInt64(bits))
        let mask: UInt64 = bits == 64 ? ~0 : (1 << UInt64(bits)) - 1
        let alphas = random.values(300, bits: bits) + [0, mask, 1 << UInt64(bits - 1)]
        let (k0, k1) = DPF.generate(alphas: alphas, inputBits: bits, random: &random)
        // Per key: α itself, its neighbours, 0, the top of the domain, and two random points.
        var points: [UInt64] = []
        for alpha in alphas {
            points += [alpha, (alpha &- 1) & mask, (alpha &+ 1) & mask, 0, mask, random.next(bits: bits)]
            points.append((alpha & ~127) | random.next(bits: 7))  // same leaf, another bit
        }
        let e = 7
        let equal = reconstruct(k0.evaluate(at: points, pointsPerKey: e), k1.evaluate(at: points, pointsPerKey: e))
        let less = reconstruct(k0.lessThan(at: points, pointsPerKey: e), k1.lessThan(at: points, pointsPerKey: e))
        for j in points.indices {
            let alpha = alphas[j / e]
            #expect(equal[j] == (points[j] == alpha ? 1 : 0), "b=\(bits) α=\(alpha) x=\(points[j])")
            #expect(less[j] == (points[j] < alpha ? 1 : 0), "b=\(bits) α=\(alpha) x=\(points[j])")
        }
    }

    @Test("one key at several public shifts of the same input")
    func shifts() {
        var random = SecureRandom(insecureTestSeed: 5)
        let bits = 32
        let alphas = random.values(500, bits: bits)
        let inputs = random.values(500, bits: bits)
        let shifts: [UInt64] = [0, 255, (1 << 32) - 255]
        let (k0, k1) = DPF.generate(alphas: alphas, inputBits: bits, random: &random)
        let less = reconstruct(k0.lessThan(inputs: inputs, shifts: shifts), k1.lessThan(inputs: inputs, shifts: shifts))
        for k in alphas.indices {
            for (e, shift) in shifts.enumerated() {
                let x = (inputs[k] &+ shift) & 0xFFFF_FFFF
                #expect(less[k * 3 + e] == (x < alphas[k] ? 1 : 0))
            }
        }
    }

    /// The shifted kernel starts each extra point where it leaves the first point's path: shifts that differ in
    /// the leaf bits only, at every level, or not at all; inputs at and beside α; key counts that are not whole
    /// 16-key groups and span several 1024-key chunks.
    @Test("shifted points equal each point evaluated alone", arguments: [8, 9, 12, 20, 38, 50, 64])
    func shiftedPaths(bits: Int) {
        var random = SecureRandom(insecureTestSeed: 300 + UInt64(bits))
        let mask: UInt64 = bits == 64 ? ~0 : (1 << UInt64(bits)) - 1
        let count = 2_500
        let alphas = random.values(count, bits: bits)
        // Half the inputs sit just below or at α (minus a shift), so the comparisons are not all decided high up.
        let inputs = (0..<count).map { k in k % 2 == 0 ? random.next(bits: bits) : (alphas[k] &- UInt64(k % 5)) & mask }
        let (k0, k1) = DPF.generate(alphas: alphas, inputBits: bits, random: &random)
        let shiftSets: [[UInt64]] = [
            [0, 16320, (0 &- 16320) & mask],  // GeLU's clip bound
            [5, 5, 3, 1 << UInt64(bits - 1), mask],  // a repeat, leaf-only, the top bit, −1
            (0..<UInt64(bits)).map { (1 << $0) & mask },  // one divergence per level
            [random.next(bits: bits)],
            // Three shifts whose extra points leave at a middle level and at the top, before the common level.
            [7, (1 << UInt64(bits / 2)) & mask, (mask &- (1 << UInt64(bits - 3)) &+ 1) & mask],
        ]
        for shifts in shiftSets {
            let e = shifts.count
            let points = inputs.flatMap { x in shifts.map { (x &+ $0) & mask } }
            let expected = (0..<points.count).map { j in points[j] < alphas[j / e] ? UInt8(1) : 0 }
            let alone = reconstruct(k0.lessThan(at: points, pointsPerKey: e), k1.lessThan(at: points, pointsPerKey: e))
            #expect(mismatches(alone, expected) == 0, "b=\(bits) shifts \(shifts): point by point")
            for threads in [1, 3] {
                let shifted = reconstruct(
                    k0.lessThan(inputs: inputs, shifts: shifts, threads: threads),
                    k1.lessThan(inputs: inputs, shifts: shifts, threads: threads))
                #expect(mismatches(shifted, expected) == 0, "b=\(bits) shifts \(shifts) threads \(threads)")
            }
            for backend in supportedBackends {
                let share0 = k0.lessThan(inputs: inputs, shifts: shifts)
                let view0 = k0.withView { view in
                    var out = [UInt8](repeating: 0, count: points.count)
                    inputs.withUnsafeBufferPointer { x in
                        shifts.withUnsafeBufferPointer { shifts in
                            out.withUnsafeMutableBufferPointer { o in
                                view
                                    .evaluateShifted(
                                        keys: 0..<count, inputs: x, shifts: shifts, output: o,
                                        prg: FixedKeyPRG(backend: backend))
                            }
                        }
                    }
                    return out
                }
                #expect(mismatches(view0, share0) == 0, "b=\(bits) shifts \(shifts) backend \(backend)")
            }
        }
    }

    /// The vector level passes work on groups of 16 and 32 points with a scalar tail: counts around those sizes,
    /// one and three points per key, equality and comparison, each backend against the truth.
    @Test("every backend at group-boundary counts, equality and comparison", arguments: supportedBackends)
    func groupBoundaries(backend: AESBackend) {
        var random = SecureRandom(insecureTestSeed: 77)
        for bits in [9, 38, 64] {
            let mask: UInt64 = bits == 64 ? ~0 : (1 << UInt64(bits)) - 1
            for count in [1, 15, 16, 17, 31, 32, 33, 48, 63, 2_048 + 16 + 3] {
                let alphas = random.values(count, bits: bits)
                let (k0, k1) = DPF.generate(alphas: alphas, inputBits: bits, random: &random)
                for pointsPerKey in [1, 3] {
                    // Every third point at α or just below it, so the leaf-level paths are exercised.
                    let points = (0..<(count * pointsPerKey)).map { j -> UInt64 in
                        j % 3 == 0 ? random.next(bits: bits) : (alphas[j / pointsPerKey] &- UInt64(j % 3 - 1)) & mask
                    }
                    for comparison in [false, true] {
                        let expected = (0..<points.count).map { j -> UInt8 in
                            let alpha = alphas[j / pointsPerKey]
                            return (comparison ? points[j] < alpha : points[j] == alpha) ? 1 : 0
                        }
                        let shares = [k0, k1].map { key in
                            key.withView { view in
                                var out = [UInt8](repeating: 0, count: points.count)
                                points.withUnsafeBufferPointer { x in
                                    out.withUnsafeMutableBufferPointer { o in
                                        view
                                            .evaluatePaths(
                                                keys: 0..<count, pointsPerKey: pointsPerKey, points: x, output: o,
                                                comparison: comparison, prg: FixedKeyPRG(backend: backend))
                                    }
                                }
                                return out
                            }
                        }
                        #expect(
                            mismatches(reconstruct(shares[0], shares[1]), expected) == 0,
                            "b=\(bits) count \(count) E=\(pointsPerKey) comparison \(comparison)")
                    }
                }
            }
        }
    }

    @Test("parallel evaluation equals sequential, on every backend", arguments: supportedBackends)
    func threadsAndBackends(backend: AESBackend) {
        var random = SecureRandom(insecureTestSeed: 9)
        let alphas = random.values(20_000, bits: 38)
        let points = random.values(20_000, bits: 38)
        let (k0, k1) = DPF.generate(alphas: alphas, inputBits: 38, random: &random)
        let sequential = reconstruct(k0.lessThan(at: points), k1.lessThan(at: points))
        let parallel = reconstruct(k0.lessThan(at: points, threads: 4), k1.lessThan(at: points, threads: 4))
        #expect(sequential == parallel)
        #expect(sequential == zip(points, alphas).map { $0 < $1 ? 1 : 0 })
        // Keys are the same whatever backend the evaluator uses.
        let view0 = k0.withView { view in
            var out = [UInt8](repeating: 0, count: points.count)
            points.withUnsafeBufferPointer { x in
                out.withUnsafeMutableBufferPointer { o in
                    view
                        .evaluatePaths(
                            keys: 0..<alphas.count, pointsPerKey: 1, points: x, output: o, comparison: true,
                            prg: FixedKeyPRG(backend: backend))
                }
            }
            return out
        }
        #expect(view0 == k0.lessThan(at: points))
    }

    @Test("each party's shares alone are balanced: about half ones, whatever the point")
    func sharesLookRandom() {
        var random = SecureRandom(insecureTestSeed: 21)
        let alphas = [UInt64](repeating: 12345, count: 4000)
        let (k0, _) = DPF.generate(alphas: alphas, inputBits: 20, random: &random)
        let atAlpha = k0.evaluate(at: alphas).reduce(0) { $0 + Int($1) }
        let below = k0.lessThan(at: [UInt64](repeating: 0, count: 4000)).reduce(0) { $0 + Int($1) }
        #expect((1700...2300).contains(atAlpha))
        #expect((1700...2300).contains(below))
    }
}
