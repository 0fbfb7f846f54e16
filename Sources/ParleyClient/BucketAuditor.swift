import ParleyBucket
import ParleyCore
import ParleySync

/// What `parley bucket verify` found in a bucket.
public struct BucketAuditReport: Sendable {
    public var location: String
    public var rooms: [String] = []
    /// Objects read.
    public var objects = 0
    /// Blocks of shared files (named by a block id, a tier long), and their bytes; not read: each is checked by
    /// whoever fetches it (docs/PROTOCOL.md §16.5).
    public var blocks = 0
    public var blockBytes: Int64 = 0
    /// Signatures, chains, forks, gaps and state, across every file of every room, plus faults of the files
    /// themselves (names that lie, truncation, unreadable or oversized objects, a replaced metadata.json).
    public var audit = AuditReport()
    /// Harmless findings: objects that are not Parley's, events uploaded more than once.
    public var warnings: [String] = []
    public var isClean: Bool { audit.isClean }
}

/// Audits a bucket offline: reads every object of every room (or one room) and checks everything, storing nothing.
public struct BucketAuditor: Sendable {
    public var settings = BucketSettings()

    public init(settings: BucketSettings = BucketSettings()) {
        self.settings = settings
    }

    /// - Parameter nowMs: the auditor's clock (Unix ms), to flag events dated far ahead of it.
    /// - Throws: ``ClientError`` when the bucket cannot be listed (a folder bucket that does not exist, an S3 error).
    public func audit(_ objects: any ObjectStore, roomID: String? = nil, nowMs: Int64 = Node.systemClock()) async throws -> BucketAuditReport {
        var report = BucketAuditReport(location: objects.location)
        var audit = Audit(nowMs: nowMs)
        var roomIDs: [String] = []
        if let roomID {
            if let problem = Identifier.problem(with: roomID, kind: .room) { throw ClientError(.invalidArgument, "Invalid room id: \(problem).") }
            roomIDs = [roomID]
        } else {
            for folder in try await bucketCallAsync({ () async throws(BucketError) in try await objects.listFolders(prefix: "rooms/") }) {
                let name = String(folder.dropFirst("rooms/".count).dropLast())
                if Identifier.problem(with: name, kind: .room) == nil {
                    roomIDs.append(name)
                } else {
                    report.warnings.append("\(ObjectKey.debugQuoted(folder)): not a room folder; ignored")
                }
            }
            if roomIDs.isEmpty { report.warnings.append("the bucket holds no rooms") }
        }
        report.rooms = roomIDs
        for roomID in roomIDs {
            let metadataKey = BucketLayout.metadataKey(roomID)
            var founding: [VerifiedEvent] = []
            do {
                let bytes = try await objects.get(key: metadataKey, maxBytes: RoomMetadata.maxBytes)
                report.objects += 1
                founding = try RoomMetadata.decode(bytes, roomID: roomID, creatorFingerprint: InviteCode.fingerprint(ofKey: Self.creatorKey(bytes) ?? "") ?? "")
            } catch {
                audit.problem(file: metadataKey, error.kind == .notFound ? "missing: a joiner cannot find the room" : error.message)
            }
            let listed = try await bucketCallAsync { () async throws(BucketError) in try await objects.listAll(prefix: BucketLayout.roomPrefix(roomID)) }
            for object in listed where object.key != metadataKey {
                if object.key.hasPrefix(BucketLayout.blocksPrefix(roomID)) {
                    let name = String(object.key.dropFirst(BucketLayout.blocksPrefix(roomID).count))
                    if BlockID(hex: name) != nil, BlockTier.allCases.contains(where: { Int64($0.byteCount) == object.size }) {
                        report.blocks += 1
                        report.blockBytes += object.size
                    } else {
                        report.warnings.append("\(ObjectKey.debugQuoted(object.key)): not a block (a block id, 1 KiB, 64 KiB, 1 MiB or 16 MiB long); ignored")
                    }
                    continue
                }
                if object.key.hasPrefix(BucketLayout.hintsPrefix(roomID)) {
                    await checkHint(object, roomID: roomID, objects: objects, listed: listed, report: &report, audit: &audit)
                    continue
                }
                let name: LogFileName
                switch LogFileName.parse(key: object.key, roomID: roomID) {
                case .failure(let problem):
                    report.warnings.append("\(ObjectKey.debugQuoted(object.key)): not a log file (\(problem.reason)); ignored")
                    continue
                case .success(let parsed): name = parsed
                }
                report.objects += 1
                if object.size == 0 {
                    report.warnings.append("\(object.key): empty")
                    continue
                }
                guard object.size <= settings.maxObjectBytes else {
                    audit.problem(file: object.key, "\(object.size) bytes, over the limit of \(settings.maxObjectBytes); not read")
                    continue
                }
                var content: ObjectLines
                do {
                    let bytes = try await objects.get(key: object.key, maxBytes: settings.maxObjectBytes)
                    content = try ObjectLines(reading: bytes, maxLines: settings.maxLinesPerObject, maxBytes: settings.maxObjectBytes)
                } catch {
                    audit.problem(file: object.key, "unreadable: \(error.message)")
                    continue
                }
                content.verifyRest()
                check(content, name: name, key: object.key, roomID: roomID, audit: &audit)
            }
            guard let create = founding.first else { continue }
            // The logs are judged as a node that joined judges them: with the create metadata.json names pinned, so a
            // create planted in the logs is refused whatever time it claims.
            if !audit.holds(hash: create.hash) {
                audit.problem(file: metadataKey, "its create event is not in the logs: it was replaced, or the creator's first log file is missing")
            }
            audit.pinnedCreates[roomID] = create.hash
            let unseen = founding.filter { !audit.holds(hash: $0.hash) }
            audit.add(unseen.map { _ in LineOrigin(file: metadataKey, line: 1) }, verified: unseen.map { .success($0) })
        }
        let result = audit.finish()
        report.warnings += result.warnings.map(\.text)
        if audit.repeats > 0 { report.warnings.append("\(audit.repeats) event(s) appear in more than one place (re-uploaded); each counts once") }
        report.audit = result
        return report
    }

