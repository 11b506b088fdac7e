import FSS

/// `sigma bench fss`: throughput of the FSS core on this machine.
public enum FSSBenchmark {
    /// Bitwidths of the comparison benchmark: 12 (GapARS carry), 32 (GeLU), 38 (softmax max), 50 (n of GPT-2).
    public static let comparisonBits = [12, 32, 38, 50]
    /// LUT domains: 8 (GeLU, exp), 13 (inverse, rsqrt).
    public static let lutBits = [8, 13]

    public struct Options: Sendable {
        public var keys = 1 << 18
        public var scalingKeys = 1 << 20
        public var lutKeys = 1 << 14
        public var threads = 2
        public init() {}
    }

    /// Runs every measurement and returns the results in a fixed order.
    public static func run(_ options: Options = Options(), progress: (String) -> Void = { _ in }) -> JSONValue {
        var random = SecureRandom(insecureTestSeed: 1)
        let aesRate = aesBlocksPerSecond()
        progress("AES: \(Int(aesRate / 1e6)) M blocks/s on \(AESBackend.best)")
        var evalRates: [(String, JSONValue)] = []
        var keygenRates: [(String, JSONValue)] = []
        var rate38 = 0.0
        for bits in comparisonBits {
            let alphas = random.values(options.keys, bits: bits)
            let points = random.values(options.keys, bits: bits)
            var keys: (p0: DPFKeys, p1: DPFKeys)?
            let keygen = bestOf(2) { keys = DPF.generate(alphas: alphas, inputBits: bits, random: &random) }
            let eval = bestOf(3) { consume(keys!.p0.lessThan(at: points)) }
            let rate = Double(options.keys) / eval
            if bits == 38 { rate38 = rate }
            evalRates.append((String(bits), .number(rate.rounded())))
            keygenRates.append((String(bits), .number((Double(options.keys) / keygen).rounded())))
            progress("comparison \(bits) bits: \(Int(rate)) evals/s, keygen \(Int(Double(options.keys) / keygen))/s")
        }
        var lutRates: [(String, JSONValue)] = []
        for bits in lutBits {
            let rate = lutEvalsPerSecond(bits: bits, keys: options.lutKeys, random: &random)
            lutRates.append((String(bits), .number(rate.rounded())))
            progress("LUT \(bits) bits: \(Int(rate)) full-domain evals/s")
        }
        let cachedRate38 = cachedComparisonRate(bits: 38, random: &random)
        progress("comparison 38 bits, keys in L2: \(Int(cachedRate38)) evals/s")
        let shifted = threeShiftRates(keys: options.keys, random: &random)
        progress(
            "GeLU's 38-bit key at three shifts: \(Int(shifted.pointByPoint)) keys/s point by point, "
                + "\(Int(shifted.sharedPaths)) with shared paths")
        let scaling = allCoresScaling(options, random: &random)
        progress("38-bit comparison on \(options.threads) threads: \(scaling.speedup)x one thread")
        let aesPerEval = Double(38 - 7)
        return .object([
            ("aes_backend", .string(AESBackend.best.description)),
            ("aes_blocks_per_sec", .number(aesRate.rounded())),
            ("cmp_evals_per_sec", .object(evalRates)),
            ("cmp_keygen_per_sec", .object(keygenRates)),
            ("lut_evals_per_sec", .object(lutRates)),
            ("aes_efficiency_38", .number((rate38 * aesPerEval / aesRate * 1000).rounded() / 1000)),
            ("aes_efficiency_38_keys_in_l2", .number((cachedRate38 * aesPerEval / aesRate * 1000).rounded() / 1000)),
            (
                "cmp_three_shifts_keys_per_sec_38",
                .object([
                    ("point_by_point", .number(shifted.pointByPoint.rounded())),
                    ("shared_paths", .number(shifted.sharedPaths.rounded())),
                ])
            ),
            ("cmp_evals_per_sec_one_core_1m", .number(scaling.oneCore.rounded())),
            ("cmp_evals_per_sec_all_cores", .number(scaling.allCores.rounded())),
            ("all_cores_speedup", .number((scaling.speedup * 100).rounded() / 100)),
            ("threads", .integer(options.threads)),
            ("keys_per_batch", .integer(options.keys)),
            ("keys_per_batch_all_cores", .integer(options.scalingKeys)),
        ])
    }

