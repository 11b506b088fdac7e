/// A small ordered JSON value, so benchmark output keeps its fields in a readable order.
public indirect enum JSONValue: Sendable {
    case number(Double)
    case integer(Int)
    case string(String)
    case bool(Bool)
    case object([(String, JSONValue)])
    case array([JSONValue])

    /// Compact JSON text.
    public var text: String {
        switch self {
        case .number(let v): v.isFinite ? formatNumber(v) : "null"
        case .integer(let v): String(v)
        case .string(let s): "\"" + escape(s) + "\""
        case .bool(let b): b ? "true" : "false"
        case .object(let fields): "{" + fields.map { "\"\(escape($0.0))\":\($0.1.text)" }.joined(separator: ",") + "}"
        case .array(let items): "[" + items.map(\.text).joined(separator: ",") + "]"
        }
    }

    private func formatNumber(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }

    private func escape(_ s: String) -> String {
        var out = ""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case _ where scalar.value < 0x20: out += "\\u" + String(scalar.value, radix: 16).leftPadded(to: 4)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

extension String {
    func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
