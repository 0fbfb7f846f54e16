import ParleyCore

/// A first sync that reads the room's archives before its log files (docs/PROTOCOL.md §13.9.5): which manifests to read,
/// which set of parts to take per day, which bodies to read, and which log folders are left to list. It runs before
/// ``BucketPoller/start()``, with actions of its own, and leaves the listing of the rest to the usual sync: `start()`
/// then lists only the days after the newest one covered, ``BucketPoller/listed(logs:hints:)`` adds the folders of
/// the days before it that no archive covered, and neither reads a log file a verified part covers.
extension BucketPoller {
    /// An archive part to read: its verified manifest and its body as listed.
    public struct ArchivePart: Sendable, Equatable {
        public var manifest: ArchiveManifest
        public var body: ObjectInfo
        /// The manifest's size as listed.
        public var manifestSize: Int64

        public init(manifest: ArchiveManifest, body: ObjectInfo, manifestSize: Int64) {
            self.manifest = manifest
            self.body = body
            self.manifestSize = manifestSize
        }

        public var manifestKey: String { manifest.name.manifestKey }

        /// The log files the part covers, at their listed sizes: recorded as processed with its events, so no later
        /// listing reads them.
        public var coveredFiles: [ObjectInfo] {
            manifest.files.map { ObjectInfo(key: $0.key(roomID: manifest.roomID), size: $0.size) }
        }
    }

    /// What the driver does next while reading archives.
    public enum ArchiveAction: Sendable, Equatable {
        /// List every object under the room's `archive/` (``BucketLayout/archivePrefix(_:)``); answer with
        /// ``archivesListed(_:)``.
        case listArchives
        /// Tell which of these manifest keys this node recorded as processed (parts stored by an earlier sync that did
        /// not finish); answer with ``archivesRecalled(seen:)``.
        case recall(keys: [String])
        /// Read these manifests, at most ``ArchiveManifest/maxBytes`` each; answer with ``manifestsRead(_:)``.
        case readManifests([ObjectInfo])
        /// For each part, in order: read its body (at most its listed size), check it (``ArchiveCheck``), store its
        /// events, then record the part's manifest key and ``ArchivePart/coveredFiles`` as processed in the same
        /// transaction, and check that its signer is a key of the room's state (docs/PROTOCOL.md §13.9.4); report each
        /// with ``archiveRead(_:)`` or ``archiveFailed(_:reason:)``, then call ``archivesStored()``.
        case readArchives([ArchivePart])
        /// List the date folders of the room's `logs/` (``ObjectStore/listFolders(prefix:)``); answer with
        /// ``logFoldersListed(_:)``.
        case listLogFolders
        /// List every object under each of these folders, in order; answer with ``logsListed(_:)``.
        case listLogs(folders: [String])
        /// The archives are read: go on with ``start()``.
        case done
    }

    /// Where a first sync is in reading archives, and what they covered.
    struct ArchiveState: Sendable {
        enum Phase: Sendable, Equatable {
            case idle, listing, recalling, readingManifests, readingBodies, listingFolders, listingLogs, done
        }

        var phase = Phase.idle
        /// Manifests to read, as listed.
        var manifests: [ObjectInfo] = []
        /// Bodies listed, by key.
        var bodies: [String: ObjectInfo] = [:]
        /// Manifest keys of parts an earlier sync stored.
        var stored = Set<String>()
        /// Per day, the manifest keys of its chosen set.
        var chosen: [String: [String]] = [:]
        /// Manifest keys of parts verified, now or before.
        var verified = Set<String>()
        /// Log files the verified parts cover.
        var covered = Set<String>()
        /// The newest start time of those files, at most the clock.
        var cursorMs: Int64?
        /// The end (ms) of each chosen day, and of the newest day covered once known.
        var dayEndMs: [String: Int64] = [:]
        var newestCoveredEndMs: Int64?
        var coveredDays = Set<String>()
        /// Log files listed in folders of days before the newest covered one that none covered.
        var logs: [ObjectInfo] = []
    }

