import ParleyCore
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
    /// Whether a first sync reads the room's archives before its log files (docs/PROTOCOL.md §13.9.5).
    public var readsArchives = true
    /// Whether a running node writes the archives of past days of the rooms it may write to (docs/PROTOCOL.md §13.9.6).
    public var writesArchives = true

    public init() {}

    /// The settings a flush's ``BucketWriter`` decides with.
    public var writer: BucketWriter.Settings {
        var settings = BucketWriter.Settings()
        settings.maxEventsPerFile = maxEventsPerFile
        settings.maxFileBytes = maxFileBytes
        settings.gzip = gzip
        settings.hintAfterMs = hintAfterMs
        return settings
    }

    /// The settings a sync's ``BucketPoller`` decides with.
    public var poller: BucketPoller.Settings {
        var settings = BucketPoller.Settings()
        settings.latenessMs = latenessMs
        settings.gapListingEveryMs = gapListingEveryMs
        settings.maxObjectBytes = Int64(maxObjectBytes)
        settings.readGiveUpMs = readGiveUpMs
        settings.readsArchives = readsArchives
        return settings
    }
}

/// What one flush wrote.
public struct FlushReport: Sendable {
    public var roomID: String
    public var files: [String] = []
    public var events = 0
    /// Blocks of shared files written (or found there already), and their bytes.
    public var blocks = 0
    public var blockBytes: Int64 = 0
    /// Blocks the events' files need that this node does not hold: readers will find those files incomplete.
    public var missingBlocks = 0
    /// Blocks of redacted files deleted from the bucket.
    public var blocksDeleted = 0

    public init(roomID: String) { self.roomID = roomID }
}

/// What one sync of a bucket room found.
public struct BucketSyncReport: Sendable {
    public var roomID: String
    /// Log files read this time.
    public var filesRead = 0
    /// Archive parts read, checked and stored this time (docs/PROTOCOL.md §13.9.5).
    public var archivesRead = 0
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
    /// Whether this device's own events were read back (it held none in the room), holding the node's publishing lock.
    public var readOwnEventsBack = false

    public init(roomID: String) { self.roomID = roomID }
}

/// The bucket transport (docs/PROTOCOL.md §13): flushes a node's outbox into log files and syncs other devices'
/// files into the node. Its decisions are its state machines' (``BucketWriter``, ``BucketPoller``); this driver
/// performs their actions against an ``ObjectStore`` and asks the node only through its ``TransportHost``.
public struct BucketTransport: Sendable {
    public let host: any TransportHost
    public var settings: BucketSettings
    /// Opens a bucket URL; replaceable to count requests or inject faults.
    public var open: @Sendable (BucketURL) throws(BucketError) -> any ObjectStore
    /// Told of the blocks a flush writes, for a progress bar.
    public var blockProgress: BlockTransfer.Progress?

    public init(
        host: any TransportHost, settings: BucketSettings = BucketSettings(),
        open: @escaping @Sendable (BucketURL) throws(BucketError) -> any ObjectStore = { url throws(BucketError) in try url.open() },
        blockProgress: BlockTransfer.Progress? = nil
    ) {
        self.host = host
        self.settings = settings
        self.open = open
        self.blockProgress = blockProgress
    }

    /// This device's id in log file names: the user id and a fingerprint of the device key.
    public var clientID: String {
        let fingerprint = InviteCode.fingerprint(ofKey: host.deviceKey) ?? ""
        return "\(host.userID.prefix(40)).\(fingerprint.prefix(12))"
    }

    /// The room as this transport carries it.
    /// - Throws: ``TransportError`` `unknown_room` when the room does not live in a bucket on this node.
    public func room(_ roomID: String) throws -> TransportRoom {
        guard let room = try host.room(roomID) else {
            throw TransportError(
                code: TransportError.unknownRoom, "Room \(roomID) does not live in a bucket on this node.",
                remedy: "Create it with --bucket, or join it with an invite code.")
        }
        return room
    }

    /// The object store holding `room`.
    public func objects(for room: TransportRoom) throws(BucketError) -> any ObjectStore {
        try open(try BucketURL(room.location))
    }

    // MARK: Founding events

    /// Writes the room's metadata.json (create-only) from its create event and the creator's join, when this device
    /// created the room.
    public func writeMetadata(roomID: String, objects: any ObjectStore) async throws {
        let events = try host.foundingEvents(roomID: roomID)
        guard !events.isEmpty else { return }
        let outcome = try await objects.putIfAbsent(
            key: BucketLayout.metadataKey(roomID), bytes: RoomMetadata.encode(roomID: roomID, events: events), retention: settings.retention)
        if outcome == .conflict {
            throw BucketError(.invalidContent, "\(objects.location) already holds another metadata.json for room \(roomID).")
        }
    }

