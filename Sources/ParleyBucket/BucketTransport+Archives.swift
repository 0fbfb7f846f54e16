import ParleyCore
import ParleySync

extension BucketTransport {
    // MARK: Reading archives (a first sync)

    /// A first sync's archives (docs/PROTOCOL.md §13.9.5), as ``BucketPoller``'s archive phase decides: the manifests,
    /// then each chosen part in turn — read, checked, its events stored, its signer checked, and it and the files it
    /// covers recorded — then the log folders archives left uncovered. One part's body and events are held at a time.
    func readArchives(
        roomID: String, poller: inout BucketPoller, objects: any ObjectStore, receivedMs: Int64, into report: inout BucketSyncReport
    ) async throws {
        var action = poller.startArchives()
        while true {
            switch action {
            case .listArchives:
                action = poller.archivesListed(try await objects.listAll(prefix: BucketLayout.archivePrefix(roomID)))
            case .recall(let keys):
                action = poller.archivesRecalled(seen: try host.receivedNames(roomID: roomID, among: keys))
            case .readManifests(let manifests):
                action = poller.manifestsRead(await getAll(manifests, maxBytes: ArchiveManifest.maxBytes, from: objects))
            case .readArchives(let parts):
                for part in parts {
                    try Task.checkCancellation()
                    if let failure = try await readArchive(part, roomID: roomID, objects: objects, receivedMs: receivedMs, into: &report) {
                        poller.archiveFailed(part, reason: failure)
                    } else {
                        poller.archiveRead(part)
                        report.archivesRead += 1
                    }
                }
                action = poller.archivesStored()
            case .listLogFolders:
                action = poller.logFoldersListed(try await objects.listFolders(prefix: BucketLayout.logsPrefix(roomID)))
            case .listLogs(let folders):
                var listed: [ObjectInfo] = []
                for folder in folders { listed += try await objects.listAll(prefix: folder) }
                action = poller.logsListed(listed)
            case .done:
                return
            }
        }
    }

    /// Reads one part: its body (no more than its listed size), checked against its manifest (§13.9.4, checks 13–20),
    /// its events stored in one transaction, its signer checked against the room's state, and then the part and the
    /// files it covers recorded as received, so neither is read again.
    /// - Returns: why the part failed, or `nil` once it is stored and recorded.
    /// - Throws: what a sync cannot go on after: the store's failures, a bucket's transient ones (the next sync reads
    ///   the archives again; parts stored meanwhile are not read twice), cancellation.
    func readArchive(
        _ part: BucketPoller.ArchivePart, roomID: String, objects: any ObjectStore, receivedMs: Int64, into report: inout BucketSyncReport
    ) async throws -> String? {
        let events: [VerifiedEvent]
        do {
            let stored = try await objects.get(key: part.body.key, maxBytes: Int(part.body.size))
            events = try ArchiveCheck.readInParallel(body: stored, manifest: part.manifest)
        } catch let error as BucketError {
            if error.isTemporary { throw error }
            if error.kind == .tooLarge {
                return "\(ArchiveError(.bodySizeMismatch, "the body is larger than the \(part.body.size) bytes it is listed and signed at"))"
            }
            return error.message
        } catch let error as ArchiveError {
            return "\(error)"
        }
        var handedOver = 0
        let result = try host.ingest(
            roomID: roomID,
            chunks: {
                guard handedOver < events.count else { return nil }
                let range = handedOver..<min(events.count, handedOver + InputBounds.batchLines)
                handedOver = range.upperBound
                return (events[range].map { .success($0) }, events[range].map(\.wire))
            }, receivedMs: receivedMs)
        let problems = try tally(events, outcomes: result, into: &report)
        report.problems += problems.map { "\(part.manifestKey): \($0)" }
        // After storing: the state that binds the signer may come with the part's own events.
        guard try host.isKeyOwner(roomID: roomID, signingKey: part.manifest.signer) else {
            return "\(ArchiveError(.signerNotMember, "its signer \(part.manifest.signer.prefix(12))… is no device of the room"))"
        }
        let covered = zip(part.coveredFiles, part.manifest.files).map { object, file in
            ReceivedObject(name: object.key, size: object.size, events: Int(file.lastSeq - file.firstSeq + 1), problem: nil)
        }
        let problem = problems.isEmpty ? nil : problems.prefix(20).joined(separator: "; ") + (problems.count > 20 ? "; and \(problems.count - 20) more" : "")
        try host.recordReceived(
            roomID: roomID, [ReceivedObject(name: part.manifestKey, size: part.manifestSize, events: events.count, problem: problem)] + covered,
            seenMs: receivedMs)
        return nil
    }

