import Ring

// Gates composed of other gates: written once against `RingBackend`, so their keygen and evaluation cannot
// drift apart.

extension Dealer: RingBackend {}
extension PartyContext: RingBackend {}

extension RingBackend {
    /// The maximum of each row of length `rowLength` (any length ≥ 1), as a tree: max(a, b) = b + ReLU(a − b),
    /// ⌈log2 k⌉ levels of two rounds each. Exact when every |value| < 2^{n−2}, so that a − b cannot overflow.
    public func maxRows(_ x: RingTensor, rowLength: Int) throws -> RingTensor {
        precondition(rowLength >= 1 && x.count % rowLength == 0, "rows must divide the tensor")
        let rows = x.count / rowLength
        var current = x.values
        var length = rowLength
        while length > 1 {
            let pairs = length / 2
            var left = [UInt64](), right = [UInt64]()
            left.reserveCapacity(rows * pairs)
            right.reserveCapacity(rows * pairs)
            for r in 0..<rows {
                for p in 0..<pairs {
                    left.append(current[r * length + 2 * p])
                    right.append(current[r * length + 2 * p + 1])
                }
            }
            let a = RingTensor(ring: x.ring, shape: [rows * pairs], values: left)
            let b = RingTensor(ring: x.ring, shape: [rows * pairs], values: right)
            let larger = add(b, try relu(subtract(a, b)))
            let nextLength = (length + 1) / 2
            var next = [UInt64](repeating: 0, count: rows * nextLength)
            for r in 0..<rows {
                for p in 0..<pairs { next[r * nextLength + p] = larger.values[r * pairs + p] }
                if length % 2 == 1 { next[r * nextLength + pairs] = current[r * length + length - 1] }
            }
            current = next
            length = nextLength
        }
        return RingTensor(ring: x.ring, shape: [rows], values: current)
    }
}
