import Synchronization

/// Bytes of blocks this process moved to and from transports, for the node's metrics: counters that only grow.
public enum BlockTraffic {
    private static let up = Atomic<Int64>(0)
    private static let down = Atomic<Int64>(0)

    public static func sent(_ bytes: Int) { up.add(Int64(bytes), ordering: .relaxed) }
    public static func fetched(_ bytes: Int) { down.add(Int64(bytes), ordering: .relaxed) }

    /// Bytes sent and fetched since the process started.
    public static func totals() -> (up: Int64, down: Int64) { (up.load(ordering: .relaxed), down.load(ordering: .relaxed)) }
}