    /// What storing a part's events came to: the report's counts, and the problems of its lines (numbered from 1 in
    /// the body), bounded per reason as a log file's are.
    func tally(_ events: [VerifiedEvent], outcomes result: IngestReport, into report: inout BucketSyncReport) throws -> [String] {
        var problems = LineProblems()
        var sealed: [(line: Int, eventID: String)] = []
        for (index, outcome) in result.outcomes.enumerated() {
            let event = events[index].event
            switch outcome {
            case .accepted:
                report.accepted.append(event.eventID)
                if event.type == EventType.encrypted || event.type == EventType.roomKey { sealed.append((index + 1, event.eventID)) }
            case .duplicate: report.duplicates += 1
            case .heldBack: report.heldBack += 1
            case .unauthorized(let reason): problems.add("not authorized: \(reason)", line: index + 1)
            case .rejected(let reason): problems.add(reason, line: index + 1)
            }
        }
        for collision in result.collisionProblems() { problems.add(collision.message, line: collision.input.map { $0 + 1 }) }
        if !sealed.isEmpty {
            let failures = try host.openingFailures(eventIDs: sealed.map(\.eventID))
            for (line, eventID) in sealed {
                if let reason = failures[eventID] { problems.add("could not be opened: \(reason)", line: line) }
            }
        }
        report.accepted += result.released.filter { $0.outcome == .accepted }.map(\.eventID)
        return problems.report
    }

    /// Gets each object (at most `maxBytes`), ``BucketSettings/parallelDownloads`` at a time: its bytes or its
    /// failure, by key.
    func getAll(_ wanted: [ObjectInfo], maxBytes: Int, from objects: any ObjectStore) async -> [String: Result<[UInt8], BucketError>] {
        await withTaskGroup(of: (String, Result<[UInt8], BucketError>).self) { group in
            var waiting = wanted.makeIterator()
            @Sendable func get(_ key: String) async -> (String, Result<[UInt8], BucketError>) {
                (key, await bucketResult { () async throws(BucketError) in try await objects.get(key: key, maxBytes: maxBytes) })
            }
            for _ in 0..<max(1, settings.parallelDownloads) {
                guard let object = waiting.next() else { break }
                group.addTask { await get(object.key) }
            }
            var results: [String: Result<[UInt8], BucketError>] = [:]
            for await (key, result) in group {
                results[key] = result
                if let object = waiting.next() { group.addTask { await get(object.key) } }
            }
            return results
        }
    }
}

/// What writing the archive of one day of a room came to (docs/PROTOCOL.md §13.9.6).
public struct ArchiveWriteReport: Sendable, Equatable {
    public var roomID: String
    /// The day, YYYY-MM-DD (UTC).
    public var date: String
    /// The manifests written, by part; empty when nothing was written.
    public var written: [String] = []
    /// Why nothing was written, when nothing was.
    public var skipped: String?
    /// Whether the day needs no further look: archived (by this device or another), or not archivable as its files
    /// are. A day left open (its files not all read yet, a bucket that failed) is looked at again later.
    public var isSettled = false

    public init(roomID: String, date: String) {
        self.roomID = roomID
        self.date = date
    }
}

extension BucketTransport {
    // MARK: Writing archives

    /// Most events of a day a writer archives: it holds them all at once (about four parts' worth).
    static let maxArchivedEventsPerDay = 4 * ArchiveManifest.maxEvents

    /// Writes the archives of the past days of `roomID` that need one (docs/PROTOCOL.md §13.9.6): the days of its log
    /// folders that ended more than ``ArchiveSelection/latenessMs`` ago and that no earlier call settled. Writes
    /// nothing in a room this device is no member of.
    /// - Returns: a report per day looked at, oldest first.
    /// - Throws: the store's failures; a bucket's failure to list the log folders.
    public func writeArchives(_ roomID: String) async throws -> [ArchiveWriteReport] {
        let objects = try objects(for: try room(roomID))
        guard try host.isKeyOwner(roomID: roomID, signingKey: host.deviceKey) else { return [] }
        let now = host.now()
        let prefix = BucketLayout.logsPrefix(roomID)
        let dates = try await objects.listFolders(prefix: prefix).compactMap { folder -> String? in
            let date = String(folder.dropFirst(prefix.count).dropLast())
            guard folder.hasPrefix(prefix), folder.hasSuffix("/"), let start = BucketLayout.startOfDayMs(date),
                ArchiveSelection.isPast(dayOf: start, nowMs: now)
            else { return nil }
            return date
        }
        let settled = try host.receivedNames(roomID: roomID, among: dates.map { BucketLayout.archiveFolder(roomID: roomID, date: $0) })
        var reports: [ArchiveWriteReport] = []
        for date in dates.sorted() where !settled.contains(BucketLayout.archiveFolder(roomID: roomID, date: date)) {
            try Task.checkCancellation()
            reports.append(try await writeArchive(roomID, date: date, objects: objects))
        }
        return reports
    }

