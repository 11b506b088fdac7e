import Foundation

/// Performs items in submission order on a thread of its own — blocking I/O (a file's `pwrite`, a socket's send)
/// that should overlap the submitter's computation. At most `depth` items wait, so a submitter faster than the
/// device blocks instead of piling up memory. The first error is reported by the next `submit` or `drain`, and
/// the items after it are dropped.
final class OrderedWorker<Item>: @unchecked Sendable {  // mutable state guarded by `condition`
    private let perform: (Item) throws -> Void
    private let depth: Int
    private let condition = NSCondition()
    private var queue: [Item] = []
    private var busy = false
    private var stopped = false
    private var failure: (any Error)?

    init(name: String, depth: Int = 2, perform: @escaping (Item) throws -> Void) {
        self.perform = perform
        self.depth = depth
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    func submit(_ item: Item) throws {
        condition.lock()
        defer { condition.unlock() }
        while queue.count >= depth && failure == nil { condition.wait() }
        if let failure { throw failure }
        queue.append(item)
        condition.broadcast()
    }

    /// Waits until every submitted item is done.
    func drain() throws {
        condition.lock()
        defer { condition.unlock() }
        while (!queue.isEmpty || busy) && failure == nil { condition.wait() }
        if let failure { throw failure }
    }

    /// Ends the thread once the queue is empty.
    func stop() {
        condition.withLock {
            stopped = true
            condition.broadcast()
        }
    }

    private func run() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopped { condition.wait() }
            if queue.isEmpty || failure != nil {
                condition.unlock()
                return
            }
            let item = queue.removeFirst()
            busy = true
            condition.unlock()
            var error: (any Error)?
            do { try perform(item) } catch let thrown { error = thrown }
            condition.withLock {
                busy = false
                if let error, failure == nil {
                    failure = error
                    queue.removeAll()
                }
                condition.broadcast()
            }
        }
    }
}
