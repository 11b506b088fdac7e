import Foundation
import Protocols
import Ring

extension FloatEvaluator {
    public func embed(_ ids: [Int]?, count: Int, table: WeightVector, width: Int) throws -> (
        embedded: [Double], table: [Double]
    ) {
        guard let ids, let values = table.values else {
            throw ProtocolError.missingInput("token ids and the embedding table")
        }
        let rows = ids.flatMap { id in (0..<width).map { Double(values[id * width + $0]) } }
        return (rows, values.map(Double.init))
    }

    public func serverTable(_ table: WeightVector, width: Int) throws -> [Double] {
        guard let values = table.values else { throw ProtocolError.missingInput("the server's table") }
        return values.map(Double.init)
    }

    public func addServerRows(_ x: [Double], _ rows: WeightVector, width: Int) throws -> [Double] {
        guard let values = rows.values else { throw ProtocolError.missingInput("the server's rows") }
        return x.indices.map { x[$0] + Double(values[$0]) }
    }

    public func logits(_ x: [Double], table: [Double], rows: Int, width: Int, vocabulary: Int) throws -> [Double] {
        (0..<(rows * vocabulary)).map { index in
            let (r, v) = (index / vocabulary, index % vocabulary)
            return (0..<width).reduce(0.0) { $0 + x[r * width + $1] * table[v * width + $1] }
        }
    }

    public func add(_ x: [Double], _ y: [Double]) -> [Double] { zip(x, y).map { $0 + $1 } }
    public func multiply(_ x: [Double], _ y: [Double]) throws -> [Double] { zip(x, y).map { $0 * $1 } }

    public func layerNorm(_ x: [Double], width: Int, gamma: WeightVector, beta: WeightVector, epsilon: Double) throws
        -> [Double]
    {
        guard let g = gamma.values, let b = beta.values else { throw ProtocolError.missingInput("norm weights") }
        var out = x
        for r in 0..<(x.count / width) {
            let row = x[(r * width)..<((r + 1) * width)]
            let mean = row.reduce(0, +) / Double(width)
            let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(width)
            let inverse = 1 / (variance + epsilon).squareRoot()
            for c in 0..<width {
                out[r * width + c] = (x[r * width + c] - mean) * inverse * Double(g[c]) + Double(b[c])
            }
        }
        return out
    }

    public func rmsNorm(_ x: [Double], width: Int, gamma: WeightVector, epsilon: Double) throws -> [Double] {
        guard let g = gamma.values else { throw ProtocolError.missingInput("norm weights") }
        var out = x
        for r in 0..<(x.count / width) {
            let meanSquare = x[(r * width)..<((r + 1) * width)].reduce(0) { $0 + $1 * $1 } / Double(width)
            let inverse = 1 / (meanSquare + epsilon).squareRoot()
            for c in 0..<width { out[r * width + c] = x[r * width + c] * inverse * Double(g[c]) }
        }
        return out
    }

    /// HF `gelu_new` (the tanh form the GPT-2 and GPT-Neo checkpoints were trained with).
    public func gelu(_ x: [Double]) throws -> [Double] {
        x.map { 0.5 * $0 * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * ($0 + 0.044715 * $0 * $0 * $0))) }
    }

    public func silu(_ x: [Double]) throws -> [Double] { x.map { $0 / (1 + Foundation.exp(-$0)) } }

    public func rotary(_ x: [Double], heads: Int, headDim dh: Int, theta: Double) throws -> [Double] {
        var out = x
        let width = heads * dh
        for p in 0..<(x.count / width) {
            for head in 0..<heads {
                let base = p * width + head * dh
                for j in 0..<(dh / 2) {
                    let angle = Double(p) * Foundation.pow(theta, -2 * Double(j) / Double(dh))
                    let (a, b) = (x[base + j], x[base + j + dh / 2])
                    out[base + j] = a * Foundation.cos(angle) - b * Foundation.sin(angle)
                    out[base + j + dh / 2] = b * Foundation.cos(angle) + a * Foundation.sin(angle)
                }
            }
        }
        return out
    }

    public func geluExact(_ x: [Double]) throws -> [Double] {
        x.map { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) }
    }

    public func meanOfRows(_ x: [Double], rows: Int, width: Int) throws -> [Double] {
        (0..<width).map { c in (0..<rows).reduce(0.0) { $0 + x[$1 * width + c] } / Double(rows) }
    }

    public func attention(
        _ q: [Double], _ k: [Double], _ v: [Double], rows t: Int, heads: Int, kvHeads: Int, headDim dh: Int,
        scaled: Bool, window: Int?, causal: Bool
    ) throws -> [Double] {
        let width = heads * dh
        let kvWidth = kvHeads * dh
        let group = heads / kvHeads
        let scale = scaled ? 1 / Double(dh).squareRoot() : 1
        var out = [Double](repeating: 0, count: t * width)
        for head in 0..<heads {
            let kvHead = head / group
            for i in 0..<t {
                let first = window.map { max(0, i - $0 + 1) } ?? 0
                let lastKey = causal ? i : t - 1
                var scores = (first...lastKey).map { j in
                    (0..<dh).reduce(0.0) { $0 + q[i * width + head * dh + $1] * k[j * kvWidth + kvHead * dh + $1] }
                        * scale
                }
                let top = scores.max()!
                scores = scores.map { Foundation.exp($0 - top) }
                let total = scores.reduce(0, +)
                for (offset, weight) in scores.enumerated() {
                    for c in 0..<dh {
                        out[i * width + head * dh + c] +=
                            weight / total * v[(first + offset) * kvWidth + kvHead * dh + c]
                    }
                }
            }
        }
        return out
    }

    public func lastRow(_ x: [Double], rows: Int, width: Int) -> [Double] { Array(x[((rows - 1) * width)...]) }

    public func columns(_ x: [Double], rows: Int, width: Int, start: Int, count: Int) -> [Double] {
        (0..<rows).flatMap { r in x[(r * width + start)..<(r * width + start + count)] }
    }
}

