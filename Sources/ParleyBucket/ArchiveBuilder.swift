import Crypto
import ParleyCore

/// Writes the archive of a day (docs/PROTOCOL.md §13.9.6): given the log files of the day a device covers and their
/// events, the parts of one set — manifests signed, bodies in room order and compressed — split at the bounds of
/// §13.9.1, each file whole in one part. Pure: the driver lists, decides which files to cover, and writes.
public enum ArchiveBuilder {
    /// A log file to cover: its name, its size as listed, and the run of its sender's chain it holds.
    public struct FileRecord: Sendable, Equatable {
        public var name: LogFileName
        public var size: Int64
        public var senderKey: String
        public var firstSeq: Int64
        public var lastSeq: Int64

        public init(name: LogFileName, size: Int64, senderKey: String, firstSeq: Int64, lastSeq: Int64) {
            self.name = name
            self.size = size
            self.senderKey = senderKey
            self.firstSeq = firstSeq
            self.lastSeq = lastSeq
        }
    }

    /// One part, ready to write: the body first, then the manifest (docs/PROTOCOL.md §13.9.6).
    public struct Part: Sendable {
        public var manifest: ArchiveManifest
        /// The manifest as written (canonical JSON and LF).
        public var manifestBytes: [UInt8]
        /// The body before compression: its events' wire forms, each with LF, in room order.
        public var lines: [UInt8]
        /// The body as stored (gzip).
        public var body: [UInt8]
    }

    /// The bounds of one part (docs/PROTOCOL.md §13.9.1); smaller ones make more parts.
    public struct Limits: Sendable, Equatable {
        public var maxEvents = ArchiveManifest.maxEvents
        public var maxBodyBytes = ArchiveManifest.maxBodyBytes
        public var maxFiles = ArchiveManifest.maxEntries
        public var maxManifestBytes = ArchiveManifest.maxBytes

        public init() {}
    }

    /// Builds the set of parts archiving `files` of day `date`.
    /// - Parameters:
    ///   - clientID: the client id the set's keys carry (docs/PROTOCOL.md §13.1, §13.9.6).
    ///   - events: the events of those files, in any order (an event given twice, with one hash, counts once).
    /// - Returns: the parts, by part number.
    /// - Throws: ``ArchiveError`` when the files cannot make an archive that passes every check of §13.9.4 (a file of
    ///   another day, an event missing or in no file, files that overlap, one too large for a part); the code is the
    ///   check's.
    public static func build(
        roomID: String, date: String, clientID: String, signer: DeviceSigningKey, files: [FileRecord], events: [VerifiedEvent],
        limits: Limits = Limits()
    ) throws(ArchiveError) -> [Part] {
        do {
            return try build(
                roomID: roomID, date: date, clientID: clientID, signer: signer.publicKeyBase64, sign: signer.sign, files: files, events: events,
                limits: limits)
        } catch let error as ArchiveError {
            throw error
        } catch {
            preconditionFailure("signing with a key at hand cannot fail: \(error)")
        }
    }

