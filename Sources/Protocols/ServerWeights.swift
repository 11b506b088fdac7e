import FSS
import Ring

// The server's weights are masked once per model, not once per inference. The l-th weight tensor a model masks
// (in the order the model code masks them) gets R_W,l = stream l of a 16-byte weight-mask seed that the dealer and
// the server share (`SecureRandom(expanding:stream:)`); Ŵ_l = W_l + R_W,l goes to the client either at the gate
// (an inference run on its own: tests, in-process runs) or once, before the online phase (`beginPreparedWeights`,
// `usePreparedWeights`; the exchange is `Transport/MaskedWeights.swift`) — the client keeps Ŵ (a file cache in the command-line tool) and later inferences send no
// weights at all. Products with Ŵ (`matmulMaskedWeights`) need only shares of R_X and C = R_X·R_W + R_Z in each
// inference's keys.
//
// Reusing R_W across inferences is safe: Ŵ is already the client's, and every R_X and R_Z is fresh. Reusing it for
// *other* weights is not (Ŵ' − Ŵ = W' − W), so one seed must serve one set of weights: the command-line server
// binds each seed to a keyed digest of its weights and refuses to serve others under it.

private let weightSeedTag = GateTag("WSED")
private let maskWeightsTag = GateTag("MSKW")

/// The server's weights as each backend holds them after `maskServerWeights`.
public struct MaskedServerWeights: Sendable {
    /// Ŵ = W + R_W on both parties, R_W on the dealer, W on the cleartext backend; empty on the parties in an
    /// online phase whose products with Ŵ were prepared (`PartyContext.preprocess`) and in a `WeightCollector`.
    public let shared: [UInt64]
    /// W on the server and the cleartext backend; nil on the client and the dealer.
    public let own: [UInt64]?
    /// Whether `shared` and `own` hold the transpose of the matrix this value stands for (after `transposed`).
    public let isStoredTransposed: Bool

    public init(shared: [UInt64], own: [UInt64]?) {
        self.init(shared: shared, own: own, isStoredTransposed: false)
    }

    init(shared: [UInt64], own: [UInt64]?, isStoredTransposed: Bool) {
        self.shared = shared
        self.own = own
        self.isStoredTransposed = isStoredTransposed
    }

    /// The same weights transposed (rows × columns → columns × rows): masks transpose with the values, so this is
    /// local on every backend — and free: the values stay where they are and products read them transposed.
    public func transposed(rows: Int, columns: Int) -> MaskedServerWeights {
        precondition(shared.isEmpty || shared.count == rows * columns, "the shape must match the weights")
        return MaskedServerWeights(shared: shared, own: own, isStoredTransposed: !isStoredTransposed)
    }

    /// A · V for A [m×k] and V = `shared` or `own` as the k×n matrix this value stands for.
    public func product(_ a: [UInt64], _ values: [UInt64], m: Int, k: Int, n: Int) -> [UInt64] {
        isStoredTransposed
            ? RingMatrix.multiply(a, transposed: values, m: m, k: k, n: n)
            : RingMatrix.multiply(a, values, m: m, k: k, n: n)
    }
}

/// Where the client's masked weights come from when they were delivered before the online phase: Ŵ_0, Ŵ_1, … in
/// the order the model masks them.
public protocol MaskedWeightSource: AnyObject {
    /// The next tensor's masked values (`count` words of `bits` bits); throws if the source holds another shape.
    func next(count: Int, bits: Int) throws -> [UInt64]
}

/// The weight-mask seed and the index of the next tensor it masks.
struct WeightMasks {
    let seed: [UInt8]
    private(set) var next: UInt64 = 0

    init(seed: [UInt8]) { self.seed = seed }

    /// The next tensor's index.
    mutating func take() -> UInt64 {
        defer { next += 1 }
        return next
    }

    /// R_W,l: stream l of the seed, `count` words of the ring.
    func mask(_ index: UInt64, count: Int, ring: Ring) -> [UInt64] {
        var expander = SecureRandom(expanding: seed, stream: index)
        return expander.values(count, bits: ring.bitwidth)
    }
}

/// How the client obtains Ŵ_l during the online phase.
public enum MaskedWeightDelivery {
    /// The server sends Ŵ_l at the gate (one message; an inference on its own).
    case atGate
    /// Delivered before the online phase: the client reads `source` (nil on the server, which then sends nothing).
    case prepared(MaskedWeightSource?)
}