extension RingEvaluator {
    var doubled: Ring { Ring(bitwidth: ring.bitwidth, scale: 2 * ring.scale) }

    /// The server's vector as a private input, encoded at `scale` (default: the ring's), through the vector's kept
    /// encodings when its `WeightSource` keeps it.
    func serverInput(_ vector: WeightVector, scale: Ring? = nil, shape: [Int]? = nil) throws -> RingTensor {
        try backend.inputFromServer(vector.encoded(scale ?? ring), shape: shape ?? [vector.count], ring: ring)
    }

    /// The client's tokens as one-hot rows (integers, scale 0) times the server's table (scale f): the product is
    /// at scale f with no truncation, and neither party sees a token id or a weight. The table is masked once
    /// (`maskServerWeights`) and serves again, transposed, as a tied output layer.
    public func embed(_ ids: [Int]?, count: Int, table: WeightVector, width: Int) throws -> (
        embedded: RingTensor, table: MaskedServerWeights
    ) {
        backend.enterLayer(.embedding)
        let vocabulary = table.count / width
        let oneHot = ids.map { ids -> [UInt64] in
            var words = [UInt64](repeating: 0, count: count * vocabulary)
            for (row, id) in ids.enumerated() { words[row * vocabulary + id] = 1 }
            return words
        }
        let tokens = try backend.inputFromClient(oneHot, shape: [count, vocabulary], ring: ring)
        let weights = try serverTable(table, width: width)
        let embedded = try backend.matmulMaskedWeights(tokens, weights, m: count, k: vocabulary, n: width)
        return (embedded, weights)
    }

    public func serverTable(_ table: WeightVector, width: Int) throws -> MaskedServerWeights {
        backend.enterLayer(.embedding)
        return try backend.maskServerWeights(
            table.encoded(ring), count: table.count, ring: ring)
    }

    public func addServerRows(_ x: RingTensor, _ rows: WeightVector, width: Int) throws -> RingTensor {
        let cut =
            rows.count == x.count ? rows : WeightVector(rows.values.map { Array($0.prefix(x.count)) }, count: x.count)
        return backend.add(x, try serverInput(cut, shape: x.shape))
    }

    public func logits(_ x: RingTensor, table: MaskedServerWeights, rows: Int, width: Int, vocabulary: Int) throws
        -> RingTensor
    {
        backend.enterLayer(.lmHead)
        let product = try backend.matmulMaskedWeights(
            x, table.transposed(rows: vocabulary, columns: width), m: rows, k: width, n: vocabulary)
        return try truncate(product)
    }

    public func add(_ x: RingTensor, _ y: RingTensor) -> RingTensor { backend.add(x, y) }

    public func multiply(_ x: RingTensor, _ y: RingTensor) throws -> RingTensor {
        backend.enterLayer(.matmul)
        let product = try backend.mul(x, y)
        backend.enterLayer(.truncation)
        return try truncate(product)
    }

    public func layerNorm(_ x: RingTensor, width: Int, gamma: WeightVector, beta: WeightVector, epsilon: Double) throws
        -> RingTensor
    {
        backend.enterLayer(.norm)
        return try backend.layerNorm(
            x, rowLength: width, gamma: try serverInput(gamma), beta: try serverInput(beta, scale: doubled),
            epsilon: epsilon,
            certified: truncation == .gap)
    }

    public func rmsNorm(_ x: RingTensor, width: Int, gamma: WeightVector, epsilon: Double) throws -> RingTensor {
        backend.enterLayer(.norm)
        return try backend.rmsNorm(
            x, rowLength: width, gamma: try serverInput(gamma), epsilon: epsilon,
            certified: truncation == .gap)
    }

    public func gelu(_ x: RingTensor) throws -> RingTensor {
        backend.enterLayer(.activation)
        return try backend.gelu(x, magnitudeBits: widths.activation)
    }

    public func silu(_ x: RingTensor) throws -> RingTensor {
        backend.enterLayer(.activation)
        return try backend.silu(x, magnitudeBits: widths.activation)
    }

