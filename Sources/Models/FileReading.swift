import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Reads a whole small file (a config, a vocabulary) with a size limit, so that a hostile or mistaken path cannot
/// make the process allocate without bound. (Also avoids FileManager.contents(atPath:), which leaks a page per
/// empty file in this Foundation: found by fuzzing with LeakSanitizer.)
func readFile(_ path: String, limit: Int) throws -> Data {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw CheckpointError.unreadable(path: path) }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
        throw CheckpointError.unreadable(path: path)
    }
    let size = Int(info.st_size)
    guard size <= limit else {
        throw CheckpointError.malformed(path: path, why: "\(size) bytes; a file of this kind is at most \(limit)")
    }
    var bytes = [UInt8](repeating: 0, count: size)
    var done = 0
    while done < size {
        let got = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, size - done) }
        if got < 0 && errno == EINTR { continue }
        guard got > 0 else { throw CheckpointError.unreadable(path: path) }
        done += got
    }
    return Data(bytes)
}
