internal import CRingKernels
import Dispatch

/// A Z_{2^64} matrix-product kernel of the `CRingKernels` target.
public enum MatmulKernel: Int, CaseIterable, Sendable, CustomStringConvertible {
    case avx512 = 0
    case avx2 = 1
    case scalar = 2

    /// The fastest kernel this CPU supports.
    public static let best = MatmulKernel(rawValue: Int(sigma_matmul_best().rawValue)) ?? .scalar

    public var isSupported: Bool { sigma_matmul_supported(sigma_matmul_kernel(rawValue: UInt32(rawValue))) != 0 }

    public var description: String { ["AVX-512", "AVX2", "scalar"][rawValue] }
}

/// Matrix products over Z_{2^64} (callers reduce mod 2^n): every product the protocols need, plain and batched.
public enum RingMatrix {
    /// Threads for products large enough to split (a fork/join costs a few µs, so small products stay on one).
    nonisolated(unsafe) public static var defaultThreads = 1

    /// C[b] = A[b] · B[b] for `batch` stacked products, A[b] m×k and B[b] k×n, row-major, wrapping mod 2^64.
    public static func multiply(
        _ a: [UInt64], _ b: [UInt64], m: Int, k: Int, n: Int, batch: Int = 1, kernel: MatmulKernel = .best,
        threads: Int? = nil
    ) -> [UInt64] {
        precondition(a.count == batch * m * k && b.count == batch * k * n, "operand sizes must match the shapes")
        var c = [UInt64](repeating: 0, count: batch * m * n)
        guard m > 0 && n > 0 else { return c }
        let workers = (m * k * n * batch) >= (1 << 20) ? max(1, threads ?? defaultThreads) : 1
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    let pointers = Pointers(a: pa.baseAddress!, b: pb.baseAddress!, c: pc.baseAddress!)
                    // Work items: (product, block of rows), at least 8 rows each. Past SIGMA_MATMUL_BLOCK_FROM terms every item streams
                    // all of B from memory (the embedding's table is 309 MB), so there each worker takes one block.
                    let rowBlock =
                        k > Int(SIGMA_MATMUL_BLOCK_FROM)
                        ? (m + workers - 1) / workers : max(8, (m + workers * 4 - 1) / (workers * 4))
                    let blocks = (m + rowBlock - 1) / rowBlock
                    let items = batch * blocks
                    let run: @Sendable (Int) -> Void = { (item: Int) in
                        let p = item / blocks
                        let rows = (item % blocks) * rowBlock
                        sigma_matmul_rows(
                            sigma_matmul_kernel(rawValue: UInt32(kernel.rawValue)), pointers.a + p * m * k,
                            pointers.b + p * k * n, pointers.c + p * m * n, k, n, rows, min(rows + rowBlock, m))
                    }
                    forEachItem(items, workers: workers, run)
                }
            }
        }
        return c
    }

    /// C = A · Bᵀ for A m×k and B stored n×k (row-major, wrapping mod 2^64): a product with a transposed operand
    /// (a tied output layer's table) without materialising the transposition. Columns of C are split across threads.
    public static func multiply(_ a: [UInt64], transposed b: [UInt64], m: Int, k: Int, n: Int, threads: Int? = nil)
        -> [UInt64]
    {
        precondition(a.count == m * k && b.count == n * k, "operand sizes must match the shapes")
        var c = [UInt64](repeating: 0, count: m * n)
        guard m > 0 && n > 0 else { return c }
        let workers = (m * k * n) >= (1 << 20) ? max(1, threads ?? defaultThreads) : 1
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    let pointers = Pointers(a: pa.baseAddress!, b: pb.baseAddress!, c: pc.baseAddress!)
                    let columnBlock = max(64, (n + workers * 4 - 1) / (workers * 4))
                    let blocks = (n + columnBlock - 1) / columnBlock
                    let run: @Sendable (Int) -> Void = { block in
                        sigma_matmul_transposed_columns(
                            pointers.a, pointers.b, pointers.c, m, k, n, block * columnBlock,
                            min((block + 1) * columnBlock, n))
                    }
                    forEachItem(blocks, workers: workers, run)
                }
            }
        }
        return c
    }

    /// `run(0 ..< items)` on `workers` threads, items strided across them.
    private static func forEachItem(_ items: Int, workers: Int, _ run: @Sendable (Int) -> Void) {
        guard workers > 1 else {
            for item in 0..<items { run(item) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var item = worker
            while item < items {
                run(item)
                item += workers
            }
        }
    }

    /// Operand pointers handed to worker threads, which write disjoint parts of C.
    private struct Pointers: @unchecked Sendable {
        let a: UnsafePointer<UInt64>
        let b: UnsafePointer<UInt64>
        let c: UnsafeMutablePointer<UInt64>
    }
}
