import FSS
import Protocols
import Ring
import Testing

let bitwidths = [16, 37, 50, 64]

/// Edge values of an n-bit ring: 0, ±1, the largest magnitudes of the full range and of the GapARS range.
func edges(_ ring: Ring) -> [UInt64] {
    let n = Int64(ring.bitwidth)
    let top = n == 64 ? Int64.max : (Int64(1) << (n - 1)) - 1
    let gap = (Int64(1) << (n - 2)) - 1
    return [0, 1, -1, top, -top - 1, gap, -gap - 1, gap - 1, 4096, -4096].map(ring.word)
}

@Suite("Protocols against the cleartext backend")
struct ProtocolTests {
    @Test("private inputs of both parties, and the reveal to the client alone", arguments: bitwidths)
    func inputsAndReveal(bits: Int) throws {
        let ring = Ring(bitwidth: bits)
        var values = TestValues(seed: 1)
        let client = values.signed(100, magnitudeBits: bits - 1, ring: ring)
        let server = values.signed(100, magnitudeBits: bits - 1, ring: ring)
        let runs = try runEverywhere { b -> [[UInt64]?] in
            let x = try b.inputFromClient(client, shape: [100], ring: ring)
            let w = try b.inputFromServer(server, shape: [100], ring: ring)
            return [try b.revealToClient(b.add(x, w))]
        }
        let expected = zip(client, server).map { ($0 &+ $1) & ring.mask }
        #expect(runs.clear == [expected])
        #expect(runs.p1 == [expected])  // the client learns the output
        #expect(runs.p0 == [nil])  // the server does not
    }

    @Test("Beaver matmul, 2-D and batched, and elementwise Mul", arguments: bitwidths)
    func products(bits: Int) throws {
        let ring = Ring(bitwidth: bits)
        var values = TestValues(seed: 2)
        let (m, k, n, batch) = (5, 7, 3, 2)
        let x = values.signed(batch * m * k, magnitudeBits: bits - 1, ring: ring)
        let w = values.signed(batch * k * n, magnitudeBits: bits - 1, ring: ring)
        let runs = try runEverywhere { b -> RingTensor in
            let xs = try b.inputFromClient(x, shape: [batch * m, k], ring: ring)
            let ws = try b.inputFromServer(w, shape: [batch * k, n], ring: ring)
            let z = try b.matmul(xs, ws, m: m, k: k, n: n, batch: batch)
            let first = RingTensor(ring: ring, shape: [m * n], values: Array(z.values[0..<(m * n)]))
            let second = RingTensor(ring: ring, shape: [m * n], values: Array(z.values[(m * n)...]))
            return try b.mul(first, second)
        }
        #expect(runs.partiesAgree)
        #expect(runs.secure == runs.clear.values)
        // The cleartext backend itself: one entry by hand.
        let z00 = (0..<k).reduce(UInt64(0)) { $0 &+ x[$1] &* w[$1 * n] } & ring.mask
        let zb00 = (0..<k).reduce(UInt64(0)) { $0 &+ x[m * k + $1] &* w[k * n + $1 * n] } & ring.mask
        #expect(runs.clear.values[0] == (z00 &* zb00) & ring.mask)
    }

    @Test(
        "Mul with a broadcast operand: a value per row (rows of unequal lengths) and one row over all rows",
        arguments: bitwidths)
    func broadcastProducts(bits: Int) throws {
        let ring = Ring(bitwidth: bits)
        var values = TestValues(seed: 3)
        let lengths = [1, 4, 3, 4]  // 12 elements, also 3 rows of 4 columns
        let x = values.signed(12, magnitudeBits: bits - 1, ring: ring)
        let perRow = values.signed(4, magnitudeBits: bits - 1, ring: ring)
        let perColumn = values.signed(4, magnitudeBits: bits - 1, ring: ring)
        let runs = try runEverywhere { b -> [RingTensor] in
            let xs = try b.inputFromClient(x, shape: [12], ring: ring)
            let rows = try b.inputFromServer(perRow, shape: [4], ring: ring)
            let columns = try b.inputFromServer(perColumn, shape: [4], ring: ring)
            return [
                try b.mul(xs, rows, broadcast: .rows(lengths: lengths)),
                try b.mul(xs, columns, broadcast: .columns),
            ]
        }
        #expect(runs.p0 == runs.p1)
        let rowOf = [0, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3]
        let byRow: [UInt64] = (0..<12).map { i in (x[i] &* perRow[rowOf[i]]) & ring.mask }
        let byColumn: [UInt64] = (0..<12).map { i in (x[i] &* perColumn[i % 4]) & ring.mask }
        let expected = [byRow, byColumn]
        #expect(runs.clear.map(\.values) == expected)
        for (i, want) in expected.enumerated() {
            #expect(zip(runs.p0[i].values, runs.masks[i].values).map { ($0 &- $1) & ring.mask } == want)
        }
    }