    public func rotary(_ x: RingTensor, heads: Int, headDim: Int, theta: Double) throws -> RingTensor {
        backend.enterLayer(.rotary)
        return try backend.rotary(x, heads: heads, headDim: headDim, base: theta)
    }

    public func geluExact(_ x: RingTensor) throws -> RingTensor {
        backend.enterLayer(.activation)
        return try backend.gelu(x, magnitudeBits: widths.activation)
    }

    /// Σ rows (local) times round(2^f / rows), then an ARS by f (`truncation`).
    public func meanOfRows(_ x: RingTensor, rows: Int, width: Int) throws -> RingTensor {
        backend.enterLayer(.output)
        let sums = (0..<width).map { c in (0..<rows).reduce(UInt64(0)) { $0 &+ x.values[$1 * width + c] } }
        let factor = UInt64((Double(1 << ring.scale) / Double(rows)).rounded())
        return try truncate(
            backend.multiply(RingTensor(ring: ring, shape: [1, width], values: sums), byConstant: factor))
    }

    public func attention(
        _ q: RingTensor, _ k: RingTensor, _ v: RingTensor, rows t: Int, heads: Int, kvHeads: Int,
        headDim dh: Int, scaled: Bool, window: Int?, causal: Bool
    ) throws -> RingTensor {
        let width = heads * dh
        let kvWidth = kvHeads * dh
        let group = heads / kvHeads
        backend.enterLayer(.matmul)
        // Rearrangements are local on every backend.
        let queries = (0..<(heads * t * dh)).map { i -> UInt64 in
            let (head, row, c) = (i / (t * dh), (i / dh) % t, i % dh)
            return q.values[row * width + head * dh + c]
        }
        let keysTransposed = (0..<(heads * dh * t)).map { i -> UInt64 in
            let (head, c, row) = (i / (dh * t), (i / t) % dh, i % t)
            return k.values[row * kvWidth + (head / group) * dh + c]
        }
        let values = (0..<(heads * t * dh)).map { i -> UInt64 in
            let (head, row, c) = (i / (t * dh), (i / dh) % t, i % dh)
            return v.values[row * kvWidth + (head / group) * dh + c]
        }
        let scores = try backend.matmul(
            RingTensor(ring: ring, shape: [heads * t, dh], values: queries),
            RingTensor(ring: ring, shape: [heads * dh, t], values: keysTransposed), m: t, k: dh, n: t, batch: heads)
        // Only the visible keys of each query are truncated and go through softmax (a causal mask halves both);
        // the rest are public zeros.
        var packed: [UInt64] = []
        var lengths: [Int] = []
        for head in 0..<heads {
            for i in 0..<t {
                let first = window.map { max(0, i - $0 + 1) } ?? 0
                let lastKey = causal ? i : t - 1
                for j in first...lastKey { packed.append(scores.values[(head * t + i) * t + j]) }
                lengths.append(lastKey - first + 1)
            }
        }
        backend.enterLayer(.truncation)
        let visible = RingTensor(ring: ring, shape: [packed.count], values: packed)
        let scaledScores =
            scaled ? try backend.scaleScores(visible, headDim: dh, gap: truncation == .gap) : try truncate(visible)
        backend.enterLayer(.softmax)
        // Every model subtracts a bound on each row's maximum taken from the scores' high bytes: two rounds more per
        // softmax for about a quarter fewer softmax keys and comparisons 8 bits shorter (BERT-large: about 1.5 GB
        // fewer keys per party); GPT-2's rounds allow it since the per-row truncations take one round (918 + 24).
        let probabilities = try backend.softmax(
            scaledScores, rowLengths: lengths, magnitudeBits: widths.softmax, coarseMaximum: true)
        var full = [UInt64](repeating: 0, count: heads * t * t)
        var next = 0
        for head in 0..<heads {
            for i in 0..<t {
                let first = window.map { max(0, i - $0 + 1) } ?? 0
                for j in first...(causal ? i : t - 1) {
                    full[(head * t + i) * t + j] = probabilities.values[next]
                    next += 1
                }
            }
        }
        backend.enterLayer(.matmul)
        let context = try backend.matmul(
            RingTensor(ring: ring, shape: [heads * t, t], values: full),
            RingTensor(ring: ring, shape: [heads * t, dh], values: values), m: t, k: t, n: dh, batch: heads)
        backend.enterLayer(.truncation)
        let shifted = try truncate(context)
        let merged = (0..<(t * width)).map { i -> UInt64 in
            let (row, head, c) = (i / width, (i % width) / dh, i % dh)
            return shifted.values[(head * t + row) * dh + c]
        }
        return RingTensor(ring: ring, shape: [t, width], values: merged)
    }

    public func lastRow(_ x: RingTensor, rows: Int, width: Int) -> RingTensor {
        RingTensor(ring: ring, shape: [1, width], values: Array(x.values[((rows - 1) * width)...]))
    }

    public func columns(_ x: RingTensor, rows: Int, width: Int, start: Int, count: Int) -> RingTensor {
        RingTensor(
            ring: ring, shape: [rows, count],
            values: (0..<rows).flatMap { r in x.values[(r * width + start)..<(r * width + start + count)] })
    }
}
