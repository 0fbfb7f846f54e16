/// A room a link code tells a new device to join (docs/PROTOCOL.md §14.8): which room, whose, and where it can be
/// fetched, as an invite code says them.
///
/// JSON form: `{"creator":FINGERPRINT,"locations":[LOCATION…],"room_id":ROOM}`; link codes of version 2 carried
/// `{"bucket":URL,"creator":FINGERPRINT,"room_id":ROOM}` instead (``init(versionTwoJSON:)``).
public struct LinkedRoom: Sendable, Equatable {
    public var roomID: String
    /// Lowercase hex SHA-256 of the creator's raw Ed25519 public key.
    public var creatorFingerprint: String
    /// Where the room can be fetched, in the order the writer prefers: 1 to ``RoomLocation/maxCount`` of them.
    public var locations: [RoomLocation]

    public init(roomID: String, creatorFingerprint: String, locations: [RoomLocation]) {
        self.roomID = roomID
        self.creatorFingerprint = creatorFingerprint
        self.locations = locations
    }

    /// Reads one entry of a link code's `rooms`. Members it does not know are ignored.
    /// - Throws: ``CodeError`` naming the first rule the entry breaks.
    public init(json value: JSONValue) throws(CodeError) {
        guard case .object(let object) = value else { throw CodeError(.invalidMember, "A linked room is not an object.") }
        (roomID, creatorFingerprint) = try InviteCode.roomAndCreator(object)
        locations = try RoomLocation.list(json: object["locations"])
    }

    /// Reads one entry of a version 2 link code's `bucket_rooms`, as a room whose one location is its bucket.
    /// - Throws: ``CodeError`` naming the first rule the entry breaks.
    public init(versionTwoJSON value: JSONValue) throws(CodeError) {
        guard case .object(let object) = value else { throw CodeError(.invalidMember, "A linked bucket room is not an object.") }
        (roomID, creatorFingerprint) = try InviteCode.roomAndCreator(object)
        locations = [try InviteCode.versionOneBucket(object)]
    }

    /// The JSON form a link code of the current version carries.
    public var json: JSONValue {
        precondition((1...RoomLocation.maxCount).contains(locations.count), "a linked room lists 1 to \(RoomLocation.maxCount) locations")
        return ["creator": .string(creatorFingerprint), "locations": .array(locations.map(\.json)), "room_id": .string(roomID)]
    }
}