    /// The room's founding events from its metadata.json, checked against the creator fingerprint (docs/PROTOCOL.md
    /// §13.2).
    /// - Throws: ``TransportError`` `unknown_room` when the bucket holds no such room; ``BucketError`` when the file
    ///   was replaced or damaged, or the bucket failed.
    public func foundingEvents(roomID: String, creatorFingerprint: String, objects: any ObjectStore) async throws -> [VerifiedEvent] {
        let metadata: [UInt8]
        do {
            metadata = try await objects.get(key: BucketLayout.metadataKey(roomID), maxBytes: RoomMetadata.maxBytes)
        } catch {
            guard error.kind == .notFound else { throw error }
            throw TransportError(
                code: TransportError.unknownRoom, "\(objects.location) holds no room \(roomID).",
                remedy: "Check the invite code; the creator may not have flushed yet.")
        }
        return try RoomMetadata.decode(metadata, roomID: roomID, creatorFingerprint: creatorFingerprint)
    }

    /// Stores the founding events before anything from the logs: the node pins this create, so a create planted in
    /// the logs, however early it claims to be, is refused.
    public func pin(_ founding: [VerifiedEvent], roomID: String) throws {
        let report = try host.pin(roomID: roomID, founding: founding)
        guard report.outcomes.first?.isAccepted == true else {
            throw BucketError(.invalidContent, "The room's founding event was refused: \(report.outcomes[0]).")
        }
    }

    // MARK: Flushing (the buffer manager)

    /// Writes this device's pending events in `roomID` to the bucket: first any file assigned earlier but not
    /// confirmed (a failed attempt or a killed process: the same bytes under the same name), then new files.
    /// Events become IN_TRANSIT only once the bucket confirms their file.
    public func flush(_ roomID: String) async throws -> FlushReport {
        let objects = try objects(for: try room(roomID))
        var report = FlushReport(roomID: roomID)
        if try host.outboxStatus(roomID: roomID).inTransit == 0 {
            // Nothing confirmed yet: make sure the metadata a joiner needs exists (its first write may have failed).
            try await writeMetadata(roomID: roomID, objects: objects)
        }
        var uploads = try host.unconfirmedOutbox(roomID: roomID)
        let clientID = clientID
        let writing = settings.writer
        while true {
            if uploads.isEmpty {
                guard
                    let next = try host.claimOutbox(
                        roomID: roomID, limit: writing.maxEventsPerFile,
                        assemble: { pending, isTaken in
                            try BucketWriter.nextFile(of: pending, roomID: roomID, clientID: clientID, settings: writing, isTaken: isTaken)
                                .map { ($0.key, $0.events, $0.content) }
                        })
                else { break }
                uploads = [next]
            }
            let upload = uploads.removeFirst()
            try await writeBlocks(of: upload, to: objects, report: &report)
            report.files.append(try await write(upload, to: objects))
            report.events += Int(upload.lastSeq - upload.firstSeq + 1)
        }
        report.blocksDeleted = try await deleteBlocks(roomID, from: objects)
        return report
    }

    /// Deletes the blocks of the room's redacted files that the node asks to (after the redactions are written).
    /// Where objects are locked (a retention period) none can be: they stay until it ends, and are not asked for again.
    func deleteBlocks(_ roomID: String, from objects: any ObjectStore) async throws -> Int {
        let doomed = try host.blockDeletions(roomID: roomID)
        guard !doomed.isEmpty else { return 0 }
        guard settings.retention == nil else {
            try host.blockDeletionsDone(roomID: roomID, ids: doomed.map(\.id))
            return 0
        }
        for block in doomed { try await objects.delete(key: BucketLayout.blockKey(roomID: roomID, id: block.id)) }
        try host.blockDeletionsDone(roomID: roomID, ids: doomed.map(\.id))
        return doomed.count
    }

