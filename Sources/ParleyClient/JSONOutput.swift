import ParleyCore
import ParleyStore

/// The JSON shapes the CLI prints with `--json` (documented in docs/CLI.md).
public enum JSONOutput {
    public static func item(_ item: TimelineItem) -> JSONValue {
        var object = JSONObject()
        object["event_id"] = .string(item.eventID)
        object["sender_id"] = .string(item.senderID)
        object["timestamp_ms"] = .integer(item.timestampMs)
        object["type"] = .string(item.type)
        if let kind = item.messageKind { object["msgtype"] = .string(kind.rawValue) }
        if let body = item.body { object["body"] = .string(body) }
        if let file = item.file { object["file"] = fileSummary(file) }
        if item.priority != .normal { object["priority"] = .string(item.priority.rawValue) }
        if let forwarded = item.forwarded {
            object["forwarded"] = [
                "event_id": .string(forwarded.reference.eventID), "hash": .string(forwarded.reference.hash),
                "sender_id": .string(forwarded.reference.senderID), "check": .string((forwarded.check ?? .unavailable).rawValue),
            ]
        }
        object["edited"] = .bool(item.edited)
        object["redacted"] = .bool(item.redacted)
        var reactions = JSONObject()
        for (key, users) in item.reactions { reactions[key] = .array(users.map(JSONValue.string)) }
        object["reactions"] = .object(reactions)
        if !item.reactionEvents.isEmpty {
            object["reaction_events"] = .array(
                item.reactionEvents.map { ["event_id": .string($0.eventID), "key": .string($0.key), "sender_id": .string($0.senderID)] })
        }
        object["parent_event_id"] = item.parentEventID.map(JSONValue.string) ?? .null
        if !item.edits.isEmpty {
            object["edits"] = .array(item.edits.map { ["event_id": .string($0.eventID), "body": .string($0.body), "timestamp_ms": .integer($0.timestampMs)] })
        }
        if let summary = item.summary { object["summary"] = .string(summary) }
        if item.undecryptable { object["undecryptable"] = .bool(true) }
        return .object(object)
    }

    /// `parley status EVENT --json` and `GET /v1/rooms/R/events/E/status`: where a message stands with each device.
    public static func delivery(_ report: DeliveryReport) -> JSONValue {
        [
            "room_id": .string(report.roomID), "event_id": .string(report.eventID), "sender_id": .string(report.senderID),
            "sender_key": .string(report.senderKey), "timestamp_ms": .integer(report.timestampMs), "own": .bool(report.isOwn),
            "state": .string(report.overall.rawValue),
            "sent": .array(report.confirmations.map { ["transport": .string($0.transport), "at_ms": .integer($0.confirmedMs)] }),
            "failures": .array(
                report.failures.map {
                    [
                        "transport": .string($0.transport), "reason": .string($0.reason), "attempts": .integer(Int64($0.attempts)),
                        "since_ms": .integer($0.firstMs),
                    ]
                }),
            "recipients": .array(
                report.recipients.map {
                    [
                        "user_id": .string($0.userID), "device_key": .string($0.deviceKey), "state": .string($0.state.rawValue),
                        "delivered_ms": $0.deliveredMs.map(JSONValue.integer) ?? .null, "read_ms": $0.readMs.map(JSONValue.integer) ?? .null,
                        "joined": .bool($0.isJoined),
                    ]
                }),
        ]
    }

    /// The `delivery` of this device's message in a timeline item (`parley log --json`, the local API's timeline).
    public static func deliveryMark(_ mark: DeliveryMark) -> JSONValue {
        [
            "state": .string(mark.state.rawValue), "delivered": .integer(Int64(mark.delivered)), "read": .integer(Int64(mark.read)),
            "devices": .integer(Int64(mark.devices)),
        ]
    }

    /// An event a query found (`parley query --json`, `GET /v1/query`): its envelope, and its type and content as
    /// this node reads them (`sealed` while it cannot open them). A shared file is shown as ``fileSummary(_:)``.
    public static func queryHit(_ hit: QueryHit) -> JSONValue {
        let event = hit.event
        var object = JSONObject([
            "room_id": .string(event.roomID), "event_id": .string(event.eventID), "sender_id": .string(event.senderID),
            "sender_key": .string(event.senderKey), "seq": .integer(event.seq), "timestamp_ms": .integer(event.timestampMs),
            "type": .string(hit.type),
        ])
        if let content = hit.content {
            object["content"] = .object(shown(content, type: hit.type, roomID: event.roomID))
        } else {
            object["sealed"] = .bool(true)
        }
        return .object(object)
    }

    /// Content as outputs show it: a shared file as its ``fileSummary(_:)``, its key and blocks left in the node.
    static func shown(_ content: JSONObject, type: String, roomID: String) -> JSONObject {
        guard case .message(_, _, let file?, _, _)? = try? EventContent.parse(type: type, content: content, roomID: roomID) else { return content }
        var shown = content
        shown["file"] = fileSummary(file)
        return shown
    }

