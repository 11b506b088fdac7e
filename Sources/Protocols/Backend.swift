import Dispatch
import FSS
import Ring

/// A tensor of bits on a wire: cleartext bits, the dealer's mask bits, or a party's masked bits (each 0 or 1).
public struct BitTensor: Equatable, Sendable {
    public var shape: [Int]
    public var bits: [UInt8]

    public init(shape: [Int], bits: [UInt8]) {
        precondition(bits.count == shape.reduce(1, *), "bits must fill the shape")
        self.shape = shape
        self.bits = bits
    }

    public var count: Int { bits.count }
}

/// The evaluators a computation is written against once (SIGMA's masked-wire invariant, §1): every wire carries
///
/// - in the `Cleartext` backend, the value x itself;
/// - in the `Dealer` backend, the mask r, known only to the dealer;
/// - in a `PartyContext`, the masked value x̂ = x + r mod 2^n, which both parties hold.
///
/// Each gate maps its backend's wire representation of the inputs to that of the outputs; the dealer writes the
/// keys the parties read for the same gate, in the same order. So the secure result equals the cleartext result
/// bit for bit.
public protocol RingBackend: AnyObject {
    /// Says which part of a model the following gates belong to (a party times each part; others ignore it).
    func enterLayer(_ kind: LayerKind)
    /// The client's private input (the client passes `values`; others pass nil).
    func inputFromClient(_ values: [UInt64]?, shape: [Int], ring: Ring) throws -> RingTensor
    /// The server's private input, such as weights (the server passes `values`; others pass nil).
    func inputFromServer(_ values: [UInt64]?, shape: [Int], ring: Ring) throws -> RingTensor
    /// x + c for a public constant tensor c.
    func addConstant(_ x: RingTensor, _ c: [UInt64]) -> RingTensor
    /// X[m×k] · W[k×n] for secret X and W, with `batch` independent products stacked (shapes [batch·m, k] and
    /// [batch·k, n]): Beaver's protocol on masked values, one reveal.
    func matmul(_ x: RingTensor, _ w: RingTensor, m: Int, k: Int, n: Int, batch: Int) throws -> RingTensor
    /// Ŵ = W + R_W for the server's weights W (`weights` on the server and the cleartext backend, nil elsewhere):
    /// the server sends Ŵ to the client once; products with it (`matmulMaskedWeights`) then need no weight-mask
    /// shares in the keys, however often the weights are used (a tied embedding table and output layer).
    func maskServerWeights(_ weights: [UInt64]?, count: Int, ring: Ring) throws -> MaskedServerWeights
    /// X[m×k] · W[k×n] (+ b, the server's bias added to every row) for weights masked by `maskServerWeights`: one
    /// reveal. The server adds b to its share before the reveal, so a bias costs no round and no key (`bias` on the
    /// server and the cleartext backend when the layer has one, nil elsewhere).
    func matmulMaskedWeights(_ x: RingTensor, _ w: MaskedServerWeights, m: Int, k: Int, n: Int, bias: [UInt64]?)
        throws -> RingTensor
    /// x ⊙ y elementwise, one reveal (the result has scale 2f; truncate afterwards).
    func mul(_ x: RingTensor, _ y: RingTensor) throws -> RingTensor
    /// x ⊙ y′ for y′ the compact y repeated as `broadcast` says (a value per row, or one row over all rows): the
    /// keys share y's masks once per value of y, two words per element instead of three. One reveal.
    func mul(_ x: RingTensor, _ y: RingTensor, broadcast: Broadcast) throws -> RingTensor
    /// TR_{n,f}: the top n − f bits of x (logical), as an (n−f)-bit value.
    func truncateReduce(_ x: RingTensor, by f: Int) throws -> RingTensor
    /// ARS_{n,f} for x in [−2^{n−2}, 2^{n−2}) (SIGMA's GapARS): cheaper than the faithful shift.
    func gapARS(_ x: RingTensor, by f: Int) throws -> RingTensor
    /// ARS_{n,f}, exact for every signed n-bit x: TR followed by sign extension.
    func faithfulARS(_ x: RingTensor, by f: Int) throws -> RingTensor
    /// 1{x ≥ 0} for signed n-bit x.
    func drelu(_ x: RingTensor) throws -> BitTensor
    /// s · x.
    func select(_ s: BitTensor, _ x: RingTensor) throws -> RingTensor
    /// α[2s0 + s1] · x + β[2s0 + s1] elementwise, for public coefficient tables α, β of four entries.
    func selectLinear(_ s0: BitTensor, _ s1: BitTensor, _ x: RingTensor, alpha: [UInt64], beta: [UInt64], output: Ring)
        throws -> RingTensor
    /// T[x] for a b-bit x and a public table of 2^b entries (8 ≤ b ≤ 16 for speed; any b works).
    func lookup(_ x: RingTensor, table: [UInt64], output: Ring) throws -> RingTensor
    /// ReLU(x) − δ(|clip(x)|): GeLU or SiLU (`Activations.swift`), for x at the ring's scale with
    /// |x| + 2^{c+f−6} < 2^{m−1} (`ActivationTable.inputBits`).
    func activation(_ x: RingTensor, _ activation: ActivationTable, inputBits m: Int) throws -> RingTensor
    /// min(x ≫ s, 2^c − 1) for 0 ≤ x < 2^{n−1}, as a c-bit value (`Softmax.swift`).
    func clippedShift(_ x: RingTensor, by s: Int, bits c: Int) throws -> RingTensor
    /// Σ x² over rows of `k`, revealed per row only (`Norms.swift`).
    func sumOfSquares(_ x: RingTensor, rowLength k: Int) throws -> RingTensor
    /// Σ x² over rows of `k`, revealed now (as `sumOfSquares`), and x ⊙ t′ ⊙ y′ for y one row of k values and
    /// t one value per row, revealed later by `scaling(rows: t)`: the two share x's mask, and x ⊙ y′ is never
    /// revealed (`Norms.swift`).
    func sumOfSquares(_ x: RingTensor, rowLength k: Int, thenScalingBy y: RingTensor) throws -> (
        squares: RingTensor, scaling: RowColumnScaling
    )
    /// 1/√v from the 13-bit float form of v, 1 ≤ v < 2^{n−1} (`Norms.swift`).
    func reciprocalSqrt(_ v: RingTensor, table: ReciprocalSqrtTable) throws -> RingTensor
    /// x to the client alone: the client gets the values, everyone else nil.
    func revealToClient(_ x: RingTensor) throws -> [UInt64]?
}

