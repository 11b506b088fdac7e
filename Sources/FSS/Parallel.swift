import Dispatch

/// A value handed to worker threads that only read it, or write disjoint parts of it.
struct UnsafeSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// Runs `body(0 ..< count)` on up to `threads` threads (one work item per index), each worker taking a contiguous
/// run of items: the DPF kernel prefetches the next item's keys while it finishes one (`prg.c`), and with strided
/// items that next item was the other worker's. Callers make each item at least ~100 µs of work: a fork/join costs
/// 3-6 µs here.
func parallelFor(_ count: Int, threads: Int, _ body: @Sendable (Int) -> Void) {
    let workers = min(max(threads, 1), count)
    if workers <= 1 {
        for i in 0..<count { body(i) }
        return
    }
    DispatchQueue.concurrentPerform(iterations: workers) { worker in
        for i in (count * worker / workers)..<(count * (worker + 1) / workers) { body(i) }
    }
}
