import Foundation
import ParleyBucket
import ParleyCore
import ParleyStore
import ParleySync

/// What one sync of a room found: the bucket's report, and the keys shared and asked for after it.
@dynamicMemberLookup
public struct SyncReport: Sendable {
    public var bucket: BucketSyncReport
    /// Keys this device shared and asked for after reading (docs/PROTOCOL.md §14.10), written to the bucket at once.
    public var keys = KeyExchangeReport()

    public init(bucket: BucketSyncReport) { self.bucket = bucket }

    public subscript<Value>(dynamicMember path: WritableKeyPath<BucketSyncReport, Value>) -> Value {
        get { bucket[keyPath: path] }
        set { bucket[keyPath: path] = newValue }
    }
}

/// Runs a node's bucket rooms: creating and joining them, flushing the outbox into log files, and syncing other
/// devices' files into the store (docs/PROTOCOL.md §13).
public struct BucketClient: Sendable {
    public let node: Node
    public var settings: BucketSettings
    /// Opens a bucket URL; replaceable to count requests or inject faults.
    public var open: @Sendable (BucketURL) throws(BucketError) -> any ObjectStore
    /// Told of the blocks a flush writes, for a progress bar.
    public var blockProgress: BlockTransfer.Progress?

    public init(
        node: Node, settings: BucketSettings = BucketSettings(),
        open: @escaping @Sendable (BucketURL) throws(BucketError) -> any ObjectStore = { url throws(BucketError) in try url.open() }
    ) {
        self.node = node
        self.settings = settings
        self.open = open
    }

    /// The bucket transport, serving this node.
    public var transport: BucketTransport {
        BucketTransport(host: NodeTransportHost(node: node, transport: .bucket), settings: settings, open: open, blockProgress: blockProgress)
    }

    /// This device's id in log file names: the user id and a fingerprint of the device key.
    public var clientID: String { transport.clientID }

    func store(for room: BucketRoom) throws(ClientError) -> any ObjectStore {
        do {
            return try open(try BucketURL(room.bucketURL))
        } catch {
            throw ClientError(error)
        }
    }

    func requireRoom(_ roomID: String) throws -> BucketRoom {
        try node.validateRoomID(roomID)
        let transport = transport
        return BucketRoom(try call { try transport.room(roomID) })
    }

    // MARK: Creating and joining

    /// Creates `roomID` in the bucket at `url`: the room's first events, its metadata.json, and the first log file.
    ///
    /// A create that fails before metadata.json is written leaves nothing behind, here or in the bucket, so it can
    /// simply be tried again. Once metadata.json is written the room exists: if the first log file then fails, the
    /// room stays, and its events wait in the outbox for the next sync.
    ///
    /// A folder bucket that does not exist yet is created when the folder it goes in exists, or, with
    /// `createBucket`, with every missing folder of its path.
    /// - Throws: ``ClientError`` if the bucket already holds a room of that id, or cannot be written.
    public func createRoom(
        _ roomID: String, bucket url: BucketURL, name: String? = nil, encryption: RoomEncryptionOption? = nil, createBucket: Bool = false
    ) async throws -> [VerifiedEvent] {
        try node.validateRoomID(roomID)
        if case .folder(let path) = url {
            do {
                try FolderStore(root: path).createRoot(intermediateFolders: createBucket)
            } catch {
                var failure = ClientError(error)
                if error.kind == .noSuchBucket { failure.remedy = "Check the path, or add --create-bucket to create the missing folders too." }
                throw failure
            }
        }
        let objects = try bucketCall { () throws(BucketError) in try open(url) }
        if try await bucketCallAsync({ () async throws(BucketError) in try await objects.head(key: BucketLayout.metadataKey(roomID)) }) != nil {
            throw ClientError(
                .invalidArgument, "\(url.text) already holds a room \(roomID).", remedy: "Join it with an invite code, or choose another room id.")
        }
        guard let fingerprint = InviteCode.fingerprint(ofKey: node.identity.signingKeyBase64) else { throw ClientError(.io, "The device key is unreadable.") }
        if try node.store.roomIDs().contains(roomID) { throw ClientError(.invalidArgument, "Room \(roomID) already exists on this node.") }
        let events: [VerifiedEvent]
        do {
            events = try node.createRoom(roomID, name: name, encryption: encryption)
            try node.addBucketRoom(roomID: roomID, bucketURL: url.text, creatorFingerprint: fingerprint)
            try await callAsync { try await transport.writeMetadata(roomID: roomID, objects: objects) }
        } catch {
            // Nothing of the room reached the bucket, and nobody else holds its events: take them back, so that
            // the same command can simply be run again (with the same bucket fixed, or another one).
            _ = try? node.forgetRoom(roomID)
            throw error
        }
        do {
            _ = try await flush(roomID)
        } catch {
            // Its code and the bucket's kind of failure stay.
            var failure = ClientError(describing: error, home: node.home)
            failure.message = "Room \(roomID) was created in \(url.text), but its first events are not written yet: \(failure.message)"
            failure.remedy = "They wait in the outbox; `parley sync` writes them once the bucket answers."
            throw failure
        }
        return events
    }

