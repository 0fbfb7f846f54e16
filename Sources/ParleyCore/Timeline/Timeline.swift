/// One earlier version of an edited message.
public struct EditRecord: Sendable, Equatable {
    public var eventID: String
    public var body: String
    public var timestampMs: Int64
}

/// One reaction on a message, not redacted: what a user takes back by redacting `eventID`.
public struct ReactionRecord: Sendable, Equatable {
    public var eventID: String
    public var key: String
    public var senderID: String
}

/// One entry of a room's resolved timeline: a message with its edits, reactions and redaction applied, or a
/// state change.
public struct TimelineItem: Sendable, Equatable {
    public var eventID: String
    public var senderID: String
    /// The sending device: with `seq`, what tells this item apart from another device's event carrying the same
    /// `eventID` (docs/PROTOCOL.md §6.5).
    public var senderKey: String
    public var seq: Int64
    public var timestampMs: Int64
    public var type: String
    /// `text`, `notice`, `emote` or `file` for messages.
    public var messageKind: MessageKind?
    /// The file a message of kind `file` shares; `nil` when redacted.
    public var file: FileAttachment?
    /// How urgently the message was sent (`normal` for anything else).
    public var priority: MessagePriority = .normal
    /// For a forwarded message, what it says of its original and what this node found on comparing them; `nil` when redacted.
    public var forwarded: Forwarded?
    /// The current text: the newest edit's, else the original's. `nil` when redacted or not held.
    public var body: String?
    public var edited: Bool = false
    public var redacted: Bool = false
    /// Reaction key → users who reacted with it, sorted.
    public var reactions: [String: [String]] = [:]
    /// The reaction events behind ``reactions``, in timeline order: a user's several reactions with one key (from
    /// several devices) are all here.
    public var reactionEvents: [ReactionRecord] = []
    public var parentEventID: String?
    /// Every accepted, unredacted edit, oldest first.
    public var edits: [EditRecord] = []
    /// For state events: what changed, in words.
    public var summary: String?
    /// Sealed content this device cannot open yet (no key): kept, shown as such, opened when the key arrives.
    public var undecryptable = false

    /// The item's place in the total order: a cursor for paging further back.
    public var order: EventOrder { EventOrder(timestampMs: timestampMs, seq: seq, eventID: eventID, senderKey: senderKey) }
}

/// A forwarded message's link to its original (docs/PROTOCOL.md §7.6).
public struct Forwarded: Sendable, Equatable {
    public var reference: ForwardReference
    /// The text the forward carried when sent (before any edit of the forward): what the original must have said.
    public var text: String
    /// What the node holding the timeline found; `nil` until a store compares.
    public var check: ForwardCheck?

    public init(reference: ForwardReference, text: String, check: ForwardCheck? = nil) {
        self.reference = reference
        self.text = text
        self.check = check
    }
}

/// What comparing a forward with its original found.
public enum ForwardCheck: String, Sendable, Equatable {
    /// The original is held, accepted in its room, has the hash and sender the reference names, and said the
    /// forwarded text (itself or in one of its sender's edits).
    case matches
    /// The original is held but is not what the reference or the forward says: another hash under that id, another
    /// sender, a refused event, or other text.
    case differs
    /// The original is not held, or its text cannot be read here (redacted, or sealed with no key): nothing to compare.
    case unavailable
}

/// Builds timeline items from accepted events (docs/PROTOCOL.md §9). Pure: the store hands it the messages of a
/// page and every accepted event relating to them.
public enum Timeline {
    /// The timeline's total order, ``EventOrder``.
    public static func precedes(_ lhs: Event, _ rhs: Event) -> Bool {
        EventOrder(lhs) < EventOrder(rhs)
    }

    /// Event types that appear as items of their own.
    public static let itemTypes: Set<String> = [
        EventType.message, EventType.member, EventType.name, EventType.topic, EventType.create, EventType.powerLevels,
        EventType.encryption, EventType.encrypted,
    ]