    /// `parley verify PROOF --json`: what a delivery proof shows, and whether it holds.
    public static func deliveryProof(_ report: DeliveryProofReport, problems: [String], isValid: Bool) -> JSONValue {
        var object = JSONObject([
            "valid": .bool(isValid), "lines": .integer(Int64(report.lines)), "problems": .array(problems.map(JSONValue.string)),
            "confirmations": .array(
                report.confirmations.map {
                    [
                        "user_id": .string($0.readerID), "device_key": .string($0.readerKey), "kind": .string($0.kind.rawValue),
                        "at_ms": .integer($0.timestampMs), "receipt_event_id": .string($0.receiptEventID),
                    ]
                }),
        ])
        if let event = report.event {
            object["room_id"] = .string(event.roomID)
            object["event_id"] = .string(event.eventID)
            object["sender_id"] = .string(event.senderID)
            object["sender_key"] = .string(event.senderKey)
            object["timestamp_ms"] = .integer(event.timestampMs)
        }
        if let creation = report.creation { object["create_hash"] = .string(creation.hash) }
        if let opened = report.opened, let event = report.event {
            object["type"] = .string(opened.type)
            object["content"] = .object(shown(opened.content, type: opened.type, roomID: event.roomID))
        }
        return .object(object)
    }

    /// What a reader is told of a shared file: its name, media type, size, SHA-256 and dimensions. The key and block
    /// ids stay in the node, which fetches the file (`parley download`, the local API).
    public static func fileSummary(_ file: FileAttachment) -> JSONValue {
        var object = JSONObject()
        object["name"] = .string(file.name)
        object["media_type"] = .string(file.mediaType)
        object["size"] = .integer(file.size)
        object["sha256"] = .string(Hex.encode(file.sha256))
        if let width = file.width, let height = file.height {
            object["width"] = .integer(Int64(width))
            object["height"] = .integer(Int64(height))
        }
        return .object(object)
    }

    /// An error, as a command given `--json` prints it: `{"error": {"code", "message", "details", "remedy",
    /// "bucket_failure"}}` (the last three only when there are any).
    public static func error(_ error: ClientError) -> JSONValue {
        var object = JSONObject(["code": .string(error.code.name), "message": .string(error.message)])
        if !error.details.isEmpty { object["details"] = .array(error.details.map(JSONValue.string)) }
        if let remedy = error.remedy { object["remedy"] = .string(remedy) }
        if let kind = error.bucketFailure { object["bucket_failure"] = .string(kind.name) }
        return ["error": .object(object)]
    }

    /// A room's summary in `parley verify --json` and `parley bucket verify --json`.
    public static func auditedRoom(_ room: AuditReport.RoomSummary) -> JSONValue {
        [
            "room_id": .string(room.roomID), "events": .integer(Int64(room.events)), "accepted": .integer(Int64(room.accepted)),
            "forks": .integer(Int64(room.forks)), "state": state(room.state),
        ]
    }

    public static func state(_ state: RoomState, forks: [ForkProof] = [], collisions: [EventIDCollision] = [], heldBack: Int = 0) -> JSONValue {
        var object = JSONObject()
        object["room_id"] = .string(state.roomID)
        object["name"] = state.name.map(JSONValue.string) ?? .null
        object["topic"] = state.topic.map(JSONValue.string) ?? .null
        if let creation = state.creation {
            object["creator"] = ["user_id": .string(creation.creatorID), "signing_key": .string(creation.creatorKey), "event_id": .string(creation.eventID)]
        }
        let members = state.members.values.sorted { $0.userID < $1.userID }.map { member -> JSONValue in
            var entry = JSONObject()
            entry["user_id"] = .string(member.userID)
            entry["membership"] = .string(member.membership.rawValue)
            entry["power_level"] = .integer(state.powerLevels.level(of: member.userID))
            entry["devices"] = .array(
                member.devices.values.sorted { $0.signingKey < $1.signingKey }.map { device in
                    var binding = JSONObject()
                    binding["signing_key"] = .string(device.signingKey)
                    if let exchange = device.exchangeKey { binding["exchange_key"] = .string(exchange) }
                    return .object(binding)
                })
            if !member.invitedDevices.isEmpty {
                entry["invited_keys"] = .array(member.invitedDevices.keys.sorted().map(JSONValue.string))
            }
            return .object(entry)
        }
        object["members"] = .array(members)
        object["power_levels"] = .object(state.powerLevels.jsonObject)
        if let encryption = state.encryption {
            var settings = encryption.jsonObject
            settings["epochs"] = .integer(Int64(state.roomKeys.count))
            object["encryption"] = .object(settings)
        } else {
            object["encryption"] = .null
        }
        // Each proof is the two conflicting envelopes: anyone can check them (docs/PROTOCOL.md §6.4).
        object["fork_proofs"] = .array(forks.map { $0.jsonValue() })
        // Pairs of events sharing one id (docs/PROTOCOL.md §6.5): both are kept; someone copied an id.
        object["event_id_collisions"] = .array(collisions.map { $0.jsonValue() })
        object["held_back_events"] = .integer(Int64(heldBack))
        return .object(object)
    }
}
