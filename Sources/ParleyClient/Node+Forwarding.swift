import ParleyCore
import ParleyStore

extension Node {
    /// Forwards a message this node holds into `roomID` (docs/PROTOCOL.md §7.6): a new message with the text it shows
    /// now (and its file, whose blocks this node must hold: they go to the new room's transports), and a reference
    /// to the original, its event id, hash and sender, which a reader holding the original checks.
    /// - Parameter allowClear: forward out of an encrypted room into one that is not, where the text lies in clear.
    /// - Throws: ``ClientError``: `.unknownEvent` for an event not held; `.invalidArgument` for one that is no
    ///   message, was deleted, cannot be opened, whose file is not held here, or that would go from an encrypted
    ///   room into a clear one; `.ambiguousEvent` when several devices' events carry the id.
    @discardableResult
    public func forward(eventID: String, to roomID: String, priority: MessagePriority = .normal, allowClear: Bool = false) throws -> VerifiedEvent {
        let target = try requireState(roomID)
        let carrying = try store.events(carrying: eventID).filter { $0.status == .accepted }
        guard let original = carrying.first else {
            throw ClientError(.unknownEvent, "This node holds no message \(eventID).", remedy: "`parley log ROOM` lists the messages it holds.")
        }
        guard carrying.count == 1 else {
            throw ClientError(
                .ambiguousEvent, "Event id \(eventID) is carried by \(carrying.count) events of different devices (one copied the other's id).",
                remedy: "Forward the text with `parley send` instead: which of them is meant cannot be told by id.")
        }
        guard let item = try store.item(eventID: eventID), let kind = item.messageKind, let text = item.body, !item.redacted else {
            let what =
                (try? store.item(eventID: eventID))?.undecryptable == true ? "cannot be opened on this device yet (no key)" : "is no message, or was deleted"
            throw ClientError(.invalidArgument, "Event \(eventID) \(what): there is nothing to forward.")
        }
        let sourceRoom = original.event.event.roomID
        if try store.roomState(roomID: sourceRoom)?.encryption != nil, target.encryption == nil, !allowClear {
            throw ClientError(
                .invalidArgument, "\(sourceRoom) is encrypted and \(roomID) is not: the forwarded text would be stored in clear there.",
                remedy: "Forward it into an encrypted room, or add --allow-clear to forward it anyway.")
        }
        var content = JSONObject(["msgtype": .string(kind.rawValue), "body": .string(text)])
        content["forwarded"] = .object(
            ForwardReference(eventID: eventID, hash: original.event.hash, senderID: original.event.event.senderID).jsonObject)
        if let file = item.file {
            guard blocksHeld(file.reference) else {
                throw ClientError(
                    .invalidArgument, "This node does not hold all the blocks of the file \(eventID) shares; the new room's members could not fetch it.",
                    remedy: "Fetch it first with `parley download \(eventID)`, then forward it.")
            }
            content["file"] = .object(file.jsonObject)
        }
        if priority != .normal { content["priority"] = .string(priority.rawValue) }
        return try explainingSize(of: text, in: target) { try publish(roomID: roomID, type: EventType.message, content: content) }
    }
}
