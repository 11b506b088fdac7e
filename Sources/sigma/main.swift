import CSigmaKernels
import FSS
import Foundation
import Models
import SigmaBench
import Transport

/// `sigma`: the command-line tool.
let usage = """
    usage: sigma <command> [options]

    commands:
      demo                          secure inference of the built-in MLP: dealer, server and client as three
                                    processes over loopback TCP, checked against the cleartext reference
      run [--input v,…] [--json]    the same, with your input (every run takes --stream-keys: the dealer streams
                                    the keys to the parties instead of writing files; --inline-products too)
      run --model DIR --prompt TEXT [--max-new-tokens N] [--bits n] [--json]
                                    generate text with a HuggingFace GPT-2 / GPT-Neo / Llama folder, one secure
                                    inference (fresh keys, three processes) per new token, streamed
      run --model BERT_DIR --text TEXT [--json]
                                    the sentence embedding of a BERT / MiniLM folder (mean pooling, L2)
      check-ranges --model DIR|NAME [--bits n]
                                    bound every product the model can compute: the bitwidth from which GapARS
                                    after linear layers is exact (the server checks this before serving)
      credentials --out DIR         create a deployment's secrets: DIR/dealer.cred, server.cred, client.cred
      dealer --keys DIR --credentials FILE [--model DIR --tokens T] [--weight-epoch E] [--key-cache-budget BYTES]
                                    write DIR/server.key and DIR/client.key for one inference (the server's
                                    weight masks stay the same for a model until the epoch changes; at most
                                    BYTES of them stay in the page cache, spread evenly: default what memory
                                    has free less a quarter of it for the parties)
      dealer --stream-to-server HOST:PORT --stream-to-client HOST:PORT --credentials FILE [--inline-products] …
                                    stream the keys to the parties as they are generated, no files (with
                                    --inline-products, no preprocessing stream: for keys larger than memory)
      server (--keys FILE | --keys-from-dealer PORT [--key-window BYTES]) --credentials FILE [--host ADDR]
             [--port P] [--timeout S] [--weight-registry F] [--threads T]
                                    serve one inference (P0, holds the weights); prints only statistics;
                                    one set of weights per weight-mask seed (F, default CREDENTIALS.weights)
      client (--keys FILE | --keys-from-dealer PORT [--key-window BYTES]) --credentials FILE
             --connect HOST:PORT [--input v,…] [--json] [--timeout S] [--weights-cache DIR] [--threads T]
                                    run one inference (P1, holds the input) and print the output; the
                                    server's masked weights come once per model and are kept in DIR
                                    (streamed keys: at most BYTES held ahead, default a third of memory)
                                    (TLS 1.3 between the parties and MAC-checked key files; the three roles
                                    take --insecure-transport instead of --credentials to run without them;
                                    demo, run and bench model make a fresh deployment's credentials themselves)
      bench fss [--json] [--keys N] [--threads T]
                                    measure the FSS core: AES, DPF comparison, LUT, key generation
      bench model --model NAME|DIR [--seq L] [--bits n] [--blocks B] [--stream-keys] [--json] [--report DIR]
                                    dealer, server, client as processes with random weights of a named shape
                                    (bert-tiny, bert-base, bert-large, gpt2, gpt-neo-1.3b, llama2-7b, llama2-13b);
                                    --key-cache-budget BYTES as the dealer's
      bench layers [--json] [--only GeLU,softmax,…] [--reference-widths]
                                    GeLU, SiLU, softmax, LayerNorm, RMSNorm at GPT-2's shapes over loopback TCP,
                                    activation and softmax inputs at the widths GPT-2's range certificate proves
                                    (the reference's n − f with --reference-widths)
      bench transport [--json]      a channel's round-trip time and throughput, TLS against plain TCP
      bench protocols [--json] [--elements N] [--threads T]
                                    each protocol's online time, bytes, rounds and key size over loopback TCP
      accuracy [--write FILE]       each non-linear function against float64 (the table in docs/accuracy.md)
      relay --listen HOST:PORT --to HOST:PORT --delay-ms D
                                    forward TCP with D ms added in each direction (scripts/netns-bench.sh)
      help                          show this text
    """

