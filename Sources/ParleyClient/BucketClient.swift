import Foundation
import ParleyBucket
import ParleyCore
import ParleyStore
import ParleySync

/// Tunables of the bucket transport.
public struct BucketSettings: Sendable {
    /// Most events in one log file.
    public var maxEventsPerFile = 10_000
    /// Most bytes in one log file (before compression).
    public var maxFileBytes = 8 << 20
    /// Objects larger than this are not downloaded (after decompression, too).
    public var maxObjectBytes = 64 << 20
    /// Lines read of one object; the rest are not. Ten times what a writer puts in a file (`maxEventsPerFile`), so
    /// only a hostile object meets it.
    public var maxLinesPerObject = 100_000
    /// Write `.jsonl.gz` files.
    public var gzip = false
    /// Object Lock retention for S3 writes.
    public var retention: Retention?
    /// How far before the newest file seen an incremental listing starts: covers writers that buffer, clocks that
    /// differ, and uploads that take a while.
    public var latenessMs: Int64 = 120_000
    /// A writer whose batch starts this much before its upload also writes a hint, so readers whose listing
    /// window has passed that time still find it.
    public var hintAfterMs: Int64 = 30_000
    /// While a chain has a gap, list the whole room at most this often, to find a file that arrived late
    /// without a hint.
    public var gapListingEveryMs: Int64 = 60_000
    /// Objects fetched at once.
    public var parallelDownloads = 4
    /// Most bytes (as listed) of the files a sync downloads, verifies and stores together; with the next window
    /// downloading meanwhile, about twice this is held at once, however many files a room has.
    public var windowBytes: Int64 = 1 << 20
    /// Most files stored together.
    public var windowFiles = 1_000
    /// A file whose reading keeps failing for a transient reason (a timeout, a 5xx, an answer larger than its listed
    /// size) is retried, less and less often, for this long; then it is recorded as read with the problem.
    public var readGiveUpMs: Int64 = 86_400_000

    public init() {}

    /// The settings a flush's ``BucketWriter`` decides with.
    var writer: BucketWriter.Settings {
        var settings = BucketWriter.Settings()
        settings.maxEventsPerFile = maxEventsPerFile
        settings.maxFileBytes = maxFileBytes
        settings.gzip = gzip
        settings.hintAfterMs = hintAfterMs
        return settings
    }

    /// The settings a sync's ``BucketPoller`` decides with.
    var poller: BucketPoller.Settings {
        var settings = BucketPoller.Settings()
        settings.latenessMs = latenessMs
        settings.gapListingEveryMs = gapListingEveryMs
        settings.maxObjectBytes = Int64(maxObjectBytes)
        settings.readGiveUpMs = readGiveUpMs
        return settings
    }
}

/// What one flush wrote.
public struct FlushReport: Sendable {
    public var roomID: String
    public var files: [String] = []
    public var events = 0
}

/// What one sync of a room found.
public struct SyncReport: Sendable {
    public var roomID: String
    /// Objects read this time.
    public var filesRead = 0
    /// Events newly accepted (including earlier ones a new event released), in order.
    public var accepted: [String] = []
    /// Events that were already here.
    public var duplicates = 0
    /// Events waiting for a predecessor (their chain has a gap).
    public var heldBack = 0
    /// Faults, each naming its object: bad events, lying names, unreadable objects.
    public var problems: [String] = []
    /// Objects ignored because they are not log files.
    public var ignored: [String] = []
    /// Findings that are no fault, each naming its object and line: events dated far ahead of this device's clock.
    public var warnings: [String] = []
    /// Whether the whole room was listed (first sync, or looking for a gap's events).
    public var listedEverything = false
    /// Keys this device shared and asked for after reading (docs/PROTOCOL.md §14.10), written to the bucket at once.
    public var keys = KeyExchangeReport()
}