    /// Writes the archive of day `date` of `roomID`, unless a complete set is there already, this device wrote one,
    /// or the log files of the day do not allow one: every file of `logs/{date}/` must have been read here, and each
    /// one's events must be attributable to its writer's chain (its name's device and times, consecutive seqs).
    /// The parts are written create-only, each body before its manifest; a key taken meanwhile starts the set again
    /// under the next client id. A day settled (written, or not archivable as its files are) is recorded, so
    /// ``writeArchives(_:)`` does not look at it again.
    /// - Throws: ``TransportError`` `invalid_argument` for a date that is no day, or one that ended less than an hour
    ///   ago; the store's failures; the bucket's.
    public func writeArchive(_ roomID: String, date: String, objects given: (any ObjectStore)? = nil) async throws -> ArchiveWriteReport {
        let objects = try given ?? self.objects(for: try room(roomID))
        let now = host.now()
        guard let dayStart = BucketLayout.startOfDayMs(date) else {
            throw TransportError(code: TransportError.invalidArgument, "\(date) is not a day written YYYY-MM-DD.")
        }
        guard ArchiveSelection.isPast(dayOf: dayStart, nowMs: now) else {
            throw TransportError(
                code: TransportError.invalidArgument, "\(date) ended less than an hour ago; its log files may still be arriving.",
                remedy: "Archive it once \(date) has ended more than an hour ago (UTC).")
        }
        var report = ArchiveWriteReport(roomID: roomID, date: date)
        func settle(_ reason: String?) throws -> ArchiveWriteReport {
            report.skipped = reason
            report.isSettled = true
            try host.recordReceived(
                roomID: roomID, [ReceivedObject(name: BucketLayout.archiveFolder(roomID: roomID, date: date), size: 0, events: 0, problem: reason)],
                seenMs: now)
            return report
        }
        guard try host.isKeyOwner(roomID: roomID, signingKey: host.deviceKey) else {
            report.skipped = "this device is no member of the room"
            return report
        }

        // 1. A complete set by anyone, or one this device wrote, and nothing is written.
        let folder = BucketLayout.archiveFolder(roomID: roomID, date: date)
        let listed = try await objects.listAll(prefix: folder)
        let ownClientID = clientID
        let recorded = try host.receivedObjects(roomID: roomID, prefix: folder)
        if recorded.contains(where: { isOwnManifest($0.name, roomID: roomID, clientID: ownClientID) }) {
            return try settle("this device archived \(date) already")
        }
        var taken = Set<String>()
        var manifests: [ObjectInfo] = []
        for object in listed {
            guard case .success((let name, let kind)) = ArchiveName.parse(key: object.key, roomID: roomID) else { continue }
            taken.insert(name.clientID)
            if kind == .manifest && object.size <= Int64(ArchiveManifest.maxBytes) { manifests.append(object) }
        }
        let read = await getAll(manifests, maxBytes: ArchiveManifest.maxBytes, from: objects)
        let verified = manifests.compactMap { object -> ArchiveManifest? in
            guard case .success(let bytes)? = read[object.key], case .success((let name, _)) = ArchiveName.parse(key: object.key, roomID: roomID)
            else { return nil }
            return try? ArchiveManifest(parsing: bytes, name: name, listedSize: object.size)
        }
        if let existing = ArchiveSelection(verified, nowMs: now).chosen[date] {
            return try settle("\(existing[0].name.clientID) archived \(date) already")
        }

        // 2. The day's files, each attributed to a run of its writer's chain.
        let logs = try await objects.listAll(prefix: BucketLayout.logsFolder(roomID: roomID, date: date))
        let received = Dictionary(
            try host.receivedObjects(roomID: roomID, prefix: BucketLayout.logsFolder(roomID: roomID, date: date)).map { ($0.name, $0) },
            uniquingKeysWith: { first, _ in first })
        let unread = logs.filter { received[$0.key] == nil }
        guard unread.isEmpty else {
            report.skipped = "\(unread.count) of its log files are not read here yet"
            return report
        }
        let holding = logs.compactMap { received[$0.key] }.filter { $0.events > 0 }
        guard !holding.isEmpty else { return try settle("no log file of \(date) holds an event") }
        guard holding.reduce(0, { $0 + $1.events }) <= Self.maxArchivedEventsPerDay else {
            return try settle("more than \(Self.maxArchivedEventsPerDay) events; not archived")
        }
        let attributed: (files: [ArchiveBuilder.FileRecord], events: [VerifiedEvent])
        switch try attribute(holding, roomID: roomID, dayStartMs: dayStart) {
        case .failure(let problem): return try settle(problem.reason)
        case .success(let found): attributed = found
        }

        // 3. The parts, body first, create-only; a taken key starts the set again under the next client id.
        let clientIDs = ([ownClientID] + (1...99).map { "\(ownClientID).\($0)" }).filter { !taken.contains($0) }
        // A few attempts: each conflict is another writer's object under the very key this one chose.
        for setClientID in clientIDs.prefix(10) {
            let parts: [ArchiveBuilder.Part]
            do {
                parts = try ArchiveBuilder.build(
                    roomID: roomID, date: date, clientID: setClientID, signer: host.deviceKey, sign: host.sign, files: attributed.files,
                    events: attributed.events)
            } catch let error as ArchiveError {
                return try settle("its files cannot make an archive: \(error)")
            }
            var conflict = false
            for part in parts where !conflict {
                for (key, bytes) in [(part.manifest.body.key, part.body), (part.manifest.name.manifestKey, part.manifestBytes)] {
                    if try await objects.putIfAbsent(key: key, bytes: bytes, retention: settings.retention) == .conflict {
                        conflict = true
                        break
                    }
                }
            }
            if conflict { continue }
            report.written = parts.map(\.manifest.name.manifestKey)
            // Recorded as this device's own: never written twice, never read back.
            try host.recordReceived(
                roomID: roomID,
                parts.map { ReceivedObject(name: $0.manifest.name.manifestKey, size: Int64($0.manifestBytes.count), events: $0.manifest.events, problem: nil) },
                seenMs: now)
            return try settle(nil)
        }
        report.skipped = "another writer took the keys of every set this device began"
        return report
    }

