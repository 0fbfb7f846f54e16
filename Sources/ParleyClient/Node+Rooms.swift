import ParleyCore
import ParleyStore

/// A room as a room list shows it.
public struct RoomSummary: Sendable {
    public var roomID: String
    public var name: String?
    public var topic: String?
    public var isEncrypted: Bool
    /// Joined members.
    public var members: Int
    /// This user's membership, if any.
    public var membership: Membership?
    /// In a direct-message room, the other user (invited or joined).
    public var directPeer: String?
    /// Messages by others after this user's newest read receipt, up to ``Node/unreadCap``.
    public var unread: Int
    /// The room's newest timeline item, if any.
    public var last: TimelineItem?
}

extension Node {
    /// Unread counts stop here: counting further costs a scan of the room, and a list shows "999+" anyway.
    public static let unreadCap = 1_000

    /// Every room this node holds, the most recently active first.
    public func roomSummaries() throws -> [RoomSummary] {
        try catchUpDecryption()
        return try store.roomIDs().compactMap { roomID in
            guard let state = try store.roomState(roomID: roomID), state.creation != nil else { return nil }
            return try summary(of: state)
        }.sorted { ($0.last?.timestampMs ?? 0, $1.roomID) > ($1.last?.timestampMs ?? 0, $0.roomID) }
    }

    /// One room as ``roomSummaries()`` lists it.
    public func roomSummary(_ roomID: String) throws -> RoomSummary {
        let state = try requireState(roomID)
        try catchUpDecryption()
        return try summary(of: state)
    }

    func summary(of state: RoomState) throws -> RoomSummary {
        let roomID = state.roomID
        let peer =
            roomID.hasPrefix(Node.directMessagePrefix)
            ? state.members.values.filter { $0.userID != identity.userID && ($0.membership == .join || $0.membership == .invite) }.map(\.userID).sorted().first
            : nil
        return RoomSummary(
            roomID: roomID, name: state.name, topic: state.topic, isEncrypted: state.encryption != nil, members: state.joinedMembers.count,
            membership: state.members[identity.userID]?.membership, directPeer: peer,
            unread: try store.unreadCount(roomID: roomID, userID: identity.userID, cap: Node.unreadCap),
            last: try store.timeline(roomID: roomID, limit: 1).last)
    }

    /// The newest `limit` timeline items of `roomID` before the item `beforeEventID` (a page further back), or the
    /// newest overall, oldest first.
    /// - Throws: ``ClientError`` `.unknownRoom`, or `.unknownEvent` when `beforeEventID` is no accepted event of the room.
    public func timeline(_ roomID: String, limit: Int, before beforeEventID: String?) throws -> [TimelineItem] {
        guard let beforeEventID else { return try timeline(roomID, limit: limit) }
        _ = try requireState(roomID)
        guard let stored = try store.event(eventID: beforeEventID), stored.event.event.roomID == roomID, stored.status == .accepted
        else { throw ClientError(.unknownEvent, "Room \(roomID) holds no accepted event \(beforeEventID).") }
        try catchUpDecryption()
        return try store.timeline(roomID: roomID, limit: limit, before: EventOrder(stored.event.event))
    }

    /// Tells this node's UIs that this user started or stopped typing in `roomID`. Ephemeral: nothing is stored or
    /// sent through a transport.
    public func setTyping(_ roomID: String, _ isTyping: Bool) throws {
        _ = try requireState(roomID)
        feed.post(.typing(roomID: roomID, userID: identity.userID, isTyping: isTyping))
    }
}
