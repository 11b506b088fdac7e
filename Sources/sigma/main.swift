import FSS
import Foundation
import SigmaBench

func printError(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.starts(with: ["bench", "fss"]) {
    let result = FSSBenchmark.run { printError($0) }
    print(result.text)
}
