import ParleyCore
import ParleyStore
import ParleySync

/// What a UI reads of the node beyond timelines and state: every read goes through `Node`, never its store.
extension Node {
    /// The ids of the rooms this node holds.
    public func roomIDs() throws -> [String] { try store.roomIDs() }

    /// The bucket rooms of this node, by room id.
    public func bucketRooms() throws -> [BucketRoom] { try store.bucketRooms() }

    /// The bucket room `roomID`, or `nil` for a room that does not live in a bucket (or is unknown).
    public func bucketRoom(_ roomID: String) throws -> BucketRoom? { try store.bucketRoom(roomID: roomID) }

    /// How far this device's events in `roomID` have gone.
    public func outboxStatus(_ roomID: String) throws -> OutboxStatus {
        try store.outboxStatus(roomID: roomID, senderKey: identity.signingKeyBase64)
    }

    /// Files of `roomID` a sync found fault with, newest first.
    public func bucketFileProblems(_ roomID: String, limit: Int = 100) throws -> [ReceivedObject] {
        try store.receivedProblems(.bucket, roomID: roomID, limit: limit)
    }

    /// Every accepted timeline item carrying `eventID` (ids are names: several events may carry one, PROTOCOL.md §6.5).
    public func items(eventID: String) throws -> [TimelineItem] { try store.items(eventID: eventID) }

    /// The message an edit or reaction refers to, while the store knows it (``EventStore/relationTarget(of:)``).
    public func relationTarget(of eventID: String) throws -> String? { try store.relationTarget(of: eventID) }

    /// The highest seq of this device's chain in `roomID` that some transport of the room has confirmed: its events
    /// after it are PENDING. `nil` for a room no transport carries, which has nowhere to send them.
    public func sentUpToSeq(_ roomID: String) throws -> Int64? {
        var sent: Int64?
        for transport in [TransportName.bucket, .relay] where try store.transportRoom(transport, roomID: roomID) != nil {
            sent = max(sent ?? 0, try store.outboxWatermark(transport, roomID: roomID))
        }
        return sent
    }

    /// Fork proofs found in `roomID`.
    public func forkProofs(_ roomID: String) throws -> [ForkProof] { try store.forkProofs(roomID: roomID) }

    /// Event ids of `roomID` that several events carry, with the evidence.
    public func eventIDCollisions(_ roomID: String) throws -> [EventIDCollision] { try store.eventIDCollisions(roomID: roomID) }

    /// Events of `roomID` held back for a missing predecessor.
    public func heldBackCount(_ roomID: String) throws -> Int { try store.heldBackCount(roomID: roomID) }

    /// Calls `body` with the exact bytes of every stored event of `roomID`, in the room's order.
    public func forEachEvent(_ roomID: String, _ body: ([UInt8]) throws -> Void) throws { try store.forEachEvent(roomID: roomID, body) }

    /// The newest entries of the rejected-events log.
    public func rejectedEvents(limit: Int = 100) throws -> [RejectedEvent] { try store.rejectedEvents(limit: limit) }

    /// Empties the rejected-events log.
    /// - Returns: how many entries it held.
    public func clearRejectedEvents() throws -> Int { try store.clearRejectedEvents() }
}
