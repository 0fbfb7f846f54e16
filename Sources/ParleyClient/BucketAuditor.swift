import ParleyBucket
import ParleyCore

/// What `parley bucket verify` found in a bucket.
public struct BucketAuditReport: Sendable {
    public var location: String
    public var rooms: [String] = []
    /// Objects read.
    public var objects = 0
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

    public func audit(_ objects: any ObjectStore, roomID: String? = nil) async throws -> BucketAuditReport {
        var report = BucketAuditReport(location: objects.location)
        var audit = Audit()
        var roomIDs: [String] = []
        if let roomID {
            if let problem = Identifier.problem(with: roomID, kind: .room) { throw ClientError(.invalidArgument, "Invalid room id: \(problem).") }
            roomIDs = [roomID]
        } else {
            for folder in try await bucketCall({ () async throws(BucketError) in try await objects.listFolders(prefix: "rooms/") }) {
                let name = String(folder.dropFirst("rooms/".count).dropLast())
                if Identifier.problem(with: name, kind: .room) == nil {
                    roomIDs.append(name)
                } else {
                    report.warnings.append("\(ObjectKey.debugQuoted(folder)): not a room folder; ignored")
                }
            }
        }
        report.rooms = roomIDs
        var metadataCreates: [String: String] = [:]
        for roomID in roomIDs {
            let metadataKey = BucketLayout.metadataKey(roomID)
            do {
                let bytes = try await objects.get(key: metadataKey, maxBytes: RoomMetadata.maxBytes)
                report.objects += 1
                let founding = try RoomMetadata.decode(bytes, roomID: roomID, creatorFingerprint: InviteCode.fingerprint(ofKey: Self.creatorKey(bytes) ?? "") ?? "")
                metadataCreates[roomID] = founding[0].hash
            } catch let error as BucketError where error.kind == .notFound {
                audit.problem(file: metadataKey, "missing: a joiner cannot find the room")
            } catch let error as BucketError {
                audit.problem(file: metadataKey, error.message)
            } catch let error as ClientError {
                audit.problem(file: metadataKey, error.message)
            }
            let listed = try await bucketCall { () async throws(BucketError) in try await objects.listAll(prefix: BucketLayout.roomPrefix(roomID)) }
            for object in listed where object.key != metadataKey {
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
                var bytes: [UInt8]
                do {
                    bytes = try await objects.get(key: object.key, maxBytes: settings.maxObjectBytes)
                    if Gzip.isGzip(bytes) { bytes = try Gzip.decompress(bytes, maxBytes: settings.maxObjectBytes) }
                } catch {
                    audit.problem(file: object.key, "unreadable: \(error.message)")
                    continue
                }
                check(bytes, name: name, key: object.key, audit: &audit)
            }
        }
        var result = audit.finish()
        for summary in result.rooms {
            if let expected = metadataCreates[summary.roomID], let found = summary.state.creation?.hash, expected != found {
                result.problems.append(
                    .init(file: BucketLayout.metadataKey(summary.roomID), line: nil, message: "its create event is not the one the logs hold: it was replaced"))
            }
        }
        if audit.repeats > 0 { report.warnings.append("\(audit.repeats) event(s) appear in more than one place (re-uploaded); each counts once") }
        report.audit = result
        return report
    }

    /// Feeds one file's lines to the audit and checks what its name claims.
    func check(_ bytes: [UInt8], name: LogFileName, key: String, audit: inout Audit) {
        if !name.isDateConsistent { audit.problem(file: key, "the name's folder \(name.dateFolder) is not the date of its start time") }
        var batch: [(origin: LineOrigin, bytes: [UInt8])] = []
        var earliest = Int64.max
        var latest = Int64.min
        var senders = Set<String>()
        let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() where !line.isEmpty {
            let origin = LineOrigin(file: key, line: index + 1)
            if index == lines.count - 1 {
                audit.problem(origin, "truncated: the file does not end with a newline")
            }
            if line.count > Event.maxWireBytes {
                audit.problem(origin, "\(line.count) bytes, longer than an event may be (\(Event.maxWireBytes))")
                continue
            }
            if let event = try? Event.parse(line) {
                earliest = min(earliest, event.timestampMs)
                latest = max(latest, event.timestampMs)
                senders.insert(event.senderKey)
            }
            batch.append((origin, Array(line)))
        }
        audit.add(batch)
        for mismatch in LogFileName.mismatches(name, earliest: earliest, latest: latest, senders: senders) { audit.problem(file: key, mismatch) }
    }

    func checkHint(_ hint: ObjectInfo, roomID: String, objects: any ObjectStore, listed: [ObjectInfo], report: inout BucketAuditReport, audit: inout Audit) async {
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

    /// The create event's sender key in a metadata.json, to check the file is at least self-consistent (the real
    /// check is against the logs' create event).
    static func creatorKey(_ bytes: [UInt8]) -> String? {
        guard let json = try? JSONParser(maxDepth: 64, maxBytes: RoomMetadata.maxBytes).parse(bytes),
            let first = json.objectValue?["events"]?.arrayValue?.first
        else { return nil }
        return first.objectValue?["sender_key"]?.stringValue
    }
}
