import Foundation
import Ring
import Testing

@testable import Models

@Suite("Kept server weights")
struct KeptWeightsTests {
    /// A load that counts its calls.
    final class Loads: @unchecked Sendable {
        var count = 0
        func values(_ n: Int) -> [Float] {
            count += 1
            return (0..<n).map { Float($0) / 8 - 3 }
        }
    }

    @Test("a tensor within the budget is loaded once and its encodings kept; past the budget it loads at every use")
    func loadsOnceWithinBudget() throws {
        let loads = Loads()
        let kept = KeptWeights(budget: 100 * KeptWeights.bytesPerValue)
        let ring = Ring(bitwidth: 50, scale: 12)
        let first = try kept.vector("a#60", count: 60) { loads.values(60) }
        let again = try kept.vector("a#60", count: 60) { loads.values(60) }
        #expect(loads.count == 1)
        #expect(first.encodings != nil && again.encoded(ring) == ring.encode(loads.values(60)))
        loads.count = 0
        // 60 + 50 > 100: not kept, so loaded at each use and encoded each time.
        let large = try kept.vector("b#50", count: 50) { loads.values(50) }
        _ = try kept.vector("b#50", count: 50) { loads.values(50) }
        #expect(loads.count == 2 && large.encodings == nil)
        #expect(large.encoded(ring) == ring.encode(large.values!))
        // Another prefix of the same tensor is another entry (position tables are cut to the prompt).
        _ = try kept.vector("a#30", count: 30) { loads.values(30) }
        #expect(loads.count == 3)
    }

    @Test("a kept layer gives the same encodings as encoding its floats, per ring, for weights and bias")
    func layerEncodings() throws {
        let kept = KeptWeights(budget: 1 << 20)
        var loaded = 0
        let load = { (keep: Bool) -> LinearLayer in
            loaded += 1
            return LinearLayer(
                inputs: 3, outputs: 2, weights: [0.5, -0.25, 1, 2, -3, 0.125], bias: [0.75, -1.5],
                keepEncodings: keep)
        }
        let layer = try kept.linear("fc", count: 8, load: load)
        _ = try kept.linear("fc", count: 8, load: load)
        #expect(loaded == 1 && layer.encodings != nil)
        for ring in [Ring(bitwidth: 50, scale: 12), Ring(bitwidth: 50, scale: 24), Ring(bitwidth: 37, scale: 12)] {
            #expect(layer.encodedWeights(ring) == ring.encode(layer.weights!))
            #expect(layer.encodedBias(ring) == ring.encode(layer.bias!))
            #expect(layer.encodedWeights(ring) == ring.encode(layer.weights!), "the kept copy, read again")
        }
        #expect(layer.shapeOnly.encodedWeights(Ring(bitwidth: 50, scale: 12)) == nil)
    }
}
