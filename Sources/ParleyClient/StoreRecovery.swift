import Foundation
import ParleyBucket
import ParleyCore
import ParleyStore

extension ParleyHome {
    public var bucketRoomsPath: String { url.appendingPathComponent("bucket-rooms.json").path }

    /// The bucket rooms recorded beside the store; empty when there is no readable record. Entries that are not
    /// valid are skipped: the record is only a pointer to where events can be fetched, and those are verified.
    public func recordedBucketRooms() -> [BucketRoomRecord] {
        guard let data = FileManager.default.contents(atPath: bucketRoomsPath), data.count <= 1 << 20,
            case .array(let entries)? = try? JSONParser().parse(Array(data.prefix { $0 != 0x0A }))
        else { return [] }
        return entries.compactMap(BucketRoomRecord.init(json:))
    }

    /// Replaces the record (a new file renamed over the old one, so a crash leaves one or the other).
    func recordBucketRooms(_ rooms: [BucketRoomRecord]) throws {
        let json: JSONValue = .array(rooms.map(\.json))
        try replaceFile(atPath: bucketRoomsPath, contents: CanonicalJSON.encode(json) + [0x0A], mode: 0o600)
    }

    /// The recorded bucket rooms in words, for the messages about a damaged or missing store.
    var recordedBucketRoomsText: String {
        let rooms = recordedBucketRooms()
        guard !rooms.isEmpty else { return "" }
        return rooms.map { "\($0.roomID) (\($0.bucketURL))" }.joined(separator: ", ")
    }
}

extension ClientError {
    /// The store file cannot be read as a database: say so, where its events can be fetched again, and how.
    public static func damagedStore(home: ParleyHome, detail: String) -> ClientError {
        let rooms = home.recordedBucketRoomsText
        let store = home.storePath
        return ClientError(
            .storeDamaged, detail,
            remedy: (rooms.isEmpty
                ? "This home records no bucket rooms (\(home.bucketRoomsPath)); a key backup (`parley backup import`) brings them back, and an invite code lets you join again. "
                : "Its events can be fetched again from this node's bucket rooms: \(rooms). ")
                + "Move the damaged file aside (`mv \(store) \(store).damaged`, with its -wal and -shm files if there are any), then run `parley sync --new-store`. Events of rooms that live in no bucket come back only by `parley import` from another member."
        )
    }

    /// The home has a device key but no store: refuse, since signing with an empty store could reuse a seq.
    static func missingStore(home: ParleyHome, userID: String) -> ClientError {
        let rooms = home.recordedBucketRoomsText
        return ClientError(
            .storeMissing,
            "\(home.path) holds the device key of \(userID) but no store (\(home.storePath) is missing). A device that signs with an empty store could sign an event number it already used, and fork its own chain.",
            remedy:
                "If the store was moved or deleted by mistake, put it back. To start again with an empty store, run `parley sync --new-store`: it fetches this device's events "
                + (rooms.isEmpty
                    ? "from the bucket rooms it knows of; this home records none (\(home.bucketRoomsPath)), so import a key backup first (`parley backup import FILE`) to bring them back. "
                    : "from its bucket rooms first: \(rooms). ")
                + "Events of rooms that live in no bucket come back only by `parley import` from another member.")
    }
}

extension Node {
    /// Records that `roomID` lives in the bucket at `bucketURL`, in the store and in the home's record beside it.
    func addBucketRoom(roomID: String, bucketURL: String, creatorFingerprint: String) throws {
        try store.addBucketRoom(roomID: roomID, bucketURL: bucketURL, creatorFingerprint: creatorFingerprint)
        try recordBucketRooms()
    }

    /// Adds the store's bucket rooms to the home's record (homes made before the record existed get it this way).
    /// - Returns: rooms the record holds that the store does not: lost with an earlier store, not restored yet.
    @discardableResult
    public func recordBucketRooms() throws -> [BucketRoomRecord] {
        let recorded = home.recordedBucketRooms()
        let stored = try store.bucketRooms().map(BucketRoomRecord.init)
        let storedIDs = Set(stored.map(\.roomID))
        let missing = recorded.filter { !storedIDs.contains($0.roomID) }
        let merged = (missing + stored).sorted { $0.roomID < $1.roomID }
        if merged != recorded || !FileManager.default.fileExists(atPath: home.bucketRoomsPath) { try home.recordBucketRooms(merged) }
        return missing
    }

    /// Removes a room from this node: its events, state, keys, bucket record and outbox (``EventStore/forgetRoom(roomID:)``).
    /// Publishes nothing: the other members still count this device as a member until it leaves.
    /// - Returns: how many events were removed.
    /// - Throws: ``ClientError`` `.unknownRoom` when the node holds nothing of the room.
    @discardableResult
    public func forgetRoom(_ roomID: String) throws -> Int {
        try validateRoomID(roomID)
        return try home.withLock {
            guard try store.roomIDs().contains(roomID) || store.bucketRoom(roomID: roomID) != nil else {
                throw ClientError(.unknownRoom, "This node holds no room \(roomID).", remedy: "`parley room list` shows the rooms it holds.")
            }
            let removed = try store.forgetRoom(roomID: roomID)
            completeEpochs.withLock { _ = $0.removeValue(forKey: roomID) }
            try home.recordBucketRooms(home.recordedBucketRooms().filter { $0.roomID != roomID })
            return removed
        }
    }
}

extension BucketClient {
    /// Restores into this node's store the bucket rooms the home records and the store lacks (a store started again
    /// empty: `parley sync --new-store`). Each is registered with its founding events from metadata.json (checked
    /// against the creator fingerprint, as a join checks them) and synced; this device's events read back count as
    /// written, so the outbox does not write them again. All under the node's publishing lock: the founding events make the room one this device
    /// could sign in, and nothing may be until its own events are back, so no seq is signed twice. A room that cannot be
    /// restored now is removed from the store again (it stays recorded) and nothing can be signed in it.
    /// - Returns: per room restored or tried, what went wrong, if anything.
    public func restoreRecordedRooms() async throws -> [(roomID: String, problem: String?)] {
        try await node.home.withLockAsync {
            var results: [(roomID: String, problem: String?)] = []
            let held = Set(try node.store.roomIDs())
            for room in node.home.recordedBucketRooms() where try node.store.bucketRoom(roomID: room.roomID) == nil && !held.contains(room.roomID) {
                do {
                    let objects = try bucketCall { () throws(BucketError) in try open(try BucketURL(room.bucketURL)) }
                    let transport = transport
                    try await callAsync {
                        try transport.pin(
                            try await transport.foundingEvents(roomID: room.roomID, creatorFingerprint: room.creatorFingerprint, objects: objects),
                            roomID: room.roomID)
                    }
                    try node.store.addBucketRoom(roomID: room.roomID, bucketURL: room.bucketURL, creatorFingerprint: room.creatorFingerprint)
                    _ = try await sync(room.roomID, holdingPublishingLock: true)
                    // The founding events were this device's own before the sync read the rest back.
                    try node.store.markInBucket(roomID: room.roomID, senderKey: node.identity.signingKeyBase64, nowMs: node.clock())
                    results.append((room.roomID, nil))
                } catch {
                    try node.store.forgetRoom(roomID: room.roomID)
                    results.append((room.roomID, ClientError(describing: error).message))
                }
            }
            return results
        }
    }
}