extension Cleartext {
    public func maskServerWeights(_ weights: [UInt64]?, count: Int, ring: Ring) throws -> MaskedServerWeights {
        guard let weights, weights.count == count else { throw ProtocolError.missingInput("the server's weights") }
        return MaskedServerWeights(shared: weights, own: weights)
    }
}

extension Dealer {
    /// Gives the server the weight-mask seed (the first gate of the model's weights; P1's keys get the tag only).
    /// A dealer that does not call it draws a fresh seed at the first `maskServerWeights`: masks for one inference.
    public func beginWeightMasks(seed: [UInt8]) throws {
        precondition(seed.count == 16, "weight-mask seeds are 16 bytes")
        precondition(weightMasks == nil, "the weight masks have begun")
        try beginGate(weightSeedTag, count: 1, seeding: false)  // no shares: the masks come from the seed
        try p0.seed(seed)
        weightMasks = WeightMasks(seed: seed)
    }

    public func maskServerWeights(_ weights: [UInt64]?, count: Int, ring: Ring) throws -> MaskedServerWeights {
        if weightMasks == nil { try beginWeightMasks(seed: random.seed()) }
        guard var masks = weightMasks else { preconditionFailure("begun above") }
        try beginGate(maskWeightsTag, count: count, seeding: false)
        let index = masks.take()
        weightMasks = masks
        return MaskedServerWeights(shared: masks.mask(index, count: count, ring: ring), own: nil)
    }
}

extension PartyContext {
    /// Reads the weight-mask seed (the server keeps it; the client's keys hold the tag only).
    public func beginWeightMasks() throws {
        precondition(weightMasks == nil, "the weight masks have begun")
        try keys.expectGate(weightSeedTag, count: 1)
        weightMasks = WeightMasks(seed: leads ? try keys.seed() : [])
    }

    public func maskServerWeights(_ weights: [UInt64]?, count: Int, ring: Ring) throws -> MaskedServerWeights {
        if weightMasks == nil { try beginWeightMasks() }
        guard var masks = weightMasks else { preconditionFailure("begun above") }
        try keys.expectGate(maskWeightsTag, count: count)
        let index = masks.take()
        weightMasks = masks
        let bits = ring.bitwidth
        if preparedProducts != nil {
            // The products with Ŵ were prepared; online the server needs only W, the client nothing.
            guard leads else { return MaskedServerWeights(shared: [], own: nil) }
            guard let weights, weights.count == count else { throw ProtocolError.missingInput("\(count) weights") }
            return MaskedServerWeights(shared: [], own: weights)
        }
        guard leads else {
            if case .prepared(let source?) = weightDelivery {
                return MaskedServerWeights(shared: try source.next(count: count, bits: bits), own: nil)
            }
            let message = try channel.receive()
            guard let received = BitPacking.unpack(message[...], count: count, bits: bits) else {
                throw ProtocolError.malformedMessage(
                    expected: BitPacking.byteCount(count: count, bits: bits), received: message.count)
            }
            return MaskedServerWeights(shared: received, own: nil)
        }
        guard let weights, weights.count == count else { throw ProtocolError.missingInput("\(count) weights") }
        let masked = Self.maskedWeights(weights, seed: masks.seed, index: index, ring: ring)
        if case .atGate = weightDelivery { try channel.send(BitPacking.pack(masked, bits: bits)) }
        return MaskedServerWeights(shared: masked, own: weights)
    }

    /// Ŵ_l = W_l + R_W,l.
    public static func maskedWeights(_ weights: [UInt64], seed: [UInt8], index: UInt64, ring: Ring) -> [UInt64] {
        var masked = WeightMasks(seed: seed).mask(index, count: weights.count, ring: ring)
        for i in masked.indices { masked[i] = (masked[i] &+ weights[i]) & ring.mask }
        return masked
    }

    /// The server's side of a delivery before the online phase: reads the weight-mask seed from the keys and
    /// returns it (to compute and send Ŵ, `Transport/MaskedWeights.swift`); the online phase then sends no weights.
    public func beginPreparedWeights() throws -> [UInt8] {
        precondition(leads, "the server prepares the masked weights")
        if weightMasks == nil { try beginWeightMasks() }
        weightDelivery = .prepared(nil)
        guard let seed = weightMasks?.seed else { preconditionFailure("begun above") }
        return seed
    }

