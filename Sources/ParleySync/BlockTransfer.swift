import ParleyCore

/// A block as a transport moves it: its id and tier (its stored length).
public struct BlockRef: Sendable, Hashable {
    public var id: BlockID
    public var tier: BlockTier

    public init(id: BlockID, tier: BlockTier) {
        self.id = id
        self.tier = tier
    }
}

/// What a transport tells of the block bytes it moves, for a progress bar: set for the task that sends or fetches.
public enum BlockTransfer {
    /// Called with the bytes of each block moved (or found already there), from any thread.
    @TaskLocal public static var progress: (@Sendable (Int64) -> Void)?

    /// Blocks moved at once: enough to keep a link busy, few enough that their bytes stay within about 32 MiB.
    public static func concurrency(for tier: BlockTier) -> Int { max(2, min(16, (32 << 20) / tier.byteCount)) }
}