    @Test(
        "TR, GapARS and faithful ARS, in one round from a DCF (small tensors) and in two from a DPF (large ones)",
        arguments: bitwidths, [1, 6, 12])
    func truncations(bits: Int, f: Int) throws {
        try truncations(bits: bits, f: f, large: false)
        if f != 6 { try truncations(bits: bits, f: f, large: true) }
    }

    func truncations(bits: Int, f: Int, large: Bool) throws {
        let ring = Ring(bitwidth: bits)
        var values = TestValues(seed: UInt64(bits * 100 + f))
        // Past the one-round limit, padded with more random values after the edges (whose indices the checks use).
        let padding = large ? oneRoundTruncationLimit : 0
        let full =
            values.signed(300, magnitudeBits: bits - 1, ring: ring) + edges(ring)
            + values.signed(padding, magnitudeBits: bits - 1, ring: ring)
        let gapBound = Int64(1) << Int64(bits - 2)
        let gapped =
            values.signed(300, magnitudeBits: bits - 2, ring: ring)
            + edges(ring).filter { (-gapBound..<gapBound).contains(ring.signed($0)) }
            + values.signed(padding, magnitudeBits: bits - 2, ring: ring)
        let runs = try runEverywhere { b -> [RingTensor] in
            let x = try b.inputFromClient(full, shape: [full.count], ring: ring)
            let g = try b.inputFromClient(gapped, shape: [gapped.count], ring: ring)
            return [try b.truncateReduce(x, by: f), try b.gapARS(g, by: f), try b.faithfulARS(x, by: f)]
        }
        for (i, name) in ["TR", "GapARS", "faithful ARS"].enumerated() {
            let secure = zip(runs.p0[i].values, runs.masks[i].values).map { ($0 &- $1) & runs.p0[i].ring.mask }
            #expect(runs.p0[i] == runs.p1[i], "\(name): the parties hold the same masked output")
            #expect(secure == runs.clear[i].values, "\(name) n=\(bits) f=\(f) large=\(large)")
        }
        #expect(runs.clear[0].ring.bitwidth == bits - f)
        #expect(runs.clear[0].values[300 + 3] == (1 << UInt64(bits - 1 - f)) - 1)  // TR(2^{n−1} − 1)
        #expect(runs.clear[0].values[300 + 4] == 1 << UInt64(bits - 1 - f))  // TR(2^{n−1})
        #expect(runs.clear[2].values[300 + 2] == ring.mask)  // ARS(−1) = −1
        #expect(runs.clear[2].values[300 + 4] == ring.word(-(Int64(1) << Int64(bits - 1 - f))))  // ARS(−2^{n−1})
    }

    @Test("DReLU, ReLU, Select", arguments: bitwidths)
    func comparisons(bits: Int) throws {
        let ring = Ring(bitwidth: bits)
        var values = TestValues(seed: 3)
        let x = values.signed(500, magnitudeBits: bits - 1, ring: ring) + edges(ring)
        let runs = try runEverywhere { b -> [RingTensor] in
            let xs = try b.inputFromClient(x, shape: [x.count], ring: ring)
            let d = try b.drelu(xs)
            let asWire = RingTensor(
                ring: Ring(bitwidth: 1, scale: 0), shape: d.shape, values: d.bits.map { UInt64($0) })
            return [asWire, try b.relu(xs)]
        }
        #expect(runs.p0 == runs.p1)
        let dreluSecure = zip(runs.p0[0].values, runs.masks[0].values).map { $0 ^ $1 }
        #expect(dreluSecure == x.map { ring.signed($0) >= 0 ? 1 : 0 })
        let reluSecure = zip(runs.p0[1].values, runs.masks[1].values).map { ($0 &- $1) & ring.mask }
        #expect(reluSecure == x.map { ring.signed($0) >= 0 ? $0 : 0 })
        #expect(reluSecure == runs.clear[1].values)
    }

