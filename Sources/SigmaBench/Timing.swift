import Dispatch

/// Wall-clock seconds of `body`.
func seconds(_ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

/// The fastest of `repeats` runs: on a shared, noisy machine the minimum is the most repeatable figure.
func bestOf(_ repeats: Int, _ body: () -> Void) -> Double {
    var best = Double.infinity
    for _ in 0..<repeats { best = min(best, seconds(body)) }
    return best
}

/// Keeps a result alive so the optimiser cannot drop the work that produced it.
@inline(never)
func consume<T>(_ value: T) { withExtendedLifetime(value) {} }
