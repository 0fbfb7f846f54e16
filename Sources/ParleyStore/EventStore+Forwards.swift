import Foundation
import GRDB
import ParleyCore

extension EventStore {
    /// ``Timeline/resolve(items:relations:targets:)`` with each forwarded message compared with its original, where
    /// this store holds it (docs/PROTOCOL.md §7.6).
    static func resolvedTimeline(db: Database, items: [Event], relations: [Event]) throws -> [TimelineItem] {
        var resolved = Timeline.resolve(items: items, relations: relations, targets: SQLRelations(db: db))
        for index in resolved.indices {
            guard let forwarded = resolved[index].forwarded else { continue }
            resolved[index].forwarded?.check = try checkForward(db: db, forwarded)
        }
        return resolved
    }

    /// Compares a forward with the original it names: by hash among the events carrying its id (another device may
    /// have copied the id), then its sender, its verdict, and its text or one of its sender's edits.
    static func checkForward(db: Database, _ forwarded: Forwarded) throws -> ForwardCheck {
        let reference = forwarded.reference
        let carrying = try Row.fetchAll(
            db.cachedStatement(sql: "SELECT id, wire, hash, sender_id, status, redacted FROM events WHERE event_id = ?"), arguments: [reference.eventID])
        guard !carrying.isEmpty else { return .unavailable }
        guard let row = carrying.first(where: { ($0[2] as String) == reference.hash }) else { return .differs }
        guard (row[3] as String) == reference.senderID, EventStatus(rawValue: row[4]) == .accepted else { return .differs }
        guard (row[5] as Bool) == false else { return .unavailable }
        let original = try decryptedView(db: db, event: Event.parse((row[1] as Data).bytes), row: row[0])
        guard original.type == EventType.message, let content = original.content else {
            return original.type == EventType.encrypted ? .unavailable : .differs
        }
        guard case .message(_, let body, _, _, _) = try? EventContent.parse(type: original.type, content: content, roomID: original.roomID) else {
            return .differs
        }
        if body == forwarded.text { return .matches }
        // Forwarded after an edit: the text the original showed then, which only its sender's edits can give.
        let edits = try relations(db: db, targets: [reference.eventID]).filter { $0.type == EventType.edit && $0.senderID == original.senderID }
        for edit in edits {
            if case .edit(_, let newBody)? = edit.content.flatMap({ try? EventContent.parse(type: edit.type, content: $0, roomID: edit.roomID) }),
                newBody == forwarded.text
            {
                return .matches
            }
        }
        return .differs
    }
}
