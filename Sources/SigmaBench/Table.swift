import Foundation

/// Renders a benchmark result as an aligned two-column table for people.
public func renderTable(_ value: JSONValue, title: String) -> String {
    var rows: [(String, String)] = []
    func walk(_ value: JSONValue, prefix: String) {
        switch value {
        case .object(let fields):
            for (name, field) in fields { walk(field, prefix: prefix.isEmpty ? name : "\(prefix)[\(name)]") }
        case .number(let v): rows.append((prefix, formatted(v)))
        default: rows.append((prefix, value.text))
        }
    }
    walk(value, prefix: "")
    let width = rows.map(\.0.count).max() ?? 0
    return
        ([title, String(repeating: "-", count: title.count)]
        + rows.map { "\($0.0.padding(toLength: width, withPad: " ", startingAt: 0))  \($0.1)" })
        .joined(separator: "\n")
}

/// 1234567.0 → "1.23e6", 0.000123 → "1.23e-4"; whole numbers below 100,000 as they are.
func formatted(_ v: Double) -> String {
    if v == v.rounded() && abs(v) < 100_000 { return String(Int64(v)) }
    if abs(v) >= 100_000 || abs(v) < 0.01 {
        let exponent = Int(log10(abs(v)).rounded(.down))
        let mantissa = v / pow(10, Double(exponent))
        return "\((mantissa * 100).rounded() / 100)e\(exponent)"
    }
    return String((v * 1000).rounded() / 1000)
}
