import Foundation

/// Where a model reports how far it is (after each block), for progress bars; nothing is reported by default.
public enum ModelProgress {
    private static let lock = NSLock()
    // Guarded by `lock`.
    nonisolated(unsafe) private static var handler: (@Sendable (_ done: Int, _ total: Int) -> Void)?

    /// Installs `report`, called with (blocks done, blocks in all) from the thread running the model.
    public static func install(_ report: (@Sendable (_ done: Int, _ total: Int) -> Void)?) {
        lock.withLock { handler = report }
    }

    static func report(_ done: Int, of total: Int) {
        let current = lock.withLock { handler }
        current?(done, total)
    }
}