    /// Whether this sync may read the room's archives first: the room was never listed (no cursor at all), and the
    /// settings allow it. A driver that does calls ``startArchives()`` before ``start()``.
    public var readsArchives: Bool {
        settings.readsArchives && progress.fullListingMs == 0 && progress.logsCursorMs == 0
    }

    /// The first action of the archives: their listing.
    public mutating func startArchives() -> ArchiveAction {
        precondition(readsArchives && archives.phase == .idle && phase == .starting, "startArchives() begins a first sync, once")
        archives.phase = .listing
        return .listArchives
    }

    /// The listing of `archive/` came back.
    public mutating func archivesListed(_ objects: [ObjectInfo]) -> ArchiveAction {
        precondition(archives.phase == .listing, "archivesListed(_:) answers .listArchives")
        for object in objects {
            switch ArchiveName.parse(key: object.key, roomID: roomID) {
            case .failure(let problem):
                ignored.append("\(object.key): not an archive object: \(problem.reason)")
            case .success((_, .body)):
                archives.bodies[object.key] = object
            case .success((let name, .manifest)):
                guard ArchiveSelection.isPast(dayOf: name.firstMs, nowMs: now, latenessMs: settings.archiveLatenessMs) else {
                    ignored.append("\(object.key): the archive of a day that ended less than \(settings.archiveLatenessMs / 60_000) min ago; not used")
                    continue
                }
                archives.manifests.append(object)
            }
        }
        guard !archives.manifests.isEmpty else { return archivesDone() }
        archives.phase = .recalling
        return .recall(keys: archives.manifests.map(\.key))
    }

    /// Which of the manifest keys asked about this node recorded as processed.
    public mutating func archivesRecalled(seen: Set<String>) -> ArchiveAction {
        precondition(archives.phase == .recalling, "archivesRecalled(seen:) answers .recall")
        archives.stored = seen
        archives.manifests.removeAll { object in
            guard object.size > Int64(ArchiveManifest.maxBytes) else { return false }
            problems.append("\(object.key): \(ArchiveError(.manifestTooLarge, "listed at \(object.size) bytes")); not read")
            return true
        }
        guard !archives.manifests.isEmpty else { return choose(from: []) }
        archives.phase = .readingManifests
        return .readManifests(archives.manifests)
    }

    /// The manifests asked for, or why each could not be read, by key.
    public mutating func manifestsRead(_ results: [String: Result<[UInt8], BucketError>]) -> ArchiveAction {
        precondition(archives.phase == .readingManifests, "manifestsRead(_:) answers .readManifests")
        var verified: [ArchiveManifest] = []
        for object in archives.manifests {
            guard case .success((let name, _)) = ArchiveName.parse(key: object.key, roomID: roomID) else { continue }
            switch results[object.key] {
            case nil:
                problems.append("\(object.key): not read; not used")
            case .failure(let error)?:
                problems.append("\(object.key): \(error.message); not used")
            case .success(let bytes)?:
                do {
                    verified.append(try ArchiveManifest(parsing: bytes, name: name, listedSize: object.size))
                } catch {
                    problems.append("\(object.key): \(error); not used")
                }
            }
        }
        return choose(from: verified)
    }

    /// A part's events are stored, and it is recorded.
    public mutating func archiveRead(_ part: ArchivePart) {
        precondition(archives.phase == .readingBodies, "archiveRead(_:) reports on .readArchives")
        partVerified(part)
    }

    /// A part failed: a check of its body, its reading, or its signer's membership.
    public mutating func archiveFailed(_ part: ArchivePart, reason: String) {
        precondition(archives.phase == .readingBodies, "archiveFailed(_:reason:) reports on .readArchives")
        problems.append("\(part.manifestKey): \(reason); not used")
    }

    /// Every part of ``ArchiveAction/readArchives(_:)`` is reported.
    public mutating func archivesStored() -> ArchiveAction {
        precondition(archives.phase == .readingBodies, "archivesStored() follows .readArchives")
        return bodiesDone()
    }

