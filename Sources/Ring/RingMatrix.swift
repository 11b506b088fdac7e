import Dispatch

/// Matrix products over Z_{2^64} (callers reduce mod 2^n): every product the protocols need, plain and batched.
public enum RingMatrix {
    /// C[b] = A[b] · B[b] for `batch` stacked products, A[b] m×k and B[b] k×n, row-major, wrapping mod 2^64.
    public static func multiply(_ a: [UInt64], _ b: [UInt64], m: Int, k: Int, n: Int, batch: Int = 1) -> [UInt64] {
        precondition(a.count == batch * m * k && b.count == batch * k * n, "operand sizes must match the shapes")
        var c = [UInt64](repeating: 0, count: batch * m * n)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    for p in 0..<batch {
                        multiplyBlock(
                            pa.baseAddress! + p * m * k, pb.baseAddress! + p * k * n, pc.baseAddress! + p * m * n,
                            rows: 0..<m, k: k, n: n)
                    }
                }
            }
        }
        return c
    }

    /// Rows `rows` of C = A · B, i-k-j order so the inner loop streams rows of B and C.
    static func multiplyBlock(
        _ a: UnsafePointer<UInt64>, _ b: UnsafePointer<UInt64>, _ c: UnsafeMutablePointer<UInt64>, rows: Range<Int>,
        k: Int, n: Int
    ) {
        for i in rows {
            let row = c + i * n
            for kk in 0..<k {
                let aik = a[i * k + kk]
                if aik == 0 { continue }
                let brow = b + kk * n
                for j in 0..<n { row[j] &+= aik &* brow[j] }
            }
        }
    }
}