    /// The client's side: the online phase takes Ŵ_l from `source` (filled before, e.g. from a cache).
    public func usePreparedWeights(_ source: MaskedWeightSource) throws {
        precondition(!leads, "the client keeps the masked weights")
        if weightMasks == nil { try beginWeightMasks() }
        weightDelivery = .prepared(source)
    }
}

extension PartyContext {
    /// Before the online phase, with the masked weights delivered (`beginPreparedWeights` /
    /// `usePreparedWeights`): runs the model's code (`run`, shapes only) to fold every product with the server's
    /// weights that needs no input, −[R_X]_b·Ŵ + [C]_b, from the dealer's preprocessing stream `keys`. The online
    /// phase then computes only the server's X̂·W for each (SIGMA leaves all three products online).
    public func preprocess(keys preprocessingKeys: KeyStreamReader, run: (any RingBackend) throws -> Void) throws {
        guard let masks = weightMasks, case .prepared(let source) = weightDelivery else {
            preconditionFailure("deliver the masked weights before preprocessing")
        }
        let preprocessor = ProductPreprocessor(
            party: party, seed: masks.seed, source: source, keys: preprocessingKeys)
        try run(preprocessor)
        preparedProducts = preprocessor.products
        nextPreparedProduct = 0
    }

    func takePreparedProduct(count: Int) throws -> [UInt64] {
        guard let preparedProducts, nextPreparedProduct < preparedProducts.count,
            preparedProducts[nextPreparedProduct].count == count
        else {
            throw KeyStreamError.outOfStep(expected: "a prepared product of \(count) values", found: "none")
        }
        defer {
            self.preparedProducts?[nextPreparedProduct] = []
            nextPreparedProduct += 1
        }
        return preparedProducts[nextPreparedProduct]
    }
}

/// The preprocessing pass: the model's code on zeros, except that masked weights are real and every product with
/// them becomes this party's −[R_X]_b·Ŵ + [C]_b.
final class ProductPreprocessor: WeightCollector {
    let party: Party
    let seed: [UInt8]
    let source: MaskedWeightSource?
    let keys: KeyStreamReader
    var products: [[UInt64]] = []

    init(party: Party, seed: [UInt8], source: MaskedWeightSource?, keys: KeyStreamReader) {
        self.party = party
        self.seed = seed
        self.source = source
        self.keys = keys
        super.init { _, _, _, _ in }
    }

    override public func maskServerWeights(_ weights: [UInt64]?, count: Int, ring: Ring) throws
        -> MaskedServerWeights
    {
        defer { index += 1 }
        if party == .p0 {
            guard let weights, weights.count == count else { throw ProtocolError.missingInput("\(count) weights") }
            return MaskedServerWeights(
                shared: PartyContext.maskedWeights(weights, seed: seed, index: index, ring: ring), own: nil)
        }
        guard let source else { throw ProtocolError.missingInput("the masked weights") }
        return MaskedServerWeights(shared: try source.next(count: count, bits: ring.bitwidth), own: nil)
    }

    override public func matmulMaskedWeights(
        _ x: RingTensor, _ w: MaskedServerWeights, m: Int, k: Int, n: Int, bias: [UInt64]?
    ) throws -> RingTensor {
        let ring = x.ring
        try keys.expectGate(preparedMatmulTag, count: m * n)
        let maskShares = try keys.words(m * k, bits: ring.bitwidth)
        var share = try keys.words(m * n, bits: ring.bitwidth)
        let masked = w.product(maskShares, w.shared, m: m, k: k, n: n)
        for i in share.indices { share[i] = (share[i] &- masked[i]) & ring.mask }
        products.append(share)
        return try super.matmulMaskedWeights(x, w, m: m, k: k, n: n, bias: bias)
    }
}

/// A backend that runs a model's code on zeros and reports each weight tensor it masks — the server's weights in the
/// order every other backend masks them — without computing anything else (the shapes only).
public class WeightCollector: RingBackend {
    /// Called with the tensor's index, the server's values (nil on the client), its length and its ring.
    let visit: (UInt64, [UInt64]?, Int, Ring) throws -> Void
    var index: UInt64 = 0