    @Test("SelectLin with GeLU's coefficients: |clip(y)| on 8 bits")
    func selectLinear() throws {
        let ring = Ring(bitwidth: 8, scale: 0)
        let s0 = (0..<64).map { UInt8($0 & 1) }
        let s1 = (0..<64).map { UInt8(($0 >> 1) & 1) }
        let x = (0..<64).map { UInt64($0 * 37 % 256) }
        // γ = {(0,255), (0,255), (−1,0), (1,0)} (SIGMA §3.5)
        let alpha: [UInt64] = [0, 0, 255, 1]
        let beta: [UInt64] = [255, 255, 0, 0]
        let runs = try runEverywhere { b -> RingTensor in
            let xs = try b.inputFromClient(x, shape: [64], ring: ring)
            let bits0 = BitTensor(shape: [64], bits: s0)
            let bits1 = BitTensor(shape: [64], bits: s1)
            // Bits enter as wires through DReLU of ±1 so that every backend holds its own representation.
            let one = ring.word(1), minusOne = ring.word(-1)
            let w0 = try b.drelu(
                try b.inputFromClient(bits0.bits.map { $0 == 1 ? one : minusOne }, shape: [64], ring: ring))
            let w1 = try b.drelu(
                try b.inputFromClient(bits1.bits.map { $0 == 1 ? one : minusOne }, shape: [64], ring: ring))
            return try b.selectLinear(w0, w1, xs, alpha: alpha, beta: beta, output: ring)
        }
        #expect(runs.partiesAgree)
        #expect(runs.secure == runs.clear.values)
        #expect(
            runs.clear.values
                == (0..<64).map { i in
                    let index = 2 * Int(s0[i]) + Int(s1[i])
                    return (alpha[index] &* x[i] &+ beta[index]) & 255
                })
    }

    @Test("max along rows of any length, with ties", arguments: [1, 2, 3, 5, 8, 13])
    func maxRows(length: Int) throws {
        let ring = Ring(bitwidth: 37)
        var values = TestValues(seed: UInt64(length))
        var row = values.signed(4 * length, magnitudeBits: 30, ring: ring)
        row.replaceSubrange(0..<length, with: repeatElement(ring.word(-5), count: length))  // an all-equal row
        let x = row
        let runs = try runEverywhere { b -> RingTensor in
            try b.maxRows(try b.inputFromClient(x, shape: [x.count], ring: ring), rowLength: length)
        }
        #expect(runs.partiesAgree)
        #expect(runs.secure == runs.clear.values)
        let expected = (0..<4).map { r -> UInt64 in
            x[(r * length)..<((r + 1) * length)].max { ring.signed($0) < ring.signed($1) }!
        }
        #expect(runs.clear.values == expected)
        #expect(runs.p0Statistics.rounds == 1 + 2 * ceilLog2(length))  // the input, then two rounds a level
    }

    @Test("what a party receives does not depend on the input")
    func maskedValuesLookUniform() throws {
        let ring = Ring(bitwidth: 37)
        let count = 4000
        var fractions: [Double] = []
        for input in [ring.word(-(1 << 30)), ring.word(1 << 30)] {
            let x = [UInt64](repeating: input, count: count)
            let runs = try runEverywhere(seed: 77) { b -> [RingTensor] in
                let xs = try b.inputFromClient(x, shape: [count], ring: ring)
                let d = try b.drelu(xs)
                return [
                    xs,
                    RingTensor(ring: Ring(bitwidth: 1, scale: 0), shape: [count], values: d.bits.map { UInt64($0) }),
                ]
            }
            // The server sees x̂ and the masked sign bit; both must be uniform whatever x is.
            fractions.append(Double(runs.p0[0].values.filter { $0 >> 36 == 1 }.count) / Double(count))
            fractions.append(Double(runs.p0[1].values.filter { $0 == 1 }.count) / Double(count))
        }
        // 4000 fair coins: 0.5 ± 0.04 is more than 5 standard deviations.
        #expect(fractions.allSatisfy { abs($0 - 0.5) < 0.04 }, "\(fractions)")
    }

    @Test("a party whose keys were made for another computation stops with a clear error")
    func outOfStep() throws {
        let ring = Ring(bitwidth: 37)
        let sink0 = MemoryKeySink()
        let sink1 = MemoryKeySink()
        let dealer = Dealer(p0: sink0, p1: sink1, random: SecureRandom(insecureTestSeed: 1))
        _ = try dealer.truncateReduce(RingTensor(zeros: [10], ring: ring), by: 12)
        let (c0, _) = LocalChannel.pair(timeout: 1)
        let party = PartyContext(party: .p0, keys: KeyStreamReader(copying: sink0.bytes), channel: c0)
        #expect(throws: KeyStreamError.outOfStep(expected: "DREL of 10", found: "TRUN of 10")) {
            try party.drelu(RingTensor(zeros: [10], ring: ring))
        }
        let short = PartyContext(party: .p0, keys: KeyStreamReader(copying: Array(sink0.bytes.prefix(40))), channel: c0)
        #expect(throws: KeyStreamError.self) { try short.truncateReduce(RingTensor(zeros: [10], ring: ring), by: 12) }
    }
}