/// Runs a node's bucket rooms: creating and joining them, flushing the outbox into log files, and syncing other
/// devices' files into the store (docs/PROTOCOL.md §13).
public struct BucketClient: Sendable {
    public let node: Node
    public var settings: BucketSettings
    /// Opens a bucket URL; replaceable to count requests or inject faults.
    public var open: @Sendable (BucketURL) throws(BucketError) -> any ObjectStore

    public init(
        node: Node, settings: BucketSettings = BucketSettings(),
        open: @escaping @Sendable (BucketURL) throws(BucketError) -> any ObjectStore = { url throws(BucketError) in try url.open() }
    ) {
        self.node = node
        self.settings = settings
        self.open = open
    }

    /// This device's id in log file names: the user id and a fingerprint of the device key.
    public var clientID: String {
        let fingerprint = InviteCode.fingerprint(ofKey: node.identity.signingKeyBase64) ?? ""
        return "\(node.identity.userID.prefix(40)).\(fingerprint.prefix(12))"
    }

    func store(for room: BucketRoom) throws(ClientError) -> any ObjectStore {
        do {
            return try open(try BucketURL(room.bucketURL))
        } catch {
            throw ClientError(error)
        }
    }

    func requireRoom(_ roomID: String) throws -> BucketRoom {
        try node.validateRoomID(roomID)
        guard let room = try node.store.bucketRoom(roomID: roomID) else {
            throw ClientError(
                .unknownRoom, "Room \(roomID) does not live in a bucket on this node.", remedy: "Create it with --bucket, or join it with an invite code.")
        }
        return room
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
            try await writeMetadata(roomID: roomID, objects: objects)
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

    /// Writes the room's metadata.json (create-only) from its create event and the creator's join.
    func writeMetadata(roomID: String, objects: any ObjectStore) async throws {
        guard let state = try node.store.roomState(roomID: roomID), let creation = state.creation,
            creation.creatorKey == node.identity.signingKeyBase64
        else { return }
        var events: [VerifiedEvent] = []
        try node.store.forEachEvent(roomID: roomID) { wire in
            guard events.count < 2, let event = try? VerifiedEvent(parsing: wire), event.event.senderKey == creation.creatorKey else { return }
            if event.event.type == EventType.create || (event.event.type == EventType.member && events.count == 1) { events.append(event) }
        }
        let bytes = RoomMetadata.encode(roomID: roomID, events: events)
        let outcome = try await bucketCallAsync { () async throws(BucketError) in
            try await objects.putIfAbsent(key: BucketLayout.metadataKey(roomID), bytes: bytes, retention: settings.retention)
        }
        if outcome == .conflict {
            throw ClientError(.bucket, "\(objects.location) already holds another metadata.json for room \(roomID).")
        }
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
        let founding = try await foundingEvents(roomID: code.roomID, creatorFingerprint: code.creatorFingerprint, objects: objects)
        if let existing = try node.store.roomState(roomID: code.roomID)?.creation, existing.hash != founding[0].hash {
            throw ClientError(.invalidArgument, "This node already holds a different room \(code.roomID).")
        }
        try pin(founding)
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

    /// The room's founding events from its metadata.json, checked against the creator fingerprint (docs/PROTOCOL.md
    /// §13.2).
    /// - Throws: ``ClientError`` when the bucket holds no such room, or the file was replaced or damaged.
    func foundingEvents(roomID: String, creatorFingerprint: String, objects: any ObjectStore) async throws -> [VerifiedEvent] {
        let metadata: [UInt8]
        do {
            metadata = try await objects.get(key: BucketLayout.metadataKey(roomID), maxBytes: RoomMetadata.maxBytes)
        } catch  where error.kind == .notFound {
            throw ClientError(
                .unknownRoom, "\(objects.location) holds no room \(roomID).", remedy: "Check the invite code; the creator may not have flushed yet.")
        } catch {
            throw ClientError(error)
        }
        return try RoomMetadata.decode(metadata, roomID: roomID, creatorFingerprint: creatorFingerprint)
    }

    /// Stores the founding events before anything from the logs: the store pins this create, so a create planted in
    /// the logs, however early it claims to be, is refused.
    func pin(_ founding: [VerifiedEvent]) throws {
        let report = try node.store.ingest(events: founding, receivedMs: node.clock())
        guard report.outcomes.first?.isAccepted == true else {
            throw ClientError(.bucket, "The room's founding event was refused: \(report.outcomes[0]).")
        }
    }

    // MARK: Flushing (the buffer manager)

    /// Writes this device's pending events in `roomID` to the bucket: first any file assigned earlier but not
    /// confirmed (a failed attempt or a killed process: the same bytes under the same name), then new files.
    /// Events become IN_TRANSIT only once the bucket confirms their file.
    public func flush(_ roomID: String) async throws -> FlushReport {
        let room = try requireRoom(roomID)
        let objects = try store(for: room)
        var report = FlushReport(roomID: roomID)
        if try node.store.outboxStatus(roomID: roomID, senderKey: node.identity.signingKeyBase64).inTransit == 0 {
            // Nothing confirmed yet: make sure the metadata a joiner needs exists (its first write may have failed).
            try await writeMetadata(roomID: roomID, objects: objects)
        }
        var uploads = try node.store.unconfirmedOutbox(.bucket, roomID: roomID)
        let clientID = clientID
        let writing = settings.writer
        while true {
            if uploads.isEmpty {
                guard
                    let next = try node.store.claimOutbox(
                        .bucket, roomID: roomID, senderKey: node.identity.signingKeyBase64, limit: writing.maxEventsPerFile, createdMs: node.clock(),
                        assemble: { pending, isTaken in
                            try BucketWriter.nextFile(of: pending, roomID: roomID, clientID: clientID, settings: writing, isTaken: isTaken)
                                .map { ($0.key, $0.events, $0.content) }
                        })
                else { break }
                uploads = [next]
            }
            let upload = uploads.removeFirst()
            report.files.append(try await write(upload, to: objects))
            report.events += Int(upload.lastSeq - upload.firstSeq + 1)
        }
        return report
    }

    /// Writes one upload as its ``BucketWriter`` decides (renaming it if another object has its name); returns the key
    /// it was written under.
    func write(_ upload: OutboxFile, to objects: any ObjectStore) async throws -> String {
        var writer = BucketWriter(
            key: upload.name, roomID: upload.roomID, firstTimestampMs: upload.firstTimestampMs, clientID: clientID, settings: settings.writer)
        let body = upload.name.hasSuffix(".gz") ? Gzip.compress(upload.content) : upload.content
        var action = writer.start()
        while true {
            switch action {
            case .write(let key):
                let outcome = try await bucketCallAsync { () async throws(BucketError) in
                    try await objects.putIfAbsent(key: key, bytes: body, retention: settings.retention)
                }
                action = writer.written(outcome, now: node.clock())
            case .rename(let key):
                action = writer.renamed(try node.store.renameOutbox(.bucket, id: upload.id, roomID: upload.roomID, name: key))
            case .writeHint(let key, let hint):
                _ = try await bucketCallAsync { () async throws(BucketError) in try await objects.putIfAbsent(key: key, bytes: hint, retention: nil) }
                action = writer.hintWritten()
            case .confirm(let key):
                // Our own file: recorded as seen, so a sync need not read it back.
                try node.store.confirmOutbox(
                    .bucket, id: upload.id, roomID: upload.roomID,
                    object: ReceivedObject(name: key, size: Int64(body.count), events: Int(upload.lastSeq - upload.firstSeq + 1), problem: nil),
                    confirmedMs: node.clock())
                if node.feed.subscriberCount > 0 {
                    let sent = try node.store.eventIDs(roomID: upload.roomID, senderKey: node.identity.signingKeyBase64, seqs: upload.firstSeq...upload.lastSeq)
                    node.feed.post(.sent(roomID: upload.roomID, eventIDs: sent, transport: TransportName.bucket.rawValue))
                }
                return key
            case .fail(let message):
                throw ClientError(.bucket, "\(message) (in \(objects.location))")
            }
        }
    }

    // MARK: Syncing (the sync manager)

    /// Reads the files of `roomID` this node has not seen: new ones after its cursor, late ones that hints point
    /// to, and (while a chain has a gap, at most every `gapListingEveryMs`) everything.
    ///
    /// A device that holds none of its own events in the room (a restored backup, a store started again) reads them
    /// back holding the node's publishing lock, so nothing is signed in the room before they are in (a seq signed
    /// twice would fork its chain), and they then count as written: the outbox does not write them again.
    public func sync(_ roomID: String) async throws -> SyncReport {
        try await sync(roomID, holdingPublishingLock: false)
    }

    /// ``sync(_:)`` for a caller that already holds the node's publishing lock.
    func sync(_ roomID: String, holdingPublishingLock: Bool) async throws -> SyncReport {
        let room = try requireRoom(roomID)
        let ownEventsMissing = try node.store.chainHead(roomID: roomID, senderKey: node.identity.signingKeyBase64) == nil
        let lock = ownEventsMissing && !holdingPublishingLock ? try await node.home.lockForPublishingAsync() : nil
        defer { withExtendedLifetime(lock) {} }
        let objects = try store(for: room)
        if try node.store.roomState(roomID: roomID)?.creation == nil {
            // A room this node did not join with an invite code (a linked device, a restored backup) is pinned the same
            // way before its logs are read.
            try pin(try await foundingEvents(roomID: roomID, creatorFingerprint: room.creatorFingerprint, objects: objects))
        }
        let now = node.clock()
        var report = SyncReport(roomID: roomID)
        var poller = BucketPoller(
            roomID: roomID, settings: settings.poller,
            progress: room.progress,
            hasGap: try node.store.heldBackCount(roomID: roomID) > 0, now: now)
        report.listedEverything = poller.listsEverything
        var action = poller.start()
        var candidates: [ObjectInfo]
        driving: while true {
            switch action {
            case .list(let logsAfter, let hintsAfter):
                let logs = try await bucketCallAsync { () async throws(BucketError) in
                    try await objects.listAll(prefix: BucketLayout.logsPrefix(roomID), startAfter: logsAfter)
                }
                let hints = try await bucketCallAsync { () async throws(BucketError) in
                    try await objects.listAll(prefix: BucketLayout.hintsPrefix(roomID), startAfter: hintsAfter)
                }
                action = poller.listed(logs: logs, hints: hints)
            case .recall(let keys):
                let failures = try node.store.readFailures(.bucket, roomID: roomID)
                action = poller.recalled(seen: try node.store.receivedNames(.bucket, roomID: roomID, among: keys), failures: failures)
            case .readHint(let key):
                action = poller.hintRead(
                    await bucketResult { () async throws(BucketError) in try await objects.get(key: key, maxBytes: BucketPoller.hintMaxBytes) })
            case .look(let key):
                action = poller.looked(await bucketResult { () async throws(BucketError) in try await objects.head(key: key) })
            case .read(let objectsToRead):
                candidates = objectsToRead
                break driving
            }
        }

        // A pipeline: while this thread stores one window of files, the next window downloads and verifies on the
        // other cores. A window is bounded by bytes, not files, and is stored in one transaction and recorded in
        // another, so a room of many small files costs no more per event than one large file.
        let windows = BucketClient.windows(candidates, maxFiles: settings.windowFiles, maxBytes: settings.windowBytes)
        let admitting = poller
        var next = windows.first.map { window in Task { await prepare(window, poller: admitting, objects: objects) } }
        for (position, window) in windows.enumerated() {
            let prepared = await next!.value
            next = position + 1 < windows.count ? Task { [windows] in await prepare(windows[position + 1], poller: admitting, objects: objects) } : nil
            var records: [ReceivedObject] = []
            var staged: [(file: StagedFile, record: Int)] = []
            for (object, result) in zip(window, prepared) {
                var record = ReceivedObject(name: object.key, size: object.size, events: 0, problem: nil)
                switch result {
                case .ignored(let reason):
                    record.problem = "ignored: \(reason)"
                    poller.fileIgnored(object, reason: reason)
                case .failed(let error):
                    switch poller.fileFailed(object, error: error) {
                    case .retry(let failure):
                        // Not recorded as seen: a later sync tries again.
                        try node.store.saveReadFailure(.bucket, roomID: roomID, name: object.key, failure)
                        continue
                    case .record(let problem):
                        record.problem = problem
                    }
                case .verified(let file):
                    switch try stage(file, key: object.key, roomID: roomID, receivedMs: now) {
                    case .notEvents(let problems):
                        record.problem = problems.joined(separator: "; ")
                        report.problems += problems.map { "\(object.key): \($0)" }
                    case .staged(let file):
                        staged.append((file, records.count))
                    }
                    poller.fileRead(object, name: file.name)
                }
                report.filesRead += 1
                records.append(record)
            }
            if !staged.isEmpty {
                try store(staged, roomID: roomID, receivedMs: now, records: &records, into: &report)
            }
            // Once the window's events are committed: a sync killed before this reads its files again.
            try node.store.recordReceived(.bucket, roomID: roomID, records, seenMs: now)
        }
        let outcome = poller.finish()
        // Hints are recorded once the files they led to are stored, so a sync killed before then follows them again.
        for hint in outcome.hints {
            try node.store.recordReceived(
                .bucket, roomID: roomID, ReceivedObject(name: hint.key, size: hint.size, events: 0, problem: hint.problem), seenMs: now)
        }
        for key in outcome.vanished {
            try node.store.recordReceived(
                .bucket, roomID: roomID, ReceivedObject(name: key, size: 0, events: 0, problem: "no longer in the bucket"), seenMs: now)
        }
        report.problems = poller.problems + report.problems
        report.ignored = poller.ignored
        try node.store.updateCursor(.bucket, roomID: roomID) { BucketPoller.Progress(cursor: $0).merged(with: outcome.progress).cursor }
        if ownEventsMissing { try node.store.markInBucket(roomID: roomID, senderKey: node.identity.signingKeyBase64, nowMs: now) }
        if !report.accepted.isEmpty || !report.problems.isEmpty {
            try? node.feed.catchUp()
            node.feed.post(.synced(roomID: roomID, transport: TransportName.bucket.rawValue, accepted: report.accepted.count, problems: report.problems.count))
        }
        // What was read may be a new member device to share keys with, a request to answer, or a message this device
        // cannot open: the keys go out now, so the other side reads them at its next sync. Not while this sync holds
        // the publishing lock (it does while this device's own events are not back yet): exchanging takes it too,
        // and a device with no events of its own in the room has nothing to share yet.
        if lock == nil && !holdingPublishingLock {
            await exchangeKeys(roomID, into: &report)
        }
        return report
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

    /// One downloaded file, split into lines and verified, ready to store.
    struct VerifiedFile: Sendable {
        var name: LogFileName
        var content: ObjectLines
    }

    enum Prepared: Sendable {
        case ignored(String)
        case failed(BucketError)
        case verified(VerifiedFile)
    }

    /// The candidates in windows of at most `maxFiles` files and `maxBytes` listed bytes (a larger file alone), in
    /// order.
    static func windows(_ objects: [ObjectInfo], maxFiles: Int, maxBytes: Int64) -> [[ObjectInfo]] {
        var windows: [[ObjectInfo]] = []
        var window: [ObjectInfo] = []
        var bytes: Int64 = 0
        for object in objects {
            if !window.isEmpty && (window.count >= maxFiles || bytes + object.size > maxBytes) {
                windows.append(window)
                (window, bytes) = ([], 0)
            }
            window.append(object)
            bytes += object.size
        }
        if !window.isEmpty { windows.append(window) }
        return windows
    }

    /// Downloads a window of objects, ``BucketSettings/parallelDownloads`` at a time, then splits and verifies them
    /// (on every core); results in input order.
    func prepare(_ window: [ObjectInfo], poller: BucketPoller, objects: any ObjectStore) async -> [Prepared] {
        let settings = settings
        @Sendable func download(_ position: Int, _ object: ObjectInfo) async -> (Int, Prepared) {
            let name: LogFileName
            switch poller.admission(of: object) {
            case .ignore(let reason): return (position, .ignored(reason))
            case .fail(let error): return (position, .failed(error))
            case .download(let parsed): name = parsed
            }
            do {
                let bytes: [UInt8]
                do {
                    bytes = try await objects.get(key: object.key, maxBytes: settings.maxObjectBytes)
                } catch {
                    guard error.kind == .tooLarge else { throw error }
                    // Listed within the limit, answered beyond it: a misbehaving server or a file still being
                    // written into a synced folder. Tried again on the next sync rather than given up on.
                    throw BucketError(
                        .transient,
                        "listed as \(object.size) bytes, but the answer held more than the limit of \(settings.maxObjectBytes); not read, tried again later"
                    )
                }
                let content = try ObjectLines(reading: bytes, maxLines: settings.maxLinesPerObject, maxBytes: settings.maxObjectBytes)
                return (position, .verified(VerifiedFile(name: name, content: content)))
            } catch {
                return (position, .failed(error as? BucketError ?? BucketError(.io, "\(error)")))
            }
        }
        return await withTaskGroup(of: (Int, Prepared).self) { group in
            var waiting = window.enumerated().makeIterator()
            for _ in 0..<max(1, settings.parallelDownloads) {
                guard let (position, object) = waiting.next() else { break }
                group.addTask { await download(position, object) }
            }
            var results = [Prepared?](repeating: nil, count: window.count)
            for await (position, result) in group {
                results[position] = result
                if let (position, object) = waiting.next() { group.addTask { await download(position, object) } }
            }
            // All the window's lines verified in one parallel pass.
            var files: [VerifiedFile] = []
            var positions: [Int] = []
            for (position, result) in results.enumerated() {
                if case .verified(let file)? = result {
                    files.append(file)
                    positions.append(position)
                }
            }
            var contents = files.map(\.content)
            ObjectLines.verifyRest(&contents)
            for (index, position) in positions.enumerated() {
                files[index].content = contents[index]
                results[position] = .verified(files[index])
            }
            return results.map { $0! }
        }
    }

    /// One file's lines on their way to the store: this room's events, and the first invalid lines (the store logs
    /// those; the rest are only counted), each input line's position among them, and what the lines told of the file.
    struct StagedFile {
        var key: String
        var file: VerifiedFile
        var lines: [[UInt8]] = []
        var verified: [Result<VerifiedEvent, EventError>] = []
        var storedAt: [Int?]
        var earliest = Int64.max
        var latest = Int64.min
        var senders = Set<String>()
        var warnings = LineProblems()
        var fileProblems: [String] = []
    }

    enum Staging {
        /// The file is not Parley events: its problems; nothing of it goes to the store.
        case notEvents([String])
        case staged(StagedFile)
    }

    /// Picks what of one file goes to the store (``store(_:roomID:receivedMs:records:into:)`` stores it).
    func stage(_ file: VerifiedFile, key: String, roomID: String, receivedMs: Int64) throws -> Staging {
        let content = file.content
        var staged = StagedFile(key: key, file: file, storedAt: [Int?](repeating: nil, count: content.lines.count))
        if !file.name.isDateConsistent { staged.fileProblems.append("the name's folder \(file.name.dateFolder) is not the date of its start time") }
        if content.screen.isNotEvents {
            let problem = "not Parley events: \(content.screen.verdict); not read further"
            try node.store.logRejection(roomID: roomID, reason: "\(key): \(problem)", receivedMs: receivedMs)
            return .notEvents([problem] + staged.fileProblems)
        }
        var invalid = 0
        for index in content.lines.indices {
            switch content.verified[index] {
            case .failure:
                invalid += 1
                if invalid > InputBounds.loggedInvalidLines { continue }
            case .success(let event):
                let envelope = event.event
                // A room's files give only that room's events: a bucket must never bring another room into a node.
                guard envelope.roomID == roomID else { continue }
                if let note = aheadOfClock(timestampMs: envelope.timestampMs, nowMs: receivedMs) { staged.warnings.add(note, line: content.numbers[index]) }
                staged.earliest = min(staged.earliest, envelope.timestampMs)
                staged.latest = max(staged.latest, envelope.timestampMs)
                staged.senders.insert(envelope.senderKey)
            }
            staged.storedAt[index] = staged.lines.count
            staged.lines.append(content.lines[index])
            staged.verified.append(content.verified[index])
        }
        if invalid > InputBounds.loggedInvalidLines {
            let unlogged = grouped(invalid - InputBounds.loggedInvalidLines)
            try node.store.logRejection(
                roomID: roomID, reason: "\(key): \(unlogged) more invalid lines of this object were refused; not kept here one by one", receivedMs: receivedMs)
        }
        return .staged(staged)
    }

    /// Stores the staged files of one window in one transaction (the store's cap on rejections per device holds per
    /// window), then tells each file's outcome: its events and problems into its record, the report's counts, and
    /// its problems and warnings, bounded by ``InputBounds`` (the first lines of each reason word for word, the rest
    /// counted).
    func store(_ staged: [(file: StagedFile, record: Int)], roomID: String, receivedMs: Int64, records: inout [ReceivedObject], into report: inout SyncReport)
        throws
    {
        var nextFile = 0
        var handedOver = 0
        let result = try node.store.ingest(
            chunks: {
                // Whole files, up to a batch of lines (a file larger than that goes alone, in pieces).
                var verified: [Result<VerifiedEvent, EventError>] = []
                var lines: [[UInt8]] = []
                while nextFile < staged.count && lines.count < Node.importBatchLines {
                    let file = staged[nextFile].file
                    let range = handedOver..<min(file.lines.count, handedOver + Node.importBatchLines - lines.count)
                    verified += file.verified[range]
                    lines += file.lines[range]
                    handedOver = range.upperBound
                    if handedOver == file.lines.count { (nextFile, handedOver) = (nextFile + 1, 0) }
                }
                return lines.isEmpty ? nil : (verified, lines)
            }, receivedMs: receivedMs)
        let collisions = result.collisionProblems()
        var offset = 0
        for (index, (file, record)) in staged.enumerated() {
            let range = offset..<offset + file.lines.count
            offset = range.upperBound
            // A collision with an event stored earlier (no input of this window) is told with the window's first file.
            let mine = collisions.filter { $0.input.map(range.contains) ?? (index == 0) }.map {
                (input: $0.input.map { $0 - range.lowerBound }, message: $0.message)
            }
            let found = try finish(file, outcomes: result.outcomes[range], collisions: mine, into: &report, events: &records[record].events)
            if !found.problems.isEmpty {
                let problems = found.problems
                records[record].problem = problems.prefix(20).joined(separator: "; ") + (problems.count > 20 ? "; and \(problems.count - 20) more" : "")
                report.problems += problems.map { "\(file.key): \($0)" }
            }
            report.warnings += found.warnings.map { "\(file.key): \($0)" }
        }
        report.accepted += result.released.filter { $0.outcome == .accepted }.map(\.eventID)
    }

    /// One stored file's outcome: what it brought (`events`, the report's counts) and its problems and warnings.
    func finish(
        _ staged: StagedFile, outcomes: ArraySlice<IngestOutcome>, collisions: [(input: Int?, message: String)], into report: inout SyncReport,
        events: inout Int
    ) throws -> (problems: [String], warnings: [String]) {
        let content = staged.file.content
        let verified = staged.verified
        let outcomes = Array(outcomes)
        // Problems are added in line order, so the ones shown are the file's first.
        var problems = LineProblems()
        var tooLong = content.tooLong[...]
        var sealed: [(line: Int, eventID: String)] = []
        for index in content.lines.indices {
            let number = content.numbers[index]
            while let long = tooLong.first, long.line < number {
                problems.add(ObjectLines.tooLongProblem(long.bytes), line: long.line)
                tooLong = tooLong.dropFirst()
            }
            guard let position = staged.storedAt[index] else {
                switch content.verified[index] {
                case .failure(let error): problems.add(content.problem(error.message, line: number), line: number)
                case .success(let event): problems.add("an event of room \(event.event.roomID), not of this room; not stored", line: number)
                }
                continue
            }
            switch outcomes[position] {
            case .accepted:
                events += 1
                guard case .success(let event) = verified[position] else { continue }
                report.accepted.append(event.event.eventID)
                if event.event.type == EventType.encrypted || event.event.type == EventType.roomKey { sealed.append((number, event.event.eventID)) }
            case .duplicate:
                events += 1
                report.duplicates += 1
            case .heldBack:
                events += 1
                report.heldBack += 1
            case .unauthorized(let reason):
                problems.add("not authorized: \(reason)", line: number)
            case .rejected(let reason):
                problems.add(content.problem(reason, line: number), line: number)
            }
        }
        for long in tooLong { problems.add(ObjectLines.tooLongProblem(long.bytes), line: long.line) }
        let storedNumbers = staged.storedAt.indices.compactMap { index in staged.storedAt[index].map { ($0, content.numbers[index]) } }
        let lineOfPosition = Dictionary(storedNumbers, uniquingKeysWith: { first, _ in first })
        for collision in collisions {
            _ = problems.add(collision.message, line: collision.input.flatMap { lineOfPosition[$0] })
        }
        if !sealed.isEmpty {
            // Opened in the same transaction; what did not open never will (a key that has not arrived is no problem).
            let opened = try node.store.openingOutcomes(eventIDs: sealed.map(\.eventID))
            for (line, eventID) in sealed {
                if case .failed(let reason)? = opened[eventID] { problems.add("could not be opened: \(reason)", line: line) }
            }
        }
        var fileProblems = staged.fileProblems
        if content.stoppedAtLimit { fileProblems.append("more than \(grouped(settings.maxLinesPerObject)) lines; the rest was not read") }
        fileProblems += LogFileName.mismatches(staged.file.name, earliest: staged.earliest, latest: staged.latest, senders: staged.senders)
        return (problems.report + fileProblems, staged.warnings.report)
    }
}

extension LogFileName {
    /// What a file's name claims that its events contradict: their time range, or the device (a writer's file
    /// holds its own device's events only).
    static func mismatches(_ name: LogFileName, earliest: Int64, latest: Int64, senders: Set<String>) -> [String] {
        var problems: [String] = []
        if earliest != Int64.max, earliest < name.startMs || latest > name.endMs {
            problems.append("the name says \(name.startMs)–\(name.endMs) but its events span \(earliest)–\(latest)")
        }
        if senders.count > 1 {
            problems.append("its events are by \(senders.count) devices; a log file holds one device's events")
        } else if let claimed = name.claimedFingerprintPrefix, let sender = senders.first,
            InviteCode.fingerprint(ofKey: sender)?.hasPrefix(claimed) == false
        {
            problems.append("the name says client \(name.clientID) but its events are by device \(sender.prefix(12))…")
        }
        return problems
    }
}

/// Runs a bucket operation, turning its error into a ``ClientError``.
func bucketCall<T>(_ body: () throws(BucketError) -> T) throws(ClientError) -> T {
    do { return try body() } catch { throw ClientError(error) }
}

func bucketCallAsync<T>(_ body: () async throws(BucketError) -> T) async throws(ClientError) -> T {
    do { return try await body() } catch { throw ClientError(error) }
}

/// Runs a bucket operation for a state machine that takes its failure as an input.
func bucketResult<T>(_ body: () async throws(BucketError) -> T) async -> Result<T, BucketError> {
    do { return .success(try await body()) } catch { return .failure(error) }
}
