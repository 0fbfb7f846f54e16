import ParleyCore

/// `rooms/{room_id}/metadata.json`: what a joiner needs before reading the logs — the room's signed create event
/// and its creator's join (docs/PROTOCOL.md §13.2). Written once by the creator; like everything in a bucket it is
/// untrusted, so a joiner checks it against the creator fingerprint in the invite code.
public enum RoomMetadata {
    static let format = "parley.bucket.room.v1"
    public static let maxBytes = 1 << 20

    /// metadata.json for the room's founding events (its create, then its creator's join).
    public static func encode(roomID: String, events: [VerifiedEvent]) -> [UInt8] {
        let json: JSONValue = [
            "format": .string(format), "room_id": .string(roomID),
            "events": .array(events.compactMap { try? JSONParser().parse($0.wire) }),
        ]
        return CanonicalJSON.encode(json) + [0x0A]
    }

    /// Parses and checks metadata.json.
    /// - Returns: the founding events, the create event first.
    /// - Throws: ``BucketError`` `.invalidContent` saying what is wrong — above all, a create event not signed by the creator the
    ///   invite names, which means the file was replaced.
    public static func decode(_ bytes: [UInt8], roomID: String, creatorFingerprint: String) throws(BucketError) -> [VerifiedEvent] {
        func invalid(_ reason: String) -> BucketError {
            BucketError(.invalidContent, "The metadata.json of room \(roomID) is not usable: \(reason).")
        }
        guard let json = try? JSONParser(maxDepth: 64, maxBytes: maxBytes).parse(bytes), let object = json.objectValue else {
            throw invalid("it is not a JSON object")
        }
        guard object["format"]?.stringValue == format else { throw invalid("its format is not \(format)") }
        guard object["room_id"]?.stringValue == roomID else { throw invalid("it names another room") }
        guard let items = object["events"]?.arrayValue, !items.isEmpty, items.count <= 16 else { throw invalid("it has no founding events") }
        var events: [VerifiedEvent] = []
        for item in items {
            do {
                events.append(try VerifiedEvent(parsing: CanonicalJSON.encode(item)))
            } catch {
                throw invalid("a founding event is invalid: \(error.message)")
            }
        }
        let create = events[0].event
        guard create.type == EventType.create, create.roomID == roomID else { throw invalid("its first event is not this room's m.room.create") }
        guard InviteCode.fingerprint(ofKey: create.senderKey) == creatorFingerprint else {
            throw BucketError(
                .invalidContent,
                "The metadata.json of room \(roomID) is signed by a key that is not the creator's named in the invite code: the file was replaced, or the code is wrong. Nothing was joined."
            )
        }
        guard events.allSatisfy({ $0.event.roomID == roomID && $0.event.senderKey == create.senderKey }) else {
            throw invalid("a founding event is not the creator's")
        }
        return events
    }
}