func ceilLog2(_ k: Int) -> Int { k <= 1 ? 0 : Int.bitWidth - (k - 1).leadingZeroBitCount }

@Suite("Lookup tables")
struct LookupTests {
    @Test("T[x] equals the table for every input of small domains", arguments: [3, 7, 8, 10, 13])
    func lookup(bits: Int) throws {
        let input = Ring(bitwidth: bits, scale: 0)
        let output = Ring(bitwidth: 50)
        var values = TestValues(seed: UInt64(bits))
        let table = (0..<(1 << bits)).map { _ in values.next() & output.mask }
        let x = (0..<min(1 << bits, 600)).map { UInt64($0 * 7919 % (1 << bits)) } + [0, input.mask]
        let runs = try runEverywhere { b -> RingTensor in
            try b.lookup(try b.inputFromClient(x, shape: [x.count], ring: input), table: table, output: output)
        }
        #expect(runs.partiesAgree)
        #expect(runs.secure == runs.clear.values)
        #expect(runs.clear.values == x.map { table[Int($0)] })
        #expect(runs.p0Statistics.rounds == 1 + 2)  // input, then the sign and value together, then the output
    }
}

@Suite("Products with the server's own weights")
struct ServerWeightTests {
    @Test(
        "matmulServerWeights equals the cleartext product and holds no shares of the weight mask",
        arguments: [37, 50, 64])
    func serverWeights(bits: Int) throws {
        let ring = Ring(bitwidth: bits)
        var values = TestValues(seed: 12)
        let (m, k, n) = (6, 9, 5)
        let x = values.signed(m * k, magnitudeBits: bits - 1, ring: ring)
        let w = values.signed(k * n, magnitudeBits: bits - 1, ring: ring)
        let runs = try runEverywhere { b -> RingTensor in
            let isServer = (b as? PartyContext)?.party == .p0 || b is Cleartext
            return try b.matmulServerWeights(
                try b.inputFromClient(x, shape: [m, k], ring: ring), weights: isServer ? w : nil, m: m, k: k, n: n)
        }
        #expect(runs.partiesAgree)
        #expect(runs.secure == runs.clear.values)
        #expect(runs.p0Statistics.rounds == 3)  // the client's input, Ŵ, the reveal
    }

    @Test(
        "masked once, the weights serve two products, one of them transposed (a tied embedding and output layer)",
        arguments: [37, 50])
    func reusedWeights(bits: Int) throws {
        let ring = Ring(bitwidth: bits)
        var values = TestValues(seed: 13)
        let (rows, width, vocabulary) = (3, 7, 11)
        let oneHot = values.signed(rows * vocabulary, magnitudeBits: 2, ring: ring)
        let hidden = values.signed(2 * width, magnitudeBits: bits - 2, ring: ring)
        let table = values.signed(vocabulary * width, magnitudeBits: bits - 2, ring: ring)
        let runs = try runEverywhere { b -> RingTensor in
            let isServer = (b as? PartyContext)?.party == .p0 || b is Cleartext
            let weights = try b.maskServerWeights(isServer ? table : nil, count: table.count, ring: ring)
            let embedded = try b.matmulMaskedWeights(
                try b.inputFromClient(oneHot, shape: [rows, vocabulary], ring: ring), weights, m: rows, k: vocabulary,
                n: width)
            let logits = try b.matmulMaskedWeights(
                try b.inputFromClient(hidden, shape: [2, width], ring: ring),
                weights.transposed(rows: vocabulary, columns: width), m: 2, k: width, n: vocabulary)
            return RingTensor(
                ring: ring, shape: [embedded.count + logits.count], values: embedded.values + logits.values)
        }
        let transposed = (0..<(width * vocabulary)).map { table[($0 % vocabulary) * width + $0 / vocabulary] }
        let expected =
            RingMatrix.multiply(oneHot, table, m: rows, k: vocabulary, n: width)
            + RingMatrix.multiply(hidden, transposed, m: 2, k: width, n: vocabulary)
        #expect(runs.partiesAgree)
        #expect(runs.secure == expected.map { $0 & ring.mask })
        #expect(runs.clear.values == runs.secure)
        #expect(runs.p0Statistics.rounds == 5)  // Ŵ once, two client inputs, two reveals
    }