    /// The invite code for a bucket room (its bucket as the one location, the room, the creator fingerprint), or `nil`
    /// for a local room.
    public func inviteCode(_ roomID: String) throws -> InviteCode? {
        guard let room = try node.store.bucketRoom(roomID: roomID) else { return nil }
        var code = InviteCode(roomID: roomID, creatorFingerprint: room.creatorFingerprint, locations: [.bucket(url: try BucketURL(room.bucketURL).text)])
        if let psk = try node.store.preSharedSecret(roomID: roomID) {
            if psk.fromPassphrase { code.needsPassphrase = true } else { code.preSharedSecret = psk.secret }
        }
        return code
    }

    /// Joins a bucket room from an invite code: fetches its metadata.json, checks it against the creator fingerprint,
    /// syncs the room, and joins if this device was invited.
    /// - Parameters:
    ///   - bucket: where this node reaches the room, in place of the code's locations; by default the first bucket
    ///     location this version can use (``InviteCode/bucket()``).
    ///   - passphrase: for a room whose pre-shared key comes from a passphrase (the code says so).
    /// - Throws: ``ClientError`` `.noUsableLocation` when no bucket is given and the code lists none this node can use.
    public func join(_ code: InviteCode, at bucket: BucketURL? = nil, passphrase: [UInt8]? = nil) async throws -> VerifiedEvent {
        let bucket = try bucket ?? code.bucket()
        var secret = code.preSharedSecret
        if code.needsPassphrase {
            guard let passphrase else {
                throw ClientError(
                    .invalidArgument, "Room \(code.roomID) is encrypted with a passphrase.", remedy: "Give it with --passphrase-file, or answer the prompt.")
            }
            secret = try RoomEncryptionOption.preSharedSecret(passphrase: passphrase, roomID: code.roomID)
        }
        let objects = try bucketCall { () throws(BucketError) in try open(bucket) }
        let transport = transport
        let founding = try await callAsync {
            try await transport.foundingEvents(roomID: code.roomID, creatorFingerprint: code.creatorFingerprint, objects: objects)
        }
        if let existing = try node.store.roomState(roomID: code.roomID)?.creation, existing.hash != founding[0].hash {
            throw ClientError(.invalidArgument, "This node already holds a different room \(code.roomID).")
        }
        try call { try transport.pin(founding, roomID: code.roomID) }
        try node.addBucketRoom(roomID: code.roomID, bucketURL: bucket.text, creatorFingerprint: code.creatorFingerprint)
        if let secret { try node.addPreSharedSecret(secret, roomID: code.roomID, fromPassphrase: code.needsPassphrase) }
        _ = try await sync(code.roomID)
        try node.checkPreSharedKey(code.roomID)
        let state = try node.roomState(code.roomID)
        if state.isJoinedDevice(user: node.identity.userID, key: node.identity.signingKeyBase64) {
            throw ClientError(.invalidArgument, "This device has already joined \(code.roomID).")
        }
        guard state.members[node.identity.userID]?.invitedDevices[node.identity.signingKeyBase64] != nil else {
            throw ClientError(
                .notAllowed, "\(node.identity.userID) with this device key is not invited to \(code.roomID) (as far as the bucket shows).",
                remedy:
                    "Ask a member to run `parley room invite \(code.roomID) \(node.identity.userID) --key \(node.identity.signingKeyBase64)` and flush; then try again."
            )
        }
        let event = try node.join(code.roomID)
        _ = try await flush(code.roomID)
        return event
    }