    /// Writes the blocks of the files the upload's events share, before the events: a reader that sees a message finds
    /// its file. Create-only under their ids; one the bucket holds already (the same file shared again, an earlier
    /// attempt) is not sent again.
    func writeBlocks(of upload: OutboxFile, to objects: any ObjectStore, report: inout FlushReport) async throws {
        let (blocks, missing) = try host.fileBlocks(roomID: upload.roomID, seqs: upload.firstSeq...upload.lastSeq)
        report.missingBlocks += missing
        guard !blocks.isEmpty else { return }
        let host = host
        let retention = settings.retention
        let roomID = upload.roomID
        let progress = blockProgress
        @Sendable func put(_ block: BlockRef) async throws -> Int64 {
            let key = BucketLayout.blockKey(roomID: roomID, id: block.id)
            if let existing = try await objects.head(key: key), existing.size == Int64(block.tier.byteCount) {
                progress?(existing.size)
                return existing.size
            }
            // A durable local block of a folder bucket on the same disk is linked, not copied: no byte is written twice.
            if retention == nil, let file = host.blockFile(block.id), let linked = try await objects.linkIfAbsent(key: key, file: file) {
                guard linked != .conflict else {
                    throw BucketError(
                        .invalidContent, "\(objects.location) holds other bytes under block \(block.id.hex.prefix(16))…; the file cannot be shared there.")
                }
                progress?(Int64(block.tier.byteCount))
                BlockTraffic.sent(block.tier.byteCount)
                return Int64(block.tier.byteCount)
            }
            guard let bytes = try host.block(block.id) else { return 0 }
            if try await objects.putIfAbsent(key: key, bytes: bytes, retention: retention) == .conflict {
                throw BucketError(
                    .invalidContent, "\(objects.location) holds other bytes under block \(block.id.hex.prefix(16))…; the file cannot be shared there.")
            }
            progress?(Int64(bytes.count))
            BlockTraffic.sent(bytes.count)
            return Int64(bytes.count)
        }
        let window = BlockTransfer.concurrency(for: blocks.map(\.tier).max()!)
        try await withThrowingTaskGroup(of: Int64.self) { group in
            var next = 0
            while next < min(window, blocks.count) {
                let block = blocks[next]
                group.addTask { try await put(block) }
                next += 1
            }
            while let bytes = try await group.next() {
                if bytes > 0 { report.blocks += 1 }
                report.blockBytes += bytes
                if next < blocks.count {
                    let block = blocks[next]
                    group.addTask { try await put(block) }
                    next += 1
                }
            }
        }
    }