// A party allocates arrays of a layer's size (MBs) for every gate and frees them at its end. glibc serves those
// from fresh mmap()s and hands freed heap tops back to the kernel, so each gate paid page faults and the kernel's
// zeroing of every page again (16 % of GeLU's online CPU, measured with perf). Keep freed memory in the process:
// blocks up to 32 MiB (glibc's largest fixed threshold) come from the heap and are reused. Larger blocks (the
// embedding's one-hot product) still map and unmap.
sigma_keep_freed_memory()

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    switch arguments.first {
    case "demo", "run":
        let options = Options(
            arguments.dropFirst(), flags: ["--json", "--insecure-transport", "--stream-keys", "--inline-products"],
            values: [
                "--input", "--model", "--prompt", "--max-new-tokens", "--bits", "--truncation", "--blocks", "--text",
                "--activation-bits", "--softmax-bits",
            ])
        if options.string("--model") != nil { try Generate.run(options) } else { try Run.run(options) }
    case "relay":
        let options = Options(arguments.dropFirst(), flags: [], values: ["--listen", "--to", "--delay-ms"])
        let (listenHost, listenPort) = options.address("--listen")
        let (targetHost, targetPort) = options.address("--to")
        let relay = try DelayRelay(
            listenHost: listenHost, listenPort: listenPort, targetHost: targetHost, targetPort: targetPort,
            delay: options.number("--delay-ms", default: 1) / 1000)
        printError("relay: listening on port \(relay.port)")
        try relay.run()
    case "check-ranges":
        let options = Options(arguments.dropFirst(), flags: [], values: ["--model", "--bits"])
        let (certificate, ring) = try Job(options).certificate()
        print(
            """
            largest truncated product over every input: \(String(format: "%.4g", certificate.largestProduct))
            GapARS is exact from n = \(certificate.minimumBitwidth) bits (f = \(certificate.scale)); this ring has \
            n = \(ring.bitwidth): \(certificate.allowsGap(bitwidth: ring.bitwidth) ? "gap truncation allowed" : "use --truncation faithful or more bits")
            largest GeLU/SiLU input: \(String(format: "%.4g", certificate.largestActivationInput)) \
            (below 2^\(certificate.activationMagnitudeBits) units: --activation-bits \(certificate.activationMagnitudeBits))
            largest softmax input: \(String(format: "%.4g", certificate.largestSoftmaxInput)) \
            (below 2^\(certificate.softmaxMagnitudeBits) units: --softmax-bits \(certificate.softmaxMagnitudeBits))
            """)
    case "credentials":
        try Roles.credentials(Options(arguments.dropFirst(), flags: [], values: ["--out"]))
    case "dealer":
        try Roles.dealer(
            Options(
                arguments.dropFirst(), flags: ["--insecure-transport", "--inline-products"],
                values: [
                    "--keys", "--model", "--tokens", "--bits", "--truncation", "--blocks", "--credentials",
                    "--weight-epoch", "--activation-bits", "--softmax-bits", "--stream-to-server", "--stream-to-client",
                    "--timeout", "--key-cache-budget",
                ]))
    case "server":
        try Roles.server(
            Options(
                arguments.dropFirst(), flags: ["--insecure-transport"],
                values: [
                    "--keys", "--host", "--port", "--timeout", "--model", "--tokens", "--bits", "--truncation",
                    "--blocks", "--credentials", "--weight-registry", "--threads", "--activation-bits",
                    "--softmax-bits", "--keys-from-dealer", "--key-window",
                ]))
    case "client":
        try Roles.client(
            Options(
                arguments.dropFirst(), flags: ["--json", "--insecure-transport"],
                values: [
                    "--keys", "--connect", "--input", "--timeout", "--model", "--tokens", "--ids", "--bits",
                    "--truncation", "--blocks", "--credentials", "--weights-cache", "--threads", "--activation-bits",
                    "--softmax-bits", "--keys-from-dealer", "--key-window", "--host",
                ]))
    case "bench" where arguments.count >= 2 && arguments[1] == "model":
        try ModelBench.run(
            Options(
                arguments[2...], flags: ["--json", "--insecure-transport", "--stream-keys", "--inline-products"],
                values: [
                    "--model", "--seq", "--bits", "--truncation", "--blocks", "--report", "--key-cache-budget",
                    "--activation-bits",
                    "--softmax-bits",
                ]))
    case "bench" where arguments.count >= 2 && arguments[1] == "layers":
        let options = Options(arguments[2...], flags: ["--json", "--reference-widths"], values: ["--only"])
        let only = options.string("--only").map { Set($0.split(separator: ",").map(String.init)) }
        // GPT-2's own certificate (random weights of its shape, as `bench model` runs it).
        let widths =
            options.has("--reference-widths")
            ? InputWidths()
            : InputWidths(try Job(Options(["--model", "gpt2"][...], flags: [], values: ["--model"])).certificate().0)
        let result = try LayerBenchmark.run(
            only: only, activationBits: widths.activation, softmaxBits: widths.softmax
        ) { printError($0) }
        print(options.has("--json") ? result.text : renderTable(result, title: "sigma bench layers"))
    case "bench" where arguments.count >= 2 && arguments[1] == "transport":
        let options = Options(arguments[2...], flags: ["--json"], values: [])
        let result = try TransportBenchmark.run { printError($0) }
        print(options.has("--json") ? result.text : renderTable(result, title: "sigma bench transport"))
    case "bench" where arguments.count >= 2 && arguments[1] == "protocols":
        let options = Options(arguments[2...], flags: ["--json"], values: ["--elements", "--threads"])
        var settings = ProtocolBenchmark.Options()
        settings.elements = options.integer("--elements", default: settings.elements, range: 1024...(1 << 24))
        settings.threads = options.integer(
            "--threads", default: ProcessInfo.processInfo.activeProcessorCount, range: 1...256)
        let result = try ProtocolBenchmark.run(settings) { printError($0) }
        print(options.has("--json") ? result.text : renderTable(result, title: "sigma bench protocols"))
    case "bench":
        guard arguments.count >= 2, arguments[1] == "fss" else {
            fail("bench needs a target: fss or protocols\n\n\(usage)")
        }
        let options = Options(arguments[2...], flags: ["--json"], values: ["--keys", "--threads"])
        var settings = FSSBenchmark.Options()
        settings.keys = options.integer("--keys", default: settings.keys, range: 1024...(1 << 24))
        settings.scalingKeys = max(settings.scalingKeys, settings.keys)
        settings.threads = options.integer(
            "--threads", default: ProcessInfo.processInfo.activeProcessorCount, range: 1...256)
        let result = FSSBenchmark.run(settings) { printError($0) }
        print(options.has("--json") ? result.text : renderTable(result, title: "sigma bench fss"))
    case "accuracy":
        let options = Options(arguments.dropFirst(), flags: [], values: ["--write"])
        let report = try AccuracyReport.markdown()
        if let path = options.string("--write") {
            try report.write(toFile: path, atomically: true, encoding: .utf8)
            printError("wrote \(path)")
        }
        print(report)
    case "help", "--help", "-h", nil:
        print(usage)
    default:
        fail("unknown command '\(arguments[0])'\n\n\(usage)")
    }
} catch {
    fail("\(error)")
}
