import ParleyBucket
import ParleyCore
import ParleyStore
import ParleySync

/// A room that lives in a bucket, with this node's progress through it.
public struct BucketRoom: Sendable, Equatable {
    public var roomID: String
    public var bucketURL: String
    /// Lowercase hex SHA-256 of the room creator's signing key: a joiner's pin against a replaced metadata.json.
    public var creatorFingerprint: String
    /// How far the bucket's listings have gone (the transport's cursor in the store).
    public var progress: BucketPoller.Progress

    init(_ room: TransportRoom) {
        roomID = room.roomID
        bucketURL = room.location
        creatorFingerprint = room.creatorFingerprint
        progress = BucketPoller.Progress(cursor: room.cursor)
    }
}

/// The bucket transport's rows of the store's transport tables.
extension EventStore {
    func bucketRoom(roomID: String) throws -> BucketRoom? { try transportRoom(.bucket, roomID: roomID).map(BucketRoom.init) }

    func bucketRooms() throws -> [BucketRoom] { try transportRooms(.bucket).map(BucketRoom.init) }

    func addBucketRoom(roomID: String, bucketURL: String, creatorFingerprint: String) throws {
        try addTransportRoom(.bucket, roomID: roomID, location: bucketURL, creatorFingerprint: creatorFingerprint)
    }

    func outboxStatus(roomID: String, senderKey: String) throws -> OutboxStatus { try outboxStatus(.bucket, roomID: roomID, senderKey: senderKey) }

    func pendingEventIDs(roomID: String, senderKey: String, limit: Int) throws -> [String] {
        try pendingEventIDs(.bucket, roomID: roomID, senderKey: senderKey, limit: limit)
    }

    func markInBucket(roomID: String, senderKey: String, nowMs: Int64) throws {
        try markSent(.bucket, roomID: roomID, senderKey: senderKey, nowMs: nowMs)
    }
}

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