    public init(visit: @escaping (_ index: UInt64, _ weights: [UInt64]?, _ count: Int, _ ring: Ring) throws -> Void) {
        self.visit = visit
    }

    private func zeros(_ ring: Ring, _ shape: [Int]) -> RingTensor {
        RingTensor(ring: ring, shape: shape, values: [UInt64](repeating: 0, count: shape.reduce(1, *)))
    }

    public func inputFromClient(_ values: [UInt64]?, shape: [Int], ring: Ring) throws -> RingTensor {
        zeros(ring, shape)
    }
    public func inputFromServer(_ values: [UInt64]?, shape: [Int], ring: Ring) throws -> RingTensor {
        zeros(ring, shape)
    }
    public func addConstant(_ x: RingTensor, _ c: [UInt64]) -> RingTensor { x }
    public func matmul(_ x: RingTensor, _ w: RingTensor, m: Int, k: Int, n: Int, batch: Int) throws -> RingTensor {
        zeros(x.ring, [batch * m, n])
    }
    public func maskServerWeights(_ weights: [UInt64]?, count: Int, ring: Ring) throws -> MaskedServerWeights {
        try visit(index, weights, count, ring)
        index += 1
        return MaskedServerWeights(shared: [], own: nil)  // the products below read nothing (GPT-2's table: 309 MB)
    }
    public func matmulMaskedWeights(
        _ x: RingTensor, _ w: MaskedServerWeights, m: Int, k: Int, n: Int, bias: [UInt64]?
    ) throws -> RingTensor { zeros(x.ring, [m, n]) }
    public func mul(_ x: RingTensor, _ y: RingTensor) throws -> RingTensor { zeros(x.ring, x.shape) }
    public func mul(_ x: RingTensor, _ y: RingTensor, broadcast: Broadcast) throws -> RingTensor {
        zeros(x.ring, x.shape)
    }
    public func truncateReduce(_ x: RingTensor, by f: Int) throws -> RingTensor {
        zeros(Ring(bitwidth: x.ring.bitwidth - f, scale: max(0, x.ring.scale - f)), x.shape)
    }
    public func gapARS(_ x: RingTensor, by f: Int) throws -> RingTensor { zeros(x.ring, x.shape) }
    public func faithfulARS(_ x: RingTensor, by f: Int) throws -> RingTensor { zeros(x.ring, x.shape) }
    public func drelu(_ x: RingTensor) throws -> BitTensor {
        BitTensor(shape: x.shape, bits: [UInt8](repeating: 0, count: x.count))
    }
    public func select(_ s: BitTensor, _ x: RingTensor) throws -> RingTensor { zeros(x.ring, x.shape) }
    public func selectLinear(
        _ s0: BitTensor, _ s1: BitTensor, _ x: RingTensor, alpha: [UInt64], beta: [UInt64], output: Ring
    ) throws -> RingTensor { zeros(output, x.shape) }
    public func lookup(_ x: RingTensor, table: [UInt64], output: Ring) throws -> RingTensor { zeros(output, x.shape) }
    public func activation(_ x: RingTensor, _ activation: ActivationTable, inputBits m: Int) throws -> RingTensor {
        zeros(x.ring, x.shape)
    }
    public func clippedShift(_ x: RingTensor, by s: Int, bits c: Int) throws -> RingTensor {
        zeros(Ring(bitwidth: c, scale: 0), x.shape)
    }
    public func sumOfSquares(_ x: RingTensor, rowLength k: Int) throws -> RingTensor {
        zeros(x.ring, [x.count / k])
    }
    public func sumOfSquares(_ x: RingTensor, rowLength k: Int, thenScalingBy y: RingTensor) throws -> (
        squares: RingTensor, scaling: RowColumnScaling
    ) { (zeros(x.ring, [x.count / k]), RowColumnScaling { _ in self.zeros(x.ring, x.shape) }) }
    public func reciprocalSqrt(_ v: RingTensor, table: ReciprocalSqrtTable) throws -> RingTensor {
        zeros(v.ring, v.shape)
    }
    public func revealToClient(_ x: RingTensor) throws -> [UInt64]? { nil }
}
