import Foundation
import Protocols
import SigmaBench

/// `sigma bench model --report DIR`: the result as `report.json`, `report.md` (tables a person reads) and
/// `breakdown.svg` (where the online time and the bytes go, by part of the model).
enum ModelReport {
    /// One row of the breakdown: a part of the model and the client's measurements for it.
    struct Part {
        var name: String
        var seconds: Double
        var bytesSent: Int
        var bytesReceived: Int
        var rounds: Int
        var keyBytes = (server: 0, client: 0)
    }

    /// The client's `online_breakdown` and the dealer's `key_breakdown`, in the order of `LayerKind`.
    static func parts(client: [String: Any], dealer: [String: Any]) -> [Part] {
        let breakdown = client["online_breakdown"] as? [String: [String: Any]] ?? [:]
        let keys = dealer["key_breakdown"] as? [String: [String: Any]] ?? [:]
        return LayerKind.allCases.compactMap { kind in
            guard breakdown[kind.rawValue] != nil || keys[kind.rawValue] != nil else { return nil }
            let online = breakdown[kind.rawValue] ?? [:]
            var part = Part(
                name: kind.rawValue, seconds: online["seconds"] as? Double ?? 0,
                bytesSent: online["bytes_sent"] as? Int ?? 0, bytesReceived: online["bytes_received"] as? Int ?? 0,
                rounds: online["rounds"] as? Int ?? 0)
            part.keyBytes = (keys[kind.rawValue]?["server"] as? Int ?? 0, keys[kind.rawValue]?["client"] as? Int ?? 0)
            return part
        }
    }

    static func breakdownJSON(_ parts: [Part]) -> JSONValue {
        .object(
            parts.map {
                (
                    $0.name,
                    .object([
                        ("seconds", .number($0.seconds)), ("client_sent", .integer($0.bytesSent)),
                        ("client_received", .integer($0.bytesReceived)), ("rounds", .integer($0.rounds)),
                        ("key_bytes_server", .integer($0.keyBytes.server)),
                        ("key_bytes_client", .integer($0.keyBytes.client)),
                    ])
                )
            })
    }

    static func write(_ result: JSONValue, parts: [Part], title: String, to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try (result.text + "\n").write(toFile: directory + "/report.json", atomically: true, encoding: .utf8)
        try markdown(result, parts: parts, title: title).write(
            toFile: directory + "/report.md", atomically: true, encoding: .utf8)
        try svg(parts, title: title).write(toFile: directory + "/breakdown.svg", atomically: true, encoding: .utf8)
    }

    static func markdown(_ result: JSONValue, parts: [Part], title: String) -> String {
        let total = parts.reduce(0) { $0 + $1.seconds }
        var lines = [
            "# \(title)", "", "```", renderTable(withoutBreakdown(result), title: "sigma bench model"), "```", "",
            "## Online time by part of the model (client's view)", "",
            "| part | seconds | share | client sent (MB) | client received (MB) | rounds | keys server (MB) "
                + "| keys client (MB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for part in parts {
            lines.append(
                "| \(part.name) | \(String(format: "%.2f", part.seconds)) | "
                    + "\(String(format: "%.0f %%", 100 * part.seconds / max(total, 1e-9))) | "
                    + "\(String(format: "%.1f", Double(part.bytesSent) / 1e6)) | "
                    + "\(String(format: "%.1f", Double(part.bytesReceived) / 1e6)) | \(part.rounds) | "
                    + "\(String(format: "%.1f", Double(part.keyBytes.server) / 1e6)) | "
                    + "\(String(format: "%.1f", Double(part.keyBytes.client) / 1e6)) |")
        }
        lines += [
            "",
            "Times are wall clock on the client (its compute, waiting for the server, and I/O), attributed to the part",
            "of the model whose gates were running. ![breakdown](breakdown.svg)", "",
        ]
        return lines.joined(separator: "\n")
    }

    static func withoutBreakdown(_ result: JSONValue) -> JSONValue {
        guard case .object(let fields) = result else { return result }
        return .object(fields.filter { $0.0 != "online_breakdown" })
    }

    /// Two horizontal bar charts side by side: seconds, and megabytes both ways, per part.
    static func svg(_ parts: [Part], title: String) -> String {
        let rowHeight = 26
        let labelWidth = 110
        let barWidth = 300
        let top = 56
        let height = top + rowHeight * parts.count + 20
        let width = labelWidth + 2 * (barWidth + 90)
        let maxSeconds = parts.map(\.seconds).max() ?? 1
        let maxBytes = parts.map { Double($0.bytesSent + $0.bytesReceived) }.max() ?? 1
        func escape(_ text: String) -> String {
            text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        }
        var body = [
            #"<svg xmlns="http://www.w3.org/2000/svg" width="\#(width)" height="\#(height)" font-family="sans-serif" font-size="12">"#,
            #"<rect width="100%" height="100%" fill="white"/>"#,
            #"<text x="8" y="20" font-size="15" font-weight="bold">\#(escape(title))</text>"#,
            #"<text x="\#(labelWidth)" y="44" font-weight="bold">online seconds</text>"#,
            #"<text x="\#(labelWidth + barWidth + 90)" y="44" font-weight="bold">MB exchanged (both ways)</text>"#,
        ]
        for (row, part) in parts.enumerated() {
            let y = top + row * rowHeight
            let secondsBar = Int(Double(barWidth) * part.seconds / max(maxSeconds, 1e-9))
            let megabytes = Double(part.bytesSent + part.bytesReceived) / 1e6
            let bytesBar = Int(Double(barWidth) * Double(part.bytesSent + part.bytesReceived) / max(maxBytes, 1))
            let bytesX = labelWidth + barWidth + 90
            body += [
                #"<text x="8" y="\#(y + 15)">\#(escape(part.name))</text>"#,
                #"<rect x="\#(labelWidth)" y="\#(y + 3)" width="\#(max(secondsBar, 1))" height="16" fill="steelblue"/>"#,
                #"<text x="\#(labelWidth + secondsBar + 6)" y="\#(y + 15)">\#(String(format: "%.2f s", part.seconds))</text>"#,
                #"<rect x="\#(bytesX)" y="\#(y + 3)" width="\#(max(bytesBar, 1))" height="16" fill="peru"/>"#,
                #"<text x="\#(bytesX + bytesBar + 6)" y="\#(y + 15)">\#(String(format: "%.1f MB", megabytes))</text>"#,
            ]
        }
        body.append("</svg>")
        return body.joined(separator: "\n") + "\n"
    }
}
