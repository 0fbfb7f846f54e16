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
    /// Those of them that mention this user (``Node/mentions(_:userID:)``).
    public var mentions: Int
    /// The room's newest timeline item, if any.
    public var last: TimelineItem?
}

extension Node {
    /// Unread counts stop here: counting further costs a scan of the room, and a list shows "999+" anyway.
    public static let unreadCap = 1_000

    /// Whether a message's text mentions `userID`: `@` and the user id, standing alone — not inside a longer id
    /// (`@alice` is no mention of `ali`), a word, an address (`bob@alice`, `josé@alice`) or a path. A `.` after it ends
    /// a sentence, not the id, unless an id character follows.
    public static func mentions(_ text: String, userID: String) -> Bool {
        let bytes = Array(text.utf8)
        let needle = Array(("@" + userID).utf8)
        func isIDByte(_ byte: UInt8) -> Bool {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "="),
                UInt8(ascii: "-"):
                true
            default: false
            }
        }
        /// Whether the byte at `index` makes the id go on.
        func continuesID(_ index: Int) -> Bool {
            guard index < bytes.count else { return false }
            guard bytes[index] == UInt8(ascii: ".") else { return isIDByte(bytes[index]) }
            return index + 1 < bytes.count && isIDByte(bytes[index + 1]) && bytes[index + 1] != UInt8(ascii: ".")
        }
        var start = 0
        while start + needle.count <= bytes.count {
            defer { start += 1 }
            guard bytes[start..<start + needle.count].elementsEqual(needle) else { continue }
            // After a space or punctuation, not after a letter of any script or case, a digit, or a path or address character.
            let standsAlone =
                start == 0 || (bytes[start - 1] < 0x80 && !isIDByte(bytes[start - 1]) && !"ABCDEFGHIJKLMNOPQRSTUVWXYZ/+@".utf8.contains(bytes[start - 1]))
            if standsAlone && !continuesID(start + needle.count) { return true }
        }
        return false
    }

    /// Every room this node holds, the most recently active first.
    public func roomSummaries() throws -> [RoomSummary] {
        try catchUpDecryption()
        // Mentions are counted in messages' current text, which the search index holds.
        try store.catchUpSearchIndex()
        return try store.roomIDs().compactMap { roomID in
            guard let state = try store.roomState(roomID: roomID), state.creation != nil else { return nil }
            return try summary(of: state)
        }.sorted { ($0.last?.timestampMs ?? 0, $1.roomID) > ($1.last?.timestampMs ?? 0, $0.roomID) }
    }

    /// One room as ``roomSummaries()`` lists it.
    public func roomSummary(_ roomID: String) throws -> RoomSummary {
        let state = try requireState(roomID)
        try catchUpDecryption()
        try store.catchUpSearchIndex()
        return try summary(of: state)
    }

    func summary(of state: RoomState) throws -> RoomSummary {
        let roomID = state.roomID
        let peer =
            roomID.hasPrefix(Node.directMessagePrefix)
            ? state.members.values.filter { $0.userID != identity.userID && ($0.membership == .join || $0.membership == .invite) }.map(\.userID).sorted().first
            : nil
        let unread = try store.unreadMessages(roomID: roomID, userID: identity.userID, mentionText: "@" + identity.userID, cap: Node.unreadCap)
        return RoomSummary(
            roomID: roomID, name: state.name, topic: state.topic, isEncrypted: state.encryption != nil, members: state.joinedMembers.count,
            membership: state.members[identity.userID]?.membership, directPeer: peer, unread: unread.count,
            mentions: unread.mentioning.filter { Node.mentions($0, userID: identity.userID) }.count,
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

    /// Tells this node's UIs, and through the room's relay the other members' nodes, that this user started or
    /// stopped typing in `roomID`. Ephemeral: nothing is stored, and buckets do not carry it.
    public func setTyping(_ roomID: String, _ isTyping: Bool) throws {
        _ = try requireState(roomID)
        feed.post(.typing(roomID: roomID, userID: identity.userID, isTyping: isTyping))
    }
}