    /// Feeds one file's events of `roomID` to the audit and checks what its name claims.
    func check(_ content: ObjectLines, name: LogFileName, key: String, roomID: String, audit: inout Audit) {
        if !name.isDateConsistent { audit.problem(file: key, "the name's folder \(name.dateFolder) is not the date of its start time") }
        if content.screen.isNotEvents {
            audit.problem(file: key, "not Parley events: \(content.screen.verdict); not read further")
            return
        }
        for (line, bytes) in content.tooLong { audit.problem(LineOrigin(file: key, line: line), ObjectLines.tooLongProblem(bytes)) }
        if let line = content.truncatedLine { audit.problem(LineOrigin(file: key, line: line), "truncated: the file does not end with a newline") }
        if content.stoppedAtLimit { audit.problem(file: key, "more than \(grouped(settings.maxLinesPerObject)) lines; the rest was not read") }
        var origins: [LineOrigin] = []
        var results: [Result<VerifiedEvent, EventError>] = []
        var earliest = Int64.max
        var latest = Int64.min
        var senders = Set<String>()
        for index in content.lines.indices {
            let origin = LineOrigin(file: key, line: content.numbers[index])
            if case .success(let event) = content.verified[index] {
                guard event.event.roomID == roomID else {
                    audit.problem(origin, "an event of room \(event.event.roomID), not of this room; not counted")
                    continue
                }
                earliest = min(earliest, event.event.timestampMs)
                latest = max(latest, event.event.timestampMs)
                senders.insert(event.event.senderKey)
            }
            origins.append(origin)
            results.append(content.verified[index])
        }
        audit.add(origins, verified: results)
        for mismatch in LogFileName.mismatches(name, earliest: earliest, latest: latest, senders: senders) { audit.problem(file: key, mismatch) }
    }

    func checkHint(_ hint: ObjectInfo, roomID: String, objects: any ObjectStore, listed: [ObjectInfo], report: inout BucketAuditReport, audit: inout Audit)
        async
    {
        guard BucketLayout.hintUploadMs(hint.key, roomID: roomID) != nil else {
            report.warnings.append("\(ObjectKey.debugQuoted(hint.key)): not a hint; ignored")
            return
        }
        report.objects += 1
        guard let bytes = try? await objects.get(key: hint.key, maxBytes: 4096) else {
            report.warnings.append("\(hint.key): unreadable hint")
            return
        }
        let target = String(decoding: bytes, as: UTF8.self)
        if !listed.contains(where: { $0.key == target }) {
            report.warnings.append("\(hint.key): points to \(ObjectKey.debugQuoted(target)), which is not a log file here")
        }
    }

    /// The create event's sender key in a metadata.json, to check the file is at least self-consistent (without an
    /// invite code the audit cannot know the creator: it checks that the logs hold the same create).
    static func creatorKey(_ bytes: [UInt8]) -> String? {
        guard let json = try? JSONParser(maxDepth: 64, maxBytes: RoomMetadata.maxBytes).parse(bytes),
            let first = json.objectValue?["events"]?.arrayValue?.first
        else { return nil }
        return first.objectValue?["sender_key"]?.stringValue
    }
}