extension RingBackend {
    /// x + y (local on every backend: masks add like values).
    public func add(_ x: RingTensor, _ y: RingTensor) -> RingTensor { x + y }
    /// x − y (local).
    public func subtract(_ x: RingTensor, _ y: RingTensor) -> RingTensor { x - y }
    /// c · x for a public integer c (local).
    public func multiply(_ x: RingTensor, byConstant c: UInt64) -> RingTensor {
        let mask = x.ring.mask
        return RingTensor(ring: x.ring, shape: x.shape, reducedValues: x.values.map { ($0 &* c) & mask })
    }
    /// max(x, 0).
    public func relu(_ x: RingTensor) throws -> RingTensor { try select(try drelu(x), x) }
}

/// The cleartext fixed-point reference: the function every secure gate must equal bit for bit.
public final class Cleartext: RingBackend {
    public init() {}
}

/// The trusted dealer: holds every wire's mask and writes both parties' keys.
public final class Dealer {
    public let p0: KeyStreamWriter
    public let p1: KeyStreamWriter
    var random: SecureRandom
    /// The weight masks, once begun (`ServerWeights.swift`).
    var weightMasks: WeightMasks?
    private var currentLayer: LayerKind?
    private var written = (p0: 0, p1: 0)
    /// Key bytes per party by part of the model (`enterLayer` marks the parts).
    public private(set) var keyBytesByLayer: [LayerKind: (p0: Int, p1: Int)] = [:]

    /// Where the parties' input-independent material goes when they prepare it before the online phase
    /// (`PartyContext.preprocess`); nil: everything in the online streams.
    public let preprocessing: (p0: KeyStreamWriter, p1: KeyStreamWriter)?

    public init(
        p0: KeySink, p1: KeySink, random: consuming SecureRandom, preprocessing: (p0: KeySink, p1: KeySink)? = nil
    ) {
        self.p0 = KeyStreamWriter(sink: p0)
        self.p1 = KeyStreamWriter(sink: p1)
        self.random = random
        self.preprocessing = preprocessing.map { (KeyStreamWriter(sink: $0.p0), KeyStreamWriter(sink: $0.p1)) }
    }

    public func enterLayer(_ kind: LayerKind) {
        closeLayer()
        currentLayer = kind
    }

