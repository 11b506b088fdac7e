import FSS
import Foundation
import Models
import Protocols
import Ring
import Testing

/// Writes a safetensors file of the given tensors (name, dtype, shape, raw little-endian bytes).
func writeSafetensors(_ path: String, _ tensors: [(String, String, [Int], [UInt8])]) throws {
    var header: [String: Any] = [:]
    var data: [UInt8] = []
    for (name, dtype, shape, bytes) in tensors {
        header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [data.count, data.count + bytes.count]]
        data += bytes
    }
    let json = try JSONSerialization.data(withJSONObject: header)
    var file = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(json.count) >> UInt64(8 * $0)) }
    file += Array(json) + data
    try Data(file).write(to: URL(fileURLWithPath: path))
}

@Suite("Checkpoint formats and model variants", .serialized)
struct FormatTests {
    @Test("F16, BF16 and F32 tensors, sharded through an index, and an unsupported dtype")
    func dtypesAndShards() throws {
        let folder = NSTemporaryDirectory() + "sigma-shards-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let values: [Float] = [1.5, -2.25, 0, 65280, 1.0 / 1024]  // exact in both half formats
        let f16 = values.flatMap { v in withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { Array($0) } }
        let bf16 = values.flatMap { v in withUnsafeBytes(of: UInt16(v.bitPattern >> 16).littleEndian) { Array($0) } }
        let f32 = values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
        try writeSafetensors(folder + "/a.safetensors", [("half", "F16", [5], f16), ("brain", "BF16", [5], bf16)])
        try writeSafetensors(
            folder + "/b.safetensors", [("single", "F32", [1, 5], f32), ("ints", "I8", [2], [1, 2])])
        let index = [
            "weight_map": [
                "half": "a.safetensors", "brain": "a.safetensors", "single": "b.safetensors", "ints": "b.safetensors",
            ]
        ]
        try JSONSerialization.data(withJSONObject: index).write(
            to: URL(fileURLWithPath: folder + "/model.safetensors.index.json"))
        let checkpoint = try Checkpoint(folder: folder)
        #expect(checkpoint.names == ["brain", "half", "ints", "single"])
        #expect(try checkpoint.floats("half") == values)
        #expect(try checkpoint.floats("brain") == values)  // exactly representable in bfloat16
        #expect(try checkpoint.floats("single", shape: [1, 5]) == values)
        #expect(throws: CheckpointError.unsupportedDType(tensor: "ints", dtype: "I8")) { try checkpoint.floats("ints") }
        // A shard name that escapes the folder is refused.
        try JSONSerialization.data(withJSONObject: ["weight_map": ["x": "../x.safetensors"]])
            .write(to: URL(fileURLWithPath: folder + "/model.safetensors.index.json"))
        #expect(throws: CheckpointError.self) { try Checkpoint(folder: folder) }
    }

    @Test("an unsupported architecture is a clear error")
    func unsupportedArchitecture() throws {
        let folder = NSTemporaryDirectory() + "sigma-arch-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Data(#"{"model_type": "t5", "vocab_size": 10}"#.utf8).write(
            to: URL(fileURLWithPath: folder + "/config.json"))
        #expect(throws: CheckpointError.self) { try TransformerConfig(folder: folder) }
        do {
            _ = try TransformerConfig(folder: folder)
        } catch {
            #expect("\(error)".contains("unsupported model_type 't5'"))
        }
    }

    @Test("grouped-query attention (2 key/value heads for 4 query heads): secure equals cleartext, close to float")
    func groupedQueryAttention() throws {
        let config = TransformerConfig(
            architecture: .llama, layers: 1, hidden: 64, heads: 4, keyValueHeads: 2, intermediate: 96, vocabulary: 100,
            positions: 16)
        let server = DecoderModel(config: config, randomWeights: 7)
        let shapes = DecoderModel(shapesOf: config)
        let ids = [3, 14, 15, 92, 65]
        let ring = Ring(bitwidth: 48, scale: 12)
        let run = try InProcessRun(seed: 5) { backend -> [Double]? in
            let party = (backend as? PartyContext)?.party
            let isServer = party == .p0 || backend is Cleartext
            let isClient = party == .p1 || backend is Cleartext
            return try ringLogits(
                backend, model: isServer ? server : shapes, ids: isClient ? ids : nil, count: ids.count, ring: ring)
        }
        #expect(run.client != nil && run.client == run.clear)
        let float = try server.lastLogits(FloatEvaluator(), ids: ids, count: ids.count)!
        let worst = zip(float, run.clear!).map { abs($0 - $1) }.max()!
        #expect(worst < 0.05, "max |fixed − float| = \(worst)")
    }
}