    // MARK: Flushing and syncing

    /// Writes this device's pending events in `roomID` to the bucket (``BucketTransport/flush(_:)``).
    public func flush(_ roomID: String) async throws -> FlushReport {
        try node.validateRoomID(roomID)
        let transport = transport
        do {
            let report = try await callAsync { try await transport.flush(roomID) }
            try? node.store.clearSendFailure(.bucket, roomID: roomID)
            return report
        } catch {
            // Kept, so `parley status` in another process shows the messages waiting as FAILED after a few attempts.
            let failure = ClientError(describing: error)
            try? node.store.recordSendFailure(.bucket, roomID: roomID, reason: failure.message, code: failure.code.name, nowMs: node.clock())
            throw error
        }
    }

    /// Reads the files of `roomID` this node has not seen (``BucketTransport/sync(_:holdingPublishingLock:)``), then
    /// shares and asks for keys.
    public func sync(_ roomID: String) async throws -> SyncReport {
        try await sync(roomID, holdingPublishingLock: false)
    }

    /// ``sync(_:)`` for a caller that already holds the node's publishing lock.
    func sync(_ roomID: String, holdingPublishingLock: Bool) async throws -> SyncReport {
        try node.validateRoomID(roomID)
        let transport = transport
        var report = SyncReport(bucket: try await callAsync { try await transport.sync(roomID, holdingPublishingLock: holdingPublishingLock) })
        // What was read may be a new member device to share keys with, a request to answer, or a message this device
        // cannot open: the keys go out now, so the other side reads them at its next sync. Not while the publishing
        // lock is held (it is while this device's own events are not back yet): exchanging takes it too, and a device
        // with no events of its own in the room has nothing to share yet.
        if !report.readOwnEventsBack && !holdingPublishingLock {
            await exchangeKeys(roomID, into: &report)
        }
        return report
    }

    // MARK: Archives

    /// Writes the archives of the past days of `roomID` that have none (``BucketTransport/writeArchives(_:)``), or of
    /// `date` alone (YYYY-MM-DD, UTC; ``BucketTransport/writeArchive(_:date:objects:)``), whatever an earlier attempt
    /// found. Nothing is written in a room this device is no member of, for a day that has a complete set, or twice
    /// for one day from this device.
    /// - Returns: what became of each day looked at, oldest first.
    /// - Throws: ``ClientError`` `invalid_argument` for a date that is no past day (ended more than an hour ago); the
    ///   store's or the bucket's failures.
    public func writeArchives(_ roomID: String, date: String? = nil) async throws -> [ArchiveWriteReport] {
        _ = try requireRoom(roomID)
        let transport = transport
        if let date { return [try await callAsync { try await transport.writeArchive(roomID, date: date) }] }
        return try await callAsync { try await transport.writeArchives(roomID) }
    }

    /// Shares and asks for keys after a sync (``Node/exchangeKeys(_:)``) and writes what that published; a failure is
    /// one of the sync's problems, not the sync's end.
    func exchangeKeys(_ roomID: String, into report: inout SyncReport) async {
        do {
            let lock = try await node.home.lockForPublishingAsync()
            report.keys = try withExtendedLifetime(lock) { try node.exchangeKeysHoldingLock(roomID) }
            if !report.keys.isEmpty { _ = try await flush(roomID) }
        } catch {
            report.problems.append("sharing keys: \(ClientError(describing: error).message)")
        }
    }

