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

/// How transports move blocks.
public enum BlockTransfer {
    /// Told the bytes of each block moved (or found already there), from any thread: for a progress bar.
    public typealias Progress = @Sendable (Int64) -> Void

    /// Blocks moved at once: enough to keep a link busy and both cores sealing or opening, few enough that their bytes
    /// stay within about 16 MiB (two of the largest tier).
    public static func concurrency(for tier: BlockTier) -> Int { max(2, min(8, (16 << 20) / tier.byteCount)) }
}