    /// The folders directly under `logs/` (each ending in `/`).
    public mutating func logFoldersListed(_ folders: [String]) -> ArchiveAction {
        precondition(archives.phase == .listingFolders, "logFoldersListed(_:) answers .listLogFolders")
        let prefix = BucketLayout.logsPrefix(roomID)
        let newest = BucketLayout.utcDate((archives.newestCoveredEndMs ?? 0) - 1)
        let uncovered = folders.filter { folder in
            guard folder.hasPrefix(prefix), folder.hasSuffix("/") else { return false }
            let date = folder.dropFirst(prefix.count).dropLast()
            // Other folders hold no log files (§13.1); the days after the newest covered one are listed by `start()`.
            return BucketLayout.isCalendarDate(date) && String(date) < newest && !archives.coveredDays.contains(String(date))
        }
        guard !uncovered.isEmpty else { return archivesDone() }
        archives.phase = .listingLogs
        return .listLogs(folders: uncovered)
    }

    /// The objects listed under the folders asked for.
    public mutating func logsListed(_ objects: [ObjectInfo]) -> ArchiveAction {
        precondition(archives.phase == .listingLogs, "logsListed(_:) answers .listLogs")
        archives.logs = objects
        return archivesDone()
    }

    /// Where ``start()``'s listing of `logs/` begins after the archives: after the newest day they covered.
    var logsAfterArchives: String? {
        archives.newestCoveredEndMs.map { BucketLayout.logsFolder(roomID: roomID, date: BucketLayout.utcDate($0)) }
    }

    /// Per day, the set of parts to use (§13.9.5 step 3), and which of their bodies to read.
    private mutating func choose(from manifests: [ArchiveManifest]) -> ArchiveAction {
        let selection = ArchiveSelection(manifests, nowMs: now, latenessMs: settings.archiveLatenessMs)
        for refusal in selection.refused {
            problems.append("\(refusal.keys.joined(separator: ", ")): \(refusal.error); not used")
        }
        var reading: [ArchivePart] = []
        let manifestSizes = Dictionary(archives.manifests.map { ($0.key, $0.size) }, uniquingKeysWith: { first, _ in first })
        for (date, parts) in selection.chosen.sorted(by: { $0.key < $1.key }) {
            archives.chosen[date] = parts.map(\.name.manifestKey)
            archives.dayEndMs[date] = BucketLayout.endOfDayMs(parts[0].firstMs)
            for manifest in parts {
                let listed = archives.bodies[manifest.body.key]
                do {
                    try ArchiveBody.checkListed(listed, manifest: manifest)
                } catch {
                    problems.append("\(manifest.name.manifestKey): \(error); not used")
                    continue
                }
                let part = ArchivePart(manifest: manifest, body: listed!, manifestSize: manifestSizes[manifest.name.manifestKey] ?? 0)
                if archives.stored.contains(part.manifestKey) {
                    // Stored and recorded by a sync that did not finish: its files are processed, its day covered.
                    partVerified(part)
                } else {
                    reading.append(part)
                }
            }
        }
        guard !reading.isEmpty else { return bodiesDone() }
        archives.phase = .readingBodies
        return .readArchives(reading)
    }

    private mutating func partVerified(_ part: ArchivePart) {
        archives.verified.insert(part.manifestKey)
        archives.covered.formUnion(part.coveredFiles.map(\.key))
        for name in (try? part.manifest.fileNames()) ?? [] {
            archives.cursorMs = max(archives.cursorMs ?? 0, min(name.startMs, now))
        }
    }

    /// A day is covered when every part of its chosen set verified; then the log folders are listed.
    private mutating func bodiesDone() -> ArchiveAction {
        for (date, keys) in archives.chosen where keys.allSatisfy(archives.verified.contains) {
            archives.coveredDays.insert(date)
        }
        guard let newest = archives.coveredDays.max() else { return archivesDone() }
        archives.newestCoveredEndMs = archives.dayEndMs[newest]
        archives.phase = .listingFolders
        return .listLogFolders
    }

    private mutating func archivesDone() -> ArchiveAction {
        archives.phase = .done
        return .done
    }
}