    /// Fetches a block of the room's files from the bucket: exactly its tier's length at most, unchecked (the reader
    /// checks it).
    public func block(_ block: BlockRef, roomID: String, objects: any ObjectStore) async throws(BucketError) -> [UInt8] {
        let bytes = try await objects.get(key: BucketLayout.blockKey(roomID: roomID, id: block.id), maxBytes: block.tier.byteCount)
        BlockTraffic.fetched(bytes.count)
        return bytes
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
                let outcome = try await objects.putIfAbsent(key: key, bytes: body, retention: settings.retention)
                action = writer.written(outcome, now: host.now())
            case .rename(let key):
                action = writer.renamed(try host.renameOutbox(id: upload.id, roomID: upload.roomID, name: key))
            case .writeHint(let key, let hint):
                _ = try await objects.putIfAbsent(key: key, bytes: hint, retention: nil)
                action = writer.hintWritten()
            case .confirm(let key):
                // Our own file: recorded as seen, so a sync need not read it back.
                try host.confirmOutbox(
                    upload,
                    object: ReceivedObject(name: key, size: Int64(body.count), events: Int(upload.lastSeq - upload.firstSeq + 1), problem: nil))
                return key
            case .fail(let message):
                throw BucketError(.invalidContent, "\(message) (in \(objects.location))")
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
    /// - Parameter holdingPublishingLock: whether the caller holds the node's publishing lock already.
    public func sync(_ roomID: String, holdingPublishingLock: Bool = false) async throws -> BucketSyncReport {
        let room = try room(roomID)
        let ownEventsMissing = try !host.holdsOwnEvents(roomID: roomID)
        let lock = ownEventsMissing && !holdingPublishingLock ? try await host.lockForPublishing() : nil
        defer { withExtendedLifetime(lock) {} }
        let objects = try objects(for: room)
        if try !host.holdsCreate(roomID: roomID) {
            // A room this node did not join with an invite code (a linked device, a restored backup) is pinned the same
            // way before its logs are read.
            try pin(try await foundingEvents(roomID: roomID, creatorFingerprint: room.creatorFingerprint, objects: objects), roomID: roomID)
        }
        let now = host.now()
        var report = BucketSyncReport(roomID: roomID)
        var poller = BucketPoller(
            roomID: roomID, settings: settings.poller,
            progress: BucketPoller.Progress(cursor: room.cursor),
            hasGap: try host.hasGap(roomID: roomID), now: now)
        report.listedEverything = poller.listsEverything
        if poller.readsArchives {
            try await readArchives(roomID: roomID, poller: &poller, objects: objects, receivedMs: now, into: &report)
        }
        var action = poller.start()
        var candidates: [ObjectInfo]
        driving: while true {
            switch action {
            case .list(let logsAfter, let hintsAfter):
                let logs = try await objects.listAll(prefix: BucketLayout.logsPrefix(roomID), startAfter: logsAfter)
                let hints = try await objects.listAll(prefix: BucketLayout.hintsPrefix(roomID), startAfter: hintsAfter)
                action = poller.listed(logs: logs, hints: hints)
            case .recall(let keys):
                let failures = try host.readFailures(roomID: roomID)
                action = poller.recalled(seen: try host.receivedNames(roomID: roomID, among: keys), failures: failures)
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

        // A pipeline: while a worker stores one window of files, the next window downloads and verifies on the
        // other cores. A window is bounded by bytes, not files, and is stored in one transaction and recorded in
        // another, so a room of many small files costs no more per event than one large file.
        let windows = BucketTransport.windows(candidates, maxFiles: settings.windowFiles, maxBytes: settings.windowBytes)
        let admitting = poller
        (poller, report) = try await BatchPipeline<(window: [ObjectInfo], prepared: [Prepared])>.run(depth: 0) { [self, poller, report] next in
            var poller = poller
            var report = report
            while let (window, prepared) = try next() {
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
                            try host.saveReadFailure(roomID: roomID, name: object.key, failure)
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
                try host.recordReceived(roomID: roomID, records, seenMs: now)
            }
            return (poller, report)
        } produce: { put in
            for window in windows {
                try Task.checkCancellation()
                let prepared = await prepare(window, poller: admitting, objects: objects)
                // A window whose downloads a cancellation cut short is not stored: its files would count as failed.
                try Task.checkCancellation()
                try await put((window, prepared))
            }
        }
        let outcome = poller.finish()
        // Hints are recorded once the files they led to are stored, so a sync killed before then follows them again.
        try host.recordReceived(
            roomID: roomID,
            outcome.hints.map { ReceivedObject(name: $0.key, size: $0.size, events: 0, problem: $0.problem) }
                + outcome.vanished.map { ReceivedObject(name: $0, size: 0, events: 0, problem: "no longer in the bucket") }, seenMs: now)
        report.problems = poller.problems + report.problems
        report.ignored = poller.ignored
        try host.updateCursor(roomID: roomID) { BucketPoller.Progress(cursor: $0).merged(with: outcome.progress).cursor }
        if ownEventsMissing { try host.markAllSent(roomID: roomID) }
        report.readOwnEventsBack = lock != nil
        if !report.accepted.isEmpty || !report.problems.isEmpty {
            host.synced(roomID: roomID, accepted: report.accepted.count, problems: report.problems.count)
        }
        return report
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
            try host.logRejection(roomID: roomID, reason: "\(key): \(problem)", receivedMs: receivedMs)
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
            try host.logRejection(
                roomID: roomID, reason: "\(key): \(unlogged) more invalid lines of this object were refused; not kept here one by one", receivedMs: receivedMs)
        }
        return .staged(staged)
    }

    /// Stores the staged files of one window in one transaction (the store's cap on rejections per device holds per
    /// window), then tells each file's outcome: its events and problems into its record, the report's counts, and
    /// its problems and warnings, bounded by ``InputBounds`` (the first lines of each reason word for word, the rest
    /// counted).
    func store(
        _ staged: [(file: StagedFile, record: Int)], roomID: String, receivedMs: Int64, records: inout [ReceivedObject], into report: inout BucketSyncReport
    )
        throws
    {
        var nextFile = 0
        var handedOver = 0
        let result = try host.ingest(
            roomID: roomID,
            chunks: {
                // Whole files, up to a batch of lines (a file larger than that goes alone, in pieces).
                var verified: [Result<VerifiedEvent, EventError>] = []
                var lines: [[UInt8]] = []
                while nextFile < staged.count && lines.count < InputBounds.batchLines {
                    let file = staged[nextFile].file
                    let range = handedOver..<min(file.lines.count, handedOver + InputBounds.batchLines - lines.count)
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
        _ staged: StagedFile, outcomes: ArraySlice<IngestOutcome>, collisions: [(input: Int?, message: String)], into report: inout BucketSyncReport,
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
            let failures = try host.openingFailures(eventIDs: sealed.map(\.eventID))
            for (line, eventID) in sealed {
                if let reason = failures[eventID] { problems.add("could not be opened: \(reason)", line: line) }
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
    public static func mismatches(_ name: LogFileName, earliest: Int64, latest: Int64, senders: Set<String>) -> [String] {
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

/// Runs a bucket operation for a state machine that takes its failure as an input.
func bucketResult<T>(_ body: () async throws(BucketError) -> T) async -> Result<T, BucketError> {
    do { return .success(try await body()) } catch { return .failure(error) }
}
