import Foundation

/// Options of the form `--name value` and flags `--name`, checked against what a command accepts.
struct Options {
    var flags: Set<String> = []
    var values: [String: String] = [:]

    init(_ arguments: ArraySlice<String>, flags allowedFlags: Set<String>, values allowedValues: Set<String>) {
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            if allowedFlags.contains(argument) {
                flags.insert(argument)
            } else if allowedValues.contains(argument) {
                guard let value = rest.popFirst() else { fail("\(argument) needs a value") }
                values[argument] = value
            } else {
                fail("unknown option '\(argument)'\n\n\(usage)")
            }
        }
    }

    func has(_ flag: String) -> Bool { flags.contains(flag) }

    func string(_ name: String) -> String? { values[name] }

    func required(_ name: String) -> String {
        guard let value = values[name] else { fail("\(name) is required\n\n\(usage)") }
        return value
    }

    func integer(_ name: String, default fallback: Int, range: ClosedRange<Int>) -> Int {
        guard let text = values[name] else { return fallback }
        guard let value = Int(text), range.contains(value) else { fail("\(name) must be a whole number in \(range)") }
        return value
    }

    func number(_ name: String, default fallback: Double) -> Double {
        guard let text = values[name] else { return fallback }
        guard let value = Double(text), value > 0 else { fail("\(name) must be a positive number") }
        return value
    }

    /// A comma-separated list of numbers.
    func numbers(_ name: String) -> [Double]? {
        guard let text = values[name] else { return nil }
        let parts = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.allSatisfy({ $0 != nil }) else { fail("\(name) must be numbers separated by commas") }
        return parts.map { $0! }
    }

    /// HOST:PORT.
    func address(_ name: String) -> (host: String, port: UInt16) {
        let text = required(name)
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
            fail("\(name) must be HOST:PORT")
        }
        return (String(text[..<colon]), port)
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("sigma: \(message)\n".utf8))
    exit(2)
}

func printError(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