    /// Raw batched ECB on one core: 65,536 blocks (1 MiB, resident in L2), best of 5 runs of 20 passes.
    static func aesBlocksPerSecond() -> Double {
        let aes = AES128(key: Array(0..<16))
        var data = [Block](repeating: Block(lo: 1, hi: 2), count: 1 << 16)
        let passes = 20
        let best = bestOf(5) {
            data.withUnsafeMutableBytes { buffer in
                for _ in 0..<passes { aes.encrypt(UnsafeRawBufferPointer(buffer), into: buffer) }
            }
        }
        consume(data)
        return Double(passes * data.count) / best
    }

    /// Full-domain DPF evaluation with the table inner product (one LUT evaluation per key), one core.
    static func lutEvalsPerSecond(bits: Int, keys: Int, random: inout SecureRandom) -> Double {
        let count = bits <= 8 ? keys * 8 : keys
        let table = random.values(1 << bits, bits: 50)
        let dpf = DPF.generate(alphas: random.values(count, bits: bits), inputBits: bits, random: &random)
        let offsets = random.values(count, bits: bits)
        let best = bestOf(3) { consume(dpf.p0.fullDomainInnerProduct(table: table, offsets: offsets)) }
        return Double(count) / best
    }

    /// Comparisons on a batch small enough for L2 (2048 keys, 1.1 MB), evaluated again and again, one core: the
    /// kernel's compute rate without the key streaming from memory (`aes_efficiency_38` streams 140 MB of keys).
    static func cachedComparisonRate(bits: Int, random: inout SecureRandom) -> Double {
        let count = 2048
        let repeats = 64
        let keys = DPF.generate(alphas: random.values(count, bits: bits), inputBits: bits, random: &random)
        let points = random.values(count, bits: bits)
        let best = bestOf(5) { for _ in 0..<repeats { consume(keys.p0.lessThan(at: points)) } }
        return Double(count * repeats) / best
    }

    /// GeLU's comparison: one 38-bit key at the shifts 0, +S and −S (S = 255·2^6), one core, keys per second;
    /// each point evaluated alone against the points sharing their path down to where they part.
    static func threeShiftRates(keys: Int, random: inout SecureRandom) -> (pointByPoint: Double, sharedPaths: Double) {
        let bits = 38
        let mask: UInt64 = (1 << UInt64(bits)) - 1
        let dpf = DPF.generate(alphas: random.values(keys, bits: bits), inputBits: bits, random: &random)
        let inputs = random.values(keys, bits: bits)
        let shifts: [UInt64] = [0, 16320, (0 &- 16320) & mask]
        let points = inputs.flatMap { x in shifts.map { x &+ $0 } }
        let alone = bestOf(3) { consume(dpf.p0.lessThan(at: points, pointsPerKey: 3)) }
        let shared = bestOf(3) { consume(dpf.p0.lessThan(inputs: inputs, shifts: shifts)) }
        return (Double(keys) / alone, Double(keys) / shared)
    }

    static func allCoresScaling(_ options: Options, random: inout SecureRandom)
        -> (oneCore: Double, allCores: Double, speedup: Double)
    {
        let alphas = random.values(options.scalingKeys, bits: 38)
        let points = random.values(options.scalingKeys, bits: 38)
        let keys = DPF.generate(alphas: alphas, inputBits: 38, random: &random)
        // Several evaluations per timing: one 1M-key evaluation on two cores takes only ~40 ms.
        let repeats = 4
        let one = bestOf(3) { for _ in 0..<repeats { consume(keys.p0.lessThan(at: points, threads: 1)) } }
        let all = bestOf(3) { for _ in 0..<repeats { consume(keys.p0.lessThan(at: points, threads: options.threads)) } }
        let evaluations = Double(options.scalingKeys * repeats)
        return (evaluations / one, evaluations / all, one / all)
    }
}
