import Foundation

/// Why a checkpoint could not be read.
public enum CheckpointError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String)
    case malformed(path: String, why: String)
    case unsupportedDType(tensor: String, dtype: String)
    case missingTensor(String)
    case wrongShape(tensor: String, expected: [Int], found: [Int])

    public var description: String {
        switch self {
        case .unreadable(let path): "cannot read \(path)"
        case .malformed(let path, let why): "\(path) is not a valid safetensors file: \(why)"
        case .unsupportedDType(let tensor, let dtype):
            "tensor \(tensor) has dtype \(dtype); supported: F32, F16, BF16 (and F64)"
        case .missingTensor(let name): "the checkpoint has no tensor \(name)"
        case .wrongShape(let tensor, let expected, let found):
            "tensor \(tensor) has shape \(found), expected \(expected)"
        }
    }
}

/// A HuggingFace safetensors checkpoint (one file, or shards listed in `model.safetensors.index.json`), mapped
/// read-only; tensors are converted to Float on request.
///
/// Format: an 8-byte little-endian header length N, N bytes of JSON naming each tensor's dtype, shape and byte range
/// in the data that follows. Every field is checked against the file before use: no allocation or read is driven
/// by an unchecked length.
public final class Checkpoint: @unchecked Sendable {  // immutable after init
    struct Entry {
        let dtype: String
        let shape: [Int]
        let file: Int
        let range: Range<Int>
    }

    private let files: [Data]
    private let entries: [String: Entry]

    /// The tensor names.
    public var names: [String] { entries.keys.sorted() }

    /// Opens `folder/model.safetensors`, or the shards of `folder/model.safetensors.index.json`.
    public convenience init(folder: String) throws {
        let index = folder + "/model.safetensors.index.json"
        if FileManager.default.fileExists(atPath: index) {
            guard let data = try? readFile(index, limit: 64 << 20),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let weightMap = object["weight_map"] as? [String: String]
            else { throw CheckpointError.malformed(path: index, why: "no weight_map") }
            let shards = Array(Set(weightMap.values)).sorted()
            guard shards.allSatisfy({ !$0.contains("/") && !$0.hasPrefix(".") }) else {
                throw CheckpointError.malformed(path: index, why: "shard names must be plain file names")
            }
            try self.init(paths: shards.map { folder + "/" + $0 })
        } else {
            try self.init(paths: [folder + "/model.safetensors"])
        }
    }

    public init(paths: [String]) throws {
        var files: [Data] = []
        var entries: [String: Entry] = [:]
        for (fileIndex, path) in paths.enumerated() {
            var info = stat()
            guard stat(path, &info) == 0 else { throw CheckpointError.unreadable(path: path) }
            guard info.st_size >= 8 else { throw CheckpointError.malformed(path: path, why: "shorter than its header") }
            guard let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else {
                throw CheckpointError.unreadable(path: path)
            }
            guard data.count >= 8 else { throw CheckpointError.malformed(path: path, why: "shorter than its header") }
            let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) {
                $0 | UInt64($1.element) << UInt64(8 * $1.offset)
            }
            guard headerLength <= UInt64(data.count - 8), headerLength <= 100 << 20 else {
                throw CheckpointError.malformed(path: path, why: "header length \(headerLength) exceeds the file")
            }
            let headerEnd = 8 + Int(headerLength)
            guard
                let header = try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<headerEnd)) as? [String: Any]
            else { throw CheckpointError.malformed(path: path, why: "the header is not a JSON object") }
            let dataLength = data.count - headerEnd
            for (name, value) in header where name != "__metadata__" {
                guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                    let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int],
                    offsets.count == 2
                else {
                    throw CheckpointError.malformed(path: path, why: "tensor \(name) lacks dtype, shape or offsets")
                }
                let (start, end) = (offsets[0], offsets[1])
                guard shape.allSatisfy({ $0 >= 0 }), 0 <= start, start <= end, end <= dataLength else {
                    throw CheckpointError.malformed(path: path, why: "tensor \(name) lies outside the file")
                }
                if let size = Self.elementSize(dtype) {
                    var count = 1
                    for dimension in shape {
                        let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
                        guard !overflow else {
                            throw CheckpointError.malformed(path: path, why: "tensor \(name) is too large")
                        }
                        count = product
                    }
                    guard count.multipliedReportingOverflow(by: size) == (end - start, false) else {
                        throw CheckpointError.malformed(
                            path: path, why: "tensor \(name) has \(end - start) bytes for shape \(shape)")
                    }
                }
                entries[name] = Entry(
                    dtype: dtype, shape: shape, file: fileIndex, range: (headerEnd + start)..<(headerEnd + end))
            }
            files.append(data)
        }
        self.files = files
        self.entries = entries
    }

    static func elementSize(_ dtype: String) -> Int? {
        switch dtype {
        case "F64", "I64": 8
        case "F32", "I32": 4
        case "F16", "BF16": 2
        default: nil
        }
    }

    public func shape(_ name: String) -> [Int]? { entries[name]?.shape }

    /// The tensor's values as Float, row-major, checking the shape when `shape` is given.
    public func floats(_ name: String, shape expected: [Int]? = nil) throws -> [Float] {
        guard let entry = entries[name] else { throw CheckpointError.missingTensor(name) }
        if let expected, expected != entry.shape {
            throw CheckpointError.wrongShape(tensor: name, expected: expected, found: entry.shape)
        }
        let count = entry.shape.reduce(1, *)
        let values = files[entry.file].withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> [Float]? in
            let bytes = UnsafeRawBufferPointer(rebasing: raw[entry.range])
            switch entry.dtype {
            case "F32":
                return (0..<count).map {
                    Float(
                        bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)))
                }
            case "F64":
                return (0..<count).map {
                    Float(
                        Double(
                            bitPattern: UInt64(
                                littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))))
                }
            case "BF16":
                return (0..<count).map {
                    Float(
                        bitPattern: UInt32(
                            UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) << 16)
                }
            case "F16":
                return (0..<count).map {
                    Float(
                        Float16(
                            bitPattern: UInt16(
                                littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))))
                }
            default:
                return nil
            }
        }
        guard let values else { throw CheckpointError.unsupportedDType(tensor: name, dtype: entry.dtype) }
        return values
    }
}