    @Test("a bias joins the server's share of the product: bit-exact, with no round and no key of its own")
    func biasInShare() throws {
        let ring = Ring(bitwidth: 50)
        var values = TestValues(seed: 14)
        let (m, k, n) = (4, 6, 5)
        let x = values.signed(m * k, magnitudeBits: 40, ring: ring)
        let w = values.signed(k * n, magnitudeBits: 40, ring: ring)
        let bias = values.signed(n, magnitudeBits: 40, ring: ring)
        let runs = try runEverywhere { b -> RingTensor in
            let isServer = (b as? PartyContext)?.party == .p0 || b is Cleartext
            let weights = try b.maskServerWeights(isServer ? w : nil, count: k * n, ring: ring)
            return try b.matmulMaskedWeights(
                try b.inputFromClient(x, shape: [m, k], ring: ring), weights, m: m, k: k, n: n,
                bias: isServer ? bias : nil)
        }
        let product = RingMatrix.multiply(x, w, m: m, k: k, n: n)
        #expect(runs.partiesAgree)
        #expect(runs.secure == product.indices.map { (product[$0] &+ bias[$0 % n]) & ring.mask })
        #expect(runs.clear.values == runs.secure)
        #expect(runs.p0Statistics.rounds == 3)  // the client's input, Ŵ, the reveal: none for the bias
    }

    @Test("weight masks cost the server's keys one 16-byte seed per model and the client's nothing, whatever the size")
    func weightMaskKeys() throws {
        let ring = Ring(bitwidth: 50)
        let (sink0, sink1) = (MemoryKeySink(), MemoryKeySink())
        let dealer = Dealer(p0: sink0, p1: sink1, random: SecureRandom(insecureTestSeed: 5))
        let first = try dealer.maskServerWeights(nil, count: 100_000, ring: ring)
        let second = try dealer.maskServerWeights(nil, count: 50_000, ring: ring)
        // Gate markers (12 bytes each: the seed's, then one per tensor) and the seed, once.
        #expect(sink0.bytes.count == 12 + 16 + 2 * 12 && sink1.bytes.count == 3 * 12)
        #expect(Set(first.shared).count > 99_000 && first.shared.allSatisfy { $0 <= ring.mask })
        // The server expands the same masks from its seed: stream l for the l-th tensor.
        let seed = Array(sink0.bytes[12..<28])
        var stream0 = SecureRandom(expanding: seed, stream: 0)
        var stream1 = SecureRandom(expanding: seed, stream: 1)
        #expect(stream0.values(100_000, bits: 50) == first.shared)
        #expect(stream1.values(50_000, bits: 50) == second.shared)
    }

    @Test("a seeded gate writes its party only the DPF keys and a seed; gates alternate to the party with more bytes")
    func seededGates() throws {
        let ring = Ring(bitwidth: 50)
        let count = oneRoundTruncationLimit + 1  // GapARS from a DPF comparison
        let (sink0, sink1) = (MemoryKeySink(), MemoryKeySink())
        let dealer = Dealer(p0: sink0, p1: sink1, random: SecureRandom(insecureTestSeed: 6))
        let x = RingTensor(ring: ring, shape: [count], values: [UInt64](repeating: 0, count: count))
        _ = try dealer.gapARS(x, by: 12)
        // GapARS: a 12-bit comparison key, the carry's mask bit shares, two candidates (n bits) and the wrap term
        // (f bits: shares of MSB(r) that the parties scale by 2^{n−f}).
        let dpf = DPFKeys.encodedSize(inputBits: 12, count: count)
        let shares = (count + 7) / 8 + (2 * count * 50 + 7) / 8 + (count * 12 + 7) / 8
        #expect(sink0.bytes.count == 12 + 16 + dpf, "the server's gate is seeded: its shares come from the seed")
        #expect(sink1.bytes.count == 12 + dpf + shares)
        _ = try dealer.gapARS(x, by: 12)
        #expect(sink1.bytes.count == 2 * (12 + dpf) + shares + 16, "then the client's, which had more")
        #expect(sink0.bytes.count == 2 * (12 + dpf) + shares + 16)
        // Both parties still compute the right thing (every protocol test runs seeded gates too).
        let runs = try runEverywhere { b in
            try b.gapARS(try b.inputFromClient([ring.word(-5000), 77_777], shape: [2], ring: ring), by: 12)
        }
        #expect(runs.secure == [ring.word(-2), 18])
    }
}
