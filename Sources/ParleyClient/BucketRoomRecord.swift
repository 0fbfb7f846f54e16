import ParleyCore
import ParleyStore

/// Where a bucket room is and whose it is: what a key backup and the home's record beside the store
/// (`bucket-rooms.json`) carry of it, as `{"bucket":URL,"creator":FINGERPRINT,"room_id":ROOM}`.
public struct BucketRoomRecord: Sendable, Equatable {
    public var roomID: String
    public var bucketURL: String
    /// Lowercase hex SHA-256 of the creator's signing key (docs/PROTOCOL.md §13.5).
    public var creatorFingerprint: String

    public init(roomID: String, bucketURL: String, creatorFingerprint: String) {
        self.roomID = roomID
        self.bucketURL = bucketURL
        self.creatorFingerprint = creatorFingerprint
    }

    init(_ room: BucketRoom) {
        self.init(roomID: room.roomID, bucketURL: room.bucketURL, creatorFingerprint: room.creatorFingerprint)
    }

    /// Reads the JSON form; `nil` when a member is missing, or the room id or fingerprint is not valid.
    public init?(json: JSONValue) {
        guard let object = json.objectValue, let roomID = object["room_id"]?.stringValue, Identifier.problem(with: roomID, kind: .room) == nil,
            let bucket = object["bucket"]?.stringValue, let creator = object["creator"]?.stringValue, Hex.isLowercaseHex(creator, byteCount: 32)
        else { return nil }
        self.init(roomID: roomID, bucketURL: bucket, creatorFingerprint: creator)
    }

    public var json: JSONValue {
        ["room_id": .string(roomID), "bucket": .string(bucketURL), "creator": .string(creatorFingerprint)]
    }
}