    /// Resolves `items` (events of ``itemTypes``) using `relations` (accepted edits, redactions and reactions that
    /// may target them), returning items in timeline order. `targets` finds every chained event with an id that a
    /// redaction names: when several devices' events share one, a redaction applies only to some of them (§8.5).
    public static func resolve(items: [Event], relations: [Event], targets: some RelationLookup) -> [TimelineItem] {
        var edits: [String: [Event]] = [:]
        var reactions: [String: [Event]] = [:]
        let relationContents = relations.map { event -> (Event, EventContent?) in
            guard let content = event.content else { return (event, nil) }
            return (event, try? EventContent.parse(type: event.type, content: content, roomID: event.roomID))
        }
        // What the redactions of each target id hide (§8.5): when several devices' events share the id, a member's
        // redaction hides only their own.
        var redactions: [String: Set<RedactionScope>] = [:]
        for (event, content) in relationContents {
            guard case .redaction(let target, _)? = content else { continue }
            redactions[target, default: []].insert(targets.redactionScope(of: event) ?? .all)
        }
        func isRedacted(_ event: Event) -> Bool {
            guard let scopes = redactions[event.eventID] else { return false }
            let target = RelationTarget(event)
            return scopes.contains { $0.covers(target) }
        }
        for (event, content) in relationContents where !isRedacted(event) {
            switch content {
            case .edit(let target, _)?: edits[target, default: []].append(event)
            case .reaction(let target, _)?: reactions[target, default: []].append(event)
            default: break
            }
        }
        return items.sorted(by: precedes).map { event in
            var item = TimelineItem(
                eventID: event.eventID, senderID: event.senderID, senderKey: event.senderKey, seq: event.seq, timestampMs: event.timestampMs,
                type: event.type,
                parentEventID: event.parentEventID)
            item.redacted = isRedacted(event)
            let content = event.content.flatMap { try? EventContent.parse(type: event.type, content: $0, roomID: event.roomID) }
            switch content {
            case .message(let kind, let body, let file, let priority, let forwarded)?:
                // A redacted message shows nothing of its content, not even its kind: a store has stripped it.
                guard !item.redacted else { break }
                item.messageKind = kind
                item.body = body
                item.file = file
                item.priority = priority
                item.forwarded = forwarded.map { Forwarded(reference: $0, text: body) }
                let history = (edits[event.eventID] ?? []).filter { $0.senderID == event.senderID }.sorted(by: precedes)
                item.edits = history.compactMap { edit in
                    guard case .edit(_, let newBody)? = edit.content.flatMap({ try? EventContent.parse(type: edit.type, content: $0, roomID: edit.roomID) })
                    else { return nil }
                    return EditRecord(eventID: edit.eventID, body: newBody, timestampMs: edit.timestampMs)
                }
                if let newest = item.edits.last {
                    item.body = newest.body
                    item.edited = true
                }
                var byKey: [String: Set<String>] = [:]
                for reaction in (reactions[event.eventID] ?? []).sorted(by: precedes) {
                    if case .reaction(_, let key)? = reaction.content.flatMap({
                        try? EventContent.parse(type: reaction.type, content: $0, roomID: reaction.roomID)
                    }) {
                        byKey[key, default: []].insert(reaction.senderID)
                        item.reactionEvents.append(ReactionRecord(eventID: reaction.eventID, key: key, senderID: reaction.senderID))
                    }
                }
                item.reactions = byKey.mapValues { $0.sorted() }
            case .encrypted?:
                item.undecryptable = !item.redacted
            case let content?:
                item.summary = summary(of: content, sender: event.senderID)
            case nil:
                break
            }
            return item
        }
    }

    static func summary(of content: EventContent, sender: String) -> String? {
        switch content {
        case .create: return "\(sender) created the room"
        case .name(let name): return name.isEmpty ? "\(sender) removed the room name" : "\(sender) named the room \"\(name)\""
        case .topic(let topic): return topic.isEmpty ? "\(sender) removed the topic" : "\(sender) set the topic to \"\(topic)\""
        case .powerLevels: return "\(sender) changed power levels"
        case .encryption(let settings):
            return
                "\(sender) turned on end-to-end encryption (history visible to: \(settings.history == .shared ? "all members" : "members since they joined"))"
        case .member(let member):
            let reason = member.reason.map { ": \($0)" } ?? ""
            switch member.membership {
            case .join: return "\(member.userID) joined"
            // A user's invite of themselves binds a device they linked; a leave of their own naming devices removes
            // those devices only (docs/PROTOCOL.md §14.8).
            case .invite where sender == member.userID: return "\(sender) linked a new device\(deviceList(member.devices))"
            case .invite: return "\(sender) invited \(member.userID)"
            case .leave where sender == member.userID && !member.devices.isEmpty: return "\(sender) removed a device\(deviceList(member.devices))"
            case .leave where sender == member.userID: return "\(member.userID) left"
            case .leave: return "\(sender) removed \(member.userID)\(reason)"
            case .ban: return "\(sender) banned \(member.userID)\(reason)"
            }
        default: return nil
        }
    }

    /// ` (KEY…, KEY…)`: the start of each device's signing key, as `parley device list` shows them whole.
    static func deviceList(_ devices: [DeviceBinding]) -> String {
        " (" + devices.map { "\($0.signingKey.prefix(12))…" }.joined(separator: ", ") + ")"
    }
}