    /// Attributes the bytes written since the last mark; call once more after the computation.
    public func closeLayer() {
        if let currentLayer {
            let sum = keyBytesByLayer[currentLayer, default: (0, 0)]
            keyBytesByLayer[currentLayer] = (
                sum.p0 + p0.bytesWritten - written.p0, sum.p1 + p1.bytesWritten - written.p1
            )
        }
        currentLayer = nil
        written = (p0.bytesWritten, p1.bytesWritten)
    }

    func writer(_ party: Party) -> KeyStreamWriter { party == .p0 ? p0 : p1 }

    /// Uniform n-bit values.
    func randomWords(_ count: Int, ring: Ring) -> [UInt64] { random.values(count, bits: ring.bitwidth) }
    func randomWords(_ count: Int, bits: Int) -> [UInt64] { random.values(count, bits: bits) }
    func randomBits(_ count: Int) -> [UInt8] { random.bits(count) }

    /// Writes additive shares of `values` mod 2^bits: a uniform share to one party (the one the gate is seeded
    /// for, which expands it from its seed; else P0), the difference to the other.
    func share(
        _ values: [UInt64], bits: Int, to writers: (p0: KeyStreamWriter, p1: KeyStreamWriter)? = nil
    ) throws {
        let mask: UInt64 = bits == 64 ? ~0 : (1 << UInt64(bits)) - 1
        let (a, b) = writers ?? (p0, p1)
        let (uniform, other) = b.isSeeded ? (b, a) : (a, b)
        let first = try uniform.uniformWords(values.count, bits: bits, random: &random)
        try other.words(zip(values, first).map { ($0 &- $1) & mask }, bits: bits)
    }

    /// Writes XOR shares of bits, the uniform one as `share` does.
    func shareBits(_ values: [UInt8]) throws {
        let (uniform, other) = p1.isSeeded ? (p1, p0) : (p0, p1)
        let first = try uniform.uniformBits(values.count, random: &random)
        try other.bits(zip(values, first).map { $0 ^ $1 })
    }

    /// Starts a gate in both streams, seeded (`KeyStreamWriter`) for the party with more key bytes so far unless
    /// the gate writes that party values that are not uniform (`seeding: false`).
    func beginGate(
        _ tag: GateTag, count: Int, seeding: Bool = true, on writers: (p0: KeyStreamWriter, p1: KeyStreamWriter)? = nil
    ) throws {
        let (a, b) = writers ?? (p0, p1)
        let seeded: Party? = seeding ? (a.bytesWritten >= b.bytesWritten ? .p0 : .p1) : nil
        try a.beginGate(tag, count: count, seed: seeded == .p0 ? random.seed() : nil)
        try b.beginGate(tag, count: count, seed: seeded == .p1 ? random.seed() : nil)
    }
}

/// One evaluating party during the online phase: its key stream and its channel to the other party.
public final class PartyContext {
    public let party: Party
    public let keys: KeyStreamReader
    public let channel: Channel
    private var profile = LayerProfile()
    /// The weight masks, once begun (the seed is the server's; empty on the client).
    var weightMasks: WeightMasks?
    var weightDelivery = MaskedWeightDelivery.atGate
    /// This party's shares of the products with the server's weights, computed by `preprocess` (first in, first
    /// out); nil when the products are computed at their gates.
    var preparedProducts: [[UInt64]]?
    var nextPreparedProduct = 0

    public init(party: Party, keys: KeyStreamReader, channel: Channel) {
        self.party = party
        self.keys = keys
        self.channel = channel
    }

    public func enterLayer(_ kind: LayerKind) { profile.enter(kind, statistics: channel.statistics) }

    /// Starts the breakdown afresh: what crossed before (the masked weights' delivery) is not the online phase's.
    public func beginOnlinePhase() { profile = LayerProfile(statistics: channel.statistics) }

    /// Where the online phase went so far, by part of the model: wall time (compute, waiting and I/O alike),
    /// bytes this party sent and received, rounds.
    public func layerBreakdown() -> [LayerKind: LayerCost] {
        profile.enter(nil, statistics: channel.statistics)
        return profile.costs
    }

    /// P0 adds the public terms of a share; P1 does not.
    var leads: Bool { party == .p0 }