    /// Runs a transport call, its failure as a ``ClientError`` that keeps its code.
    /// A cancellation stays one, for the caller that cancelled.
    func callAsync<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let error as CancellationError { throw error } catch { throw ClientError(describing: error, home: node.home) }
    }

    func call<T>(_ body: () throws -> T) throws(ClientError) -> T {
        do { return try body() } catch { throw ClientError(describing: error, home: node.home) }
    }
}

/// Runs a bucket operation, turning its error into a ``ClientError``.
func bucketCall<T>(_ body: () throws(BucketError) -> T) throws(ClientError) -> T {
    do { return try body() } catch { throw ClientError(error) }
}

func bucketCallAsync<T>(_ body: () async throws(BucketError) -> T) async throws(ClientError) -> T {
    do { return try await body() } catch { throw ClientError(error) }
}

extension BucketClient {
    /// A direct message with `userID`, as `parley dm` and the local API start one.
    public struct DirectMessageStart: Sendable {
        public var roomID: String
        /// The code that lets them join a new conversation kept in a bucket (or an existing one's).
        public var inviteCode: InviteCode?
        /// Whether this node held a conversation with them already (and nothing was created).
        public var existing: Bool
    }

    /// The conversation this node holds with `userID`, or a new one (with `new`, always a new one): an encrypted room
    /// of two, created here or, with `bucket`, in that bucket, its outbox written at once so that the invite code works.
    /// - Throws: ``ClientError`` `invalid_argument` when a new one is needed and `key` (their device's signing key,
    ///   base64) is missing or not a usable key; bucket failures as ``createRoom(_:bucket:name:encryption:createBucket:)``.
    public func startDirectMessage(with userID: String, key: String?, bucket: BucketURL?, new: Bool = false) async throws -> DirectMessageStart {
        if !new, let existing = try node.directMessage(with: userID) {
            return DirectMessageStart(roomID: existing.roomID, inviteCode: try inviteCode(existing.roomID), existing: true)
        }
        guard let key else {
            throw ClientError(
                .invalidArgument, "This node holds no direct message with \(userID): starting one needs their device's signing key.",
                remedy: "Give it with --key KEY: the `signing key:` line of `parley whoami` on their device.")
        }
        // Checked before anything is written to a bucket.
        let checkedKey = try node.checkSigningKey(key, of: .user(userID))
        guard let bucket else {
            return DirectMessageStart(roomID: try node.startDirectMessage(with: userID, key: checkedKey), inviteCode: nil, existing: false)
        }
        let roomID = Node.newDirectMessageRoomID()
        _ = try await createRoom(roomID, bucket: bucket, encryption: Node.directMessageEncryption)
        _ = try node.startDirectMessage(with: userID, key: checkedKey, roomID: roomID)
        _ = try await flush(roomID)
        return DirectMessageStart(roomID: roomID, inviteCode: try inviteCode(roomID), existing: false)
    }
}

extension BucketClient {
    /// Where the blocks of a room's files are fetched: its bucket, else its relay, else its peers through the running
    /// node's peer socket; `nil` for a room of none (``Node/withPeerBlockSource(_:_:)`` opens a socket of its own).
    public func blockSource(_ roomID: String) throws -> (any BlockSource)? {
        let transport = transport
        guard let room = try transport.host.room(roomID) else { return try RelayClient(node: node).blockSource(roomID) ?? node.peerBlockSource(roomID) }
        return BucketBlockSource(transport: transport, roomID: roomID, objects: try bucketCall { () throws(BucketError) in try transport.objects(for: room) })
    }
}

/// A bucket room's blocks (`rooms/{room}/blocks/{id}`).
struct BucketBlockSource: BlockSource {
    let transport: BucketTransport
    let roomID: String
    let objects: any ObjectStore

    func fetch(_ block: BlockRef) async throws -> [UInt8] {
        do {
            return try await transport.block(block, roomID: roomID, objects: objects)
        } catch  where error.kind == .notFound {
            throw ClientError(.notFound, "\(objects.location) holds no block \(block.id.hex.prefix(16))…")
        } catch {
            throw ClientError(error)
        }
    }
}
