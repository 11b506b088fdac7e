import Dispatch
import Glibc

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

/// CPU seconds the calling thread has used.
func threadCPUSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}
