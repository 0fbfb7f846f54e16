/// One chain a receipt covers: the device that wrote it, and the newest of its events the receipt's sender holds
/// (delivered) or has shown (read), named by place and hash (docs/PROTOCOL.md §7.10). The hash makes the claim
/// exact: a receipt covers the events of that chain up to this one, and nothing of a fork or a forgery.
public struct ReceiptHead: Sendable, Hashable {
    public var position: ChainPosition
    /// The event hash (64 lowercase hex digits) of the event at `position`.
    public var hash: String

    public init(position: ChainPosition, hash: String) {
        self.position = position
        self.hash = hash
    }

    /// The most heads one receipt lists; a device with more chains to report sends several receipts.
    public static let maxPerReceipt = 256

    /// Whether this head covers the chained event at `other`: same chain, same or later place.
    public func covers(_ other: ChainPosition) -> Bool {
        position.senderKey == other.senderKey && position.seq >= other.seq
    }

    public var jsonValue: JSONValue {
        var object = position.jsonObject
        object["hash"] = .string(hash)
        return .object(object)
    }

    /// The optional `heads` of a receipt: 1 to ``maxPerReceipt`` heads, one per chain.
    static func parseList(_ reader: inout ContentReader) throws(ContentError) -> [ReceiptHead] {
        guard let list = try reader.optionalArray("heads") else { return [] }
        guard !list.isEmpty, list.count <= maxPerReceipt else { throw ContentError("m.receipt: heads must list 1 to \(maxPerReceipt) chains") }
        var heads: [ReceiptHead] = []
        heads.reserveCapacity(list.count)
        var chains = Set<String>()
        for entry in list {
            guard case .object(let object) = entry else { throw ContentError("m.receipt: each head must be an object") }
            var headReader = ContentReader(content: object, type: "m.receipt head")
            let senderKey = Base64.encode(try headReader.base64("sender_key", byteCount: 32))
            let seq = try headReader.integer("seq")
            guard seq >= 1 else { throw ContentError("m.receipt: a head's seq must be at least 1") }
            let hash = try headReader.string("hash")
            guard Hex.isLowercaseHex(hash, byteCount: 32) else { throw ContentError("m.receipt: a head's hash must be 64 lowercase hex digits") }
            try headReader.rejectUnread()
            let position = ChainPosition(senderKey: senderKey, seq: seq)
            guard chains.insert(position.senderKey).inserted else { throw ContentError("m.receipt: heads list a chain twice") }
            heads.append(ReceiptHead(position: position, hash: hash))
        }
        return heads
    }
}