    /// Whether `key` is a manifest of a set this device writes (its client id, or one with a `.n` suffix).
    func isOwnManifest(_ key: String, roomID: String, clientID: String) -> Bool {
        guard case .success((let name, .manifest)) = ArchiveName.parse(key: key, roomID: roomID) else { return false }
        guard name.clientID.hasPrefix(clientID) else { return false }
        let rest = name.clientID.dropFirst(clientID.count)
        return rest.isEmpty || (rest.first == "." && rest.dropFirst().allSatisfy(\.isNumber) && rest.count > 1)
    }

    /// Each file's run of its writer's chain (docs/PROTOCOL.md §13.9.6 step 2): the events of the one device its name's
    /// client id names, dated within its name's times, at consecutive seqs, the first and last at those times, and no
    /// fewer than the file brought. A file that is a copy of another (the same run) is left out.
    /// - Returns: the files and their events, or why some file cannot be attributed.
    func attribute(_ files: [ReceivedObject], roomID: String, dayStartMs: Int64) throws -> Result<
        (files: [ArchiveBuilder.FileRecord], events: [VerifiedEvent]), LogFileName.NameProblem
    > {
        var names: [(record: ReceivedObject, name: LogFileName, claimed: String)] = []
        for record in files {
            guard case .success(let name) = LogFileName.parse(key: record.name, roomID: roomID) else {
                return .failure(.init("\(record.name) is not a log file name"))
            }
            guard let claimed = name.claimedFingerprintPrefix else {
                return .failure(.init("\(record.name) does not name its writer's fingerprint, so its events cannot be attributed"))
            }
            names.append((record, name, claimed))
        }
        let throughMs = names.map(\.name.endMs).max() ?? dayStartMs
        var bySender: [String: [VerifiedEvent]] = [:]
        for event in try host.events(roomID: roomID, fromMs: dayStartMs, throughMs: throughMs) {
            bySender[event.event.senderKey, default: []].append(event)
        }
        let fingerprints = bySender.keys.map { ($0, InviteCode.fingerprint(ofKey: $0) ?? "") }
        var records: [ArchiveBuilder.FileRecord] = []
        var runs = Set<String>()
        var events: [VerifiedEvent] = []
        for (record, name, claimed) in names {
            let senders = fingerprints.filter { $0.1.hasPrefix(claimed) }.map(\.0)
            let held = senders.count == 1 ? bySender[senders[0]]!.filter { (name.startMs...name.endMs).contains($0.event.timestampMs) } : []
            let seqs = held.map(\.event.seq).sorted()
            guard let first = held.min(by: { $0.event.seq < $1.event.seq }), let last = held.max(by: { $0.event.seq < $1.event.seq }),
                seqs == Array(seqs[0]...seqs[seqs.count - 1]), first.event.timestampMs == name.startMs, last.event.timestampMs == name.endMs,
                held.count >= record.events
            else {
                return .failure(.init("the events held here do not match \(record.name) (a chain with a gap, or a name that lies)"))
            }
            guard runs.insert("\(first.event.senderKey) \(first.event.seq) \(last.event.seq)").inserted else { continue }
            records.append(
                ArchiveBuilder.FileRecord(name: name, size: record.size, senderKey: first.event.senderKey, firstSeq: first.event.seq, lastSeq: last.event.seq))
            events += held
        }
        return .success((records, events))
    }
}
