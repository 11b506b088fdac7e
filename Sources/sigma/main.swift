import FSS
import Foundation
import SigmaBench

/// `sigma`: the command-line tool. Subcommands are added as the layers below them exist.
let usage = """
    usage: sigma <command> [options]

    commands:
      demo                     run a secure two-party computation on built-in data and check it
      bench fss [--json] [--keys N] [--threads T]
                               measure the FSS core: AES, DPF comparison, LUT, key generation
      help                     show this text
    """

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("sigma: \(message)\n".utf8))
    exit(2)
}

func printError(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }

/// Options of the form `--name value` and flags `--name`.
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

    func integer(_ name: String, default fallback: Int, range: ClosedRange<Int>) -> Int {
        guard let text = values[name] else { return fallback }
        guard let value = Int(text), range.contains(value) else { fail("\(name) must be a whole number in \(range)") }
        return value
    }
}

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "bench":
    guard arguments.count >= 2, arguments[1] == "fss" else { fail("bench needs a target: fss\n\n\(usage)") }
    let options = Options(arguments[2...], flags: ["--json"], values: ["--keys", "--threads"])
    var settings = FSSBenchmark.Options()
    settings.keys = options.integer("--keys", default: settings.keys, range: 1024...(1 << 24))
    settings.scalingKeys = max(settings.scalingKeys, settings.keys)
    settings.threads = options.integer(
        "--threads", default: ProcessInfo.processInfo.activeProcessorCount, range: 1...256)
    let result = FSSBenchmark.run(settings) { printError($0) }
    print(options.flags.contains("--json") ? result.text : renderTable(result, title: "sigma bench fss"))
case "demo":
    let options = Options(arguments[1...], flags: [], values: [])
    _ = options
    print(Demo.run())
case "help", "--help", "-h", nil:
    print(usage)
default:
    fail("unknown command '\(arguments[0])'\n\n\(usage)")
}
