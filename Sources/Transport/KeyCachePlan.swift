import CSigmaCrypto
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Which pages of the key files the dealer is writing stay in the page cache when they cannot all.
///
/// When dealer, server and client share a machine and the parties' keys exceed its memory, the kernel keeps the
/// pages written last: the files' tails. The parties read from the heads, so the first half of the online phase
/// waits on the disk for every byte while the second half finds everything cached — the disk idles then. Keeping
/// an evenly spread subset cached instead turns that into a steady demand of (1 − cached share) of the key rate,
/// which the disk can meet (BERT-large: 32 GB of keys, about 15 GB of room; docs/performance.md).
///
/// The files are cut into chunks as they are written (aligned to the chunk size); chunk i gets the value frac(i·φ)
/// (a Weyl sequence, evenly spread for every prefix and every threshold), and the chunks with the smallest values
/// stay, as many as the budget holds. A chunk that loses its place is written back and dropped from the cache (`POSIX_FADV_DONTNEED`
/// after `sync_file_range`), a few chunks later so the writer rarely waits for the disk. Only ever a cost, never
/// a wrong byte: a dropped page is read from the file again.
public final class KeyCachePlan: @unchecked Sendable {  // mutable state guarded by `lock`
    /// At most this many written bytes stay cached.
    public let budget: Int
    let chunkSize: Int
    /// Dropped chunks wait this long (in chunks written since) before their write-back is awaited.
    let releaseDelay: Int

    private struct Chunk {
        var file: Int32
        var offset: Int
        var length: Int
        var rank: Double
    }

    private let lock = NSLock()
    private var files: [Int32] = []
    private var chunks = 0
    /// Per file, where the written bytes not yet in a chunk begin.
    private var unplanned: [Int32: Int] = [:]
    /// The cached chunks, in ascending rank.
    private var kept: [Chunk] = []
    private var keptBytes = 0
    /// Chunks whose write-back was started, oldest first: (chunk, the chunk count when it was dropped).
    private var releasing: [(chunk: Chunk, at: Int)] = []

    /// Keeps at most `budget` bytes cached, in chunks of 8 MiB (the key writer's buffer).
    public convenience init(budget: Int) {
        self.init(budget: budget, chunkSize: 8 << 20, releaseDelay: 32)
    }

    init(budget: Int, chunkSize: Int, releaseDelay: Int) {
        precondition(budget >= 0 && chunkSize > 0 && releaseDelay >= 0)
        self.budget = budget
        self.chunkSize = chunkSize
        self.releaseDelay = releaseDelay
    }

    deinit {
        for (chunk, _) in releasing { Self.release(chunk) }
        for file in files { close(file) }
    }

    /// Room for keys in the page cache by default: what the kernel calls available now, less a reserve for the
    /// parties' own memory (a quarter of the machine, at least 4 GiB).
    public static func defaultBudget() -> Int {
        guard let meminfo = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return Int.max }
        func kilobytes(_ field: String) -> Int? {
            guard let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else {
                return nil
            }
            return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
        }
        guard let available = kilobytes("MemAvailable"), let total = kilobytes("MemTotal") else { return Int.max }
        return max(0, available * 1024 - max(total * 1024 / 4, 4 << 30))
    }

    /// A file the plan may drop pages of: the plan keeps its own descriptor, valid after the writer closes.
    func register(_ file: Int32) -> Int32 {
        let own = dup(file)
        lock.withLock { files.append(own) }
        return own
    }

    /// Bytes [offset, offset + length) of `file` (a descriptor from `register`) were just written; each file is
    /// written front to back.
    func wrote(_ file: Int32, offset: Int, length: Int) {
        var drop: [Chunk] = []
        var release: [Chunk] = []
        lock.withLock {
            let end = offset + length
            var start = unplanned[file] ?? offset
            // Chunks end on multiples of the chunk size: the page cache's folios (up to 2 MiB, aligned to their
            // size) then never straddle two chunks, so a dropped chunk really leaves the cache.
            while (start / chunkSize + 1) * chunkSize <= end {
                let boundary = (start / chunkSize + 1) * chunkSize
                plan(Chunk(file: file, offset: start, length: boundary - start, rank: 0), &drop)
                start = boundary
            }
            unplanned[file] = start
            release = dueReleases(all: false)
        }
        for chunk in drop { _ = sigma_write_back(chunk.file, Int64(chunk.offset), Int64(chunk.length), 0) }
        for chunk in release { Self.release(chunk) }
    }

    /// Keeps `chunk` if it ranks among the budget's lowest, dropping whatever no longer fits; under `lock`.
    private func plan(_ chunk: Chunk, _ drop: inout [Chunk]) {
        var chunk = chunk
        chunk.rank = (Double(chunks) * 0.618_033_988_749_894_8).truncatingRemainder(dividingBy: 1)
        chunks += 1
        kept.insert(chunk, at: kept.firstIndex { $0.rank > chunk.rank } ?? kept.count)
        keptBytes += chunk.length
        while keptBytes > budget, let last = kept.popLast() {
            keptBytes -= last.length
            drop.append(last)
            releasing.append((last, chunks))
        }
    }

    /// The dropped chunks whose write-back has had time to finish (all of them with `all`); under `lock`.
    private func dueReleases(all: Bool) -> [Chunk] {
        var due: [Chunk] = []
        while let first = releasing.first, all || chunks - first.at >= releaseDelay {
            due.append(releasing.removeFirst().chunk)
        }
        return due
    }

    /// Plans the files' last partial chunks and drops every chunk still waiting (the files are complete).
    public func finish() {
        var drop: [Chunk] = []
        let pending = lock.withLock {
            for (file, start) in unplanned {
                let end = Int(lseek(file, 0, SEEK_END))
                if end > start { plan(Chunk(file: file, offset: start, length: end - start, rank: 0), &drop) }
            }
            unplanned = [:]
            return dueReleases(all: true)
        }
        for chunk in pending { Self.release(chunk) }
    }

    /// The bytes the plan keeps cached now, and where (tests).
    var cachedBytes: Int { lock.withLock { keptBytes } }
    var cachedRanges: [(file: Int32, offset: Int, length: Int)] {
        lock.withLock { kept.map { ($0.file, $0.offset, $0.length) } }
    }

    private static func release(_ chunk: Chunk) {
        _ = sigma_write_back(chunk.file, Int64(chunk.offset), Int64(chunk.length), 1)
        _ = posix_fadvise(chunk.file, off_t(chunk.offset), off_t(chunk.length), POSIX_FADV_DONTNEED)
    }
}