    /// Sends this party's additive shares (packed to `bits`), receives the peer's, and returns their sum: one
    /// round, one message each way.
    func reconstruct(_ shares: [UInt64], bits: Int) throws -> [UInt64] {
        let peer = try channel.exchange(BitPacking.pack(shares, bits: bits)) { theirs in
            guard let peer = BitPacking.unpack(theirs, count: shares.count, bits: bits) else {
                throw ProtocolError.malformedMessage(
                    expected: BitPacking.byteCount(count: shares.count, bits: bits), received: theirs.count)
            }
            return peer
        }
        let mask: UInt64 = bits == 64 ? ~0 : (1 << UInt64(bits)) - 1
        return RingTensor.combine(shares, peer, mask: mask) { $0 &+ $1 }
    }

    /// The same for XOR shares of bits.
    func reconstructBits(_ shares: [UInt8]) throws -> [UInt8] {
        try channel.exchange(BitPacking.packBits(shares)) { theirs in
            guard var bits = BitPacking.unpackBits(theirs, count: shares.count) else {
                throw ProtocolError.malformedMessage(expected: (shares.count + 7) / 8, received: theirs.count)
            }
            for i in bits.indices { bits[i] ^= shares[i] & 1 }
            return bits
        }
    }
}

/// Why a protocol step failed.
public enum ProtocolError: Error, Equatable, CustomStringConvertible {
    case malformedMessage(expected: Int, received: Int)
    case missingInput(String)

    public var description: String {
        switch self {
        case .malformedMessage(let expected, let received):
            "the peer sent a \(received)-byte message where \(expected) bytes were due"
        case .missingInput(let what): "missing input: \(what)"
        }
    }
}

/// The parts of a model that the online-time breakdown distinguishes.
public enum LayerKind: String, CaseIterable, Sendable {
    case input, embedding, matmul, truncation, activation, softmax, norm, rotary
    case lmHead = "LM head"
    case output
}

/// What one part of a model cost a party online.
public struct LayerCost: Sendable, Equatable {
    public var seconds = 0.0
    public var bytesSent = 0
    public var bytesReceived = 0
    public var rounds = 0
}

/// Accumulates each part's cost between consecutive `enter` calls.
struct LayerProfile {
    private(set) var costs: [LayerKind: LayerCost] = [:]
    private var current: LayerKind?
    private var since = DispatchTime.now().uptimeNanoseconds
    private var last: ChannelStatistics

    init(statistics: ChannelStatistics = ChannelStatistics()) { last = statistics }

    mutating func enter(_ kind: LayerKind?, statistics: ChannelStatistics) {
        let now = DispatchTime.now().uptimeNanoseconds
        if let current {
            var cost = costs[current, default: LayerCost()]
            cost.seconds += Double(now - since) / 1e9
            cost.bytesSent += statistics.bytesSent - last.bytesSent
            cost.bytesReceived += statistics.bytesReceived - last.bytesReceived
            cost.rounds += statistics.rounds - last.rounds
            costs[current] = cost
        }
        current = kind
        since = now
        last = statistics
    }
}

extension RingBackend {
    public func enterLayer(_ kind: LayerKind) {}
}

/// The arrays' elements as buffer pointers for the length of `body`: for per-element loops that bounds checks on
/// every array would slow down.
func withBuffers<Result>(
    _ a: [UInt64], _ b: [UInt64], _ c: [UInt64], _ d: [UInt64],
    _ body: (
        UnsafeBufferPointer<UInt64>, UnsafeBufferPointer<UInt64>, UnsafeBufferPointer<UInt64>,
        UnsafeBufferPointer<UInt64>
    ) throws -> Result
) rethrows -> Result {
    try a.withUnsafeBufferPointer { a in
        try b.withUnsafeBufferPointer { b in
            try c.withUnsafeBufferPointer { c in try d.withUnsafeBufferPointer { d in try body(a, b, c, d) } }
        }
    }
}

/// The same for six arrays.
func withBuffers<Result>(
    _ a: [UInt64], _ b: [UInt64], _ c: [UInt64], _ d: [UInt64], _ e: [UInt64], _ f: [UInt64],
    _ body: (
        UnsafeBufferPointer<UInt64>, UnsafeBufferPointer<UInt64>, UnsafeBufferPointer<UInt64>,
        UnsafeBufferPointer<UInt64>, UnsafeBufferPointer<UInt64>, UnsafeBufferPointer<UInt64>
    ) throws -> Result
) rethrows -> Result {
    try withBuffers(a, b, c, d) { a, b, c, d in
        try e.withUnsafeBufferPointer { e in try f.withUnsafeBufferPointer { f in try body(a, b, c, d, e, f) } }
    }
}