    /// ``build(roomID:date:clientID:signer:files:events:limits:)`` for a device whose key stays where it is: `sign`
    /// signs a manifest's signing input as `signer` (base64).
    /// - Throws: ``ArchiveError``, or what `sign` throws.
    public static func build(
        roomID: String, date: String, clientID: String, signer: String, sign: ([UInt8]) throws -> [UInt8], files: [FileRecord],
        events: [VerifiedEvent], limits: Limits = Limits()
    ) throws -> [Part] {
        struct Position: Hashable {
            var senderKey: String
            var seq: Int64
        }
        var byPosition: [Position: VerifiedEvent] = [:]
        for event in events {
            let position = Position(senderKey: event.event.senderKey, seq: event.event.seq)
            if let known = byPosition[position], known.hash != event.hash {
                throw ArchiveError(.duplicateEvent, "two different events at seq \(event.event.seq) of one device")
            }
            byPosition[position] = event
        }
        // Taken in time order, each device's files come in seq order, so each part holds runs of whole chains.
        let ordered = files.sorted {
            ($0.name.startMs, $0.senderKey, $0.firstSeq, $0.name.key) < ($1.name.startMs, $1.senderKey, $1.firstSeq, $1.name.key)
        }
        var groups: [[(file: FileRecord, events: [VerifiedEvent])]] = [[]]
        var (count, bytes, manifestBytes) = (0, 0, fixedManifestBytes)
        var placed = Set<Position>()
        for file in ordered {
            guard file.name.roomID == roomID, file.name.dateFolder == date, file.name.isDateConsistent, file.firstSeq <= file.lastSeq else {
                throw ArchiveError(.fileNameInvalid, "\(file.name.key) is not a file of \(date) in room \(roomID)")
            }
            var held: [VerifiedEvent] = []
            for seq in file.firstSeq...file.lastSeq {
                let position = Position(senderKey: file.senderKey, seq: seq)
                guard let event = byPosition[position] else {
                    throw ArchiveError(.chainMismatch, "the event at seq \(seq) of \(file.name.key) is not given")
                }
                guard placed.insert(position).inserted else {
                    throw ArchiveError(.filesNotContiguous, "two files hold seq \(seq) of one device (\(file.name.key) is one)")
                }
                held.append(event)
            }
            let fileBytes = held.reduce(0) { $0 + $1.wire.count + 1 }
            let entryBytes = entryBytes(file)
            guard held.count <= limits.maxEvents, fileBytes <= limits.maxBodyBytes, fixedManifestBytes + entryBytes <= limits.maxManifestBytes else {
                throw ArchiveError(.bodyTooLarge, "\(file.name.key) alone is more than a part may hold")
            }
            if !groups[groups.count - 1].isEmpty
                && (count + held.count > limits.maxEvents || bytes + fileBytes > limits.maxBodyBytes || groups[groups.count - 1].count >= limits.maxFiles
                    || manifestBytes + entryBytes > limits.maxManifestBytes)
            {
                groups.append([])
                (count, bytes, manifestBytes) = (0, 0, fixedManifestBytes)
            }
            groups[groups.count - 1].append((file, held))
            (count, bytes, manifestBytes) = (count + held.count, bytes + fileBytes, manifestBytes + entryBytes)
        }
        guard placed.count == byPosition.count else {
            throw ArchiveError(.chainMismatch, "\(byPosition.count - placed.count) of the events given are in no file")
        }
        guard !groups[0].isEmpty else { throw ArchiveError(.manifestMalformed, "no file to archive") }

        var parts: [Part] = []
        for (index, group) in groups.enumerated() {
            let held = group.flatMap(\.events).sorted { EventOrder($0.event) < EventOrder($1.event) }
            var lines: [UInt8] = []
            lines.reserveCapacity(held.reduce(0) { $0 + $1.wire.count + 1 })
            for event in held {
                lines += event.wire
                lines.append(0x0A)
            }
            let body = Gzip.compress(lines)
            let name = ArchiveName(roomID: roomID, firstMs: held[0].event.timestampMs, lastMs: held[held.count - 1].event.timestampMs, clientID: clientID)
            var runs: [String: ArchiveManifest.Chain] = [:]
            for (file, _) in group {
                var chain = runs[file.senderKey] ?? ArchiveManifest.Chain(senderKey: file.senderKey, firstSeq: file.firstSeq, lastSeq: file.lastSeq)
                chain.firstSeq = min(chain.firstSeq, file.firstSeq)
                chain.lastSeq = max(chain.lastSeq, file.lastSeq)
                runs[file.senderKey] = chain
            }
            let logsPrefix = BucketLayout.logsPrefix(roomID)
            var manifest = ArchiveManifest(
                name: name, part: index + 1, parts: groups.count, signer: signer, events: held.count,
                body: .init(key: name.bodyKey, sha256: Hex.encode(SHA256.hash(data: body)), size: Int64(body.count)),
                chains: runs.values.sorted { $0.senderKey.utf8.lexicographicallyPrecedes($1.senderKey.utf8) },
                files: group.map {
                    ArchiveManifest.File(
                        name: String($0.file.name.key.dropFirst(logsPrefix.count)), size: $0.file.size, senderKey: $0.file.senderKey,
                        firstSeq: $0.file.firstSeq, lastSeq: $0.file.lastSeq)
                }
                .sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) })
            try manifest.sign(as: signer, with: sign)
            let encoded = manifest.encoded()
            // What a reader will check, checked here: input that cannot make a valid part is refused, never written.
            let read = try ArchiveManifest(parsing: encoded, name: name)
            try ArchiveCheck.check(read, events: held)
            parts.append(Part(manifest: manifest, manifestBytes: encoded, lines: lines, body: body))
        }
        guard Set(parts.map(\.manifest.name.manifestKey)).count == parts.count else {
            throw ArchiveError(.keyMismatch, "two parts would have one name (their events share their first and last millisecond)")
        }
        return parts
    }

    /// A manifest's bytes besides its files and chains: room id, date, times, key, hash, signer, signature, with room.
    static let fixedManifestBytes = 1_024

    /// An upper bound of what `file` adds to a manifest: its entry, and a chain entry of its own.
    static func entryBytes(_ file: FileRecord) -> Int {
        // {"first_seq":N,"last_seq":N,"name":"…","sender":"…","size":N}, and {"first_seq":N,"last_seq":N,"sender":"…"}:
        // 16 digits at most per number, 44 per key, each with its comma.
        file.name.key.utf8.count + 2 * (60 + 3 * 16 + 44)
    }
}
