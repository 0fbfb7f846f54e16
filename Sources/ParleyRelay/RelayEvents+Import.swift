import ParleyBucket
import ParleyCore
import ParleySync

extension RelayEvents {
    /// What filling the relay from a bucket did.
    public struct BucketImport: Sendable, Equatable {
        public var rooms = 0
        public var files = 0
        public var accepted = 0
        /// Files that could not be read or held no events, and events that were refused, in a few words each.
        public var problems: [String] = []
    }

    /// Fills the relay from a bucket (`parley serve --import`): every room under `rooms/`, or only `roomID`; every log
    /// file read within the bucket transport's bounds (64 MiB, 100,000 lines), and only the room's own events taken.
    /// They are judged as any event the relay gets (files come in any order: an event waits for its predecessor within
    /// the import, as a node holds it back). Members can refill what a bucket lacks.
    /// - Parameter progress: told of each room as it starts.
    /// - Throws: ``BucketError`` when the bucket cannot be reached or listed.
    public func importBucket(_ url: String, roomID: String? = nil, progress: @Sendable (String) -> Void = { _ in }) async throws -> BucketImport {
        let objects = try BucketURL(url).open()
        var report = BucketImport()
        var rooms: [String]
        if let roomID {
            rooms = [roomID]
        } else {
            rooms = try await objects.listFolders(prefix: "rooms/").map { String($0.dropFirst("rooms/".count).dropLast()) }
        }
        rooms = rooms.filter { Identifier.problem(with: $0, kind: .room) == nil }
        let settings = BucketSettings()
        for room in rooms {
            progress(room)
            report.rooms += 1
            for object in try await objects.listAll(prefix: BucketLayout.logsPrefix(room)) {
                guard object.size <= settings.maxObjectBytes else {
                    report.problems.append("\(object.key): \(object.size) bytes, above the \(settings.maxObjectBytes >> 20) MiB a log file may have")
                    continue
                }
                let content: ObjectLines
                do {
                    content = try ObjectLines(
                        reading: try await objects.get(key: object.key, maxBytes: settings.maxObjectBytes), maxLines: settings.maxLinesPerObject,
                        maxBytes: settings.maxObjectBytes)
                } catch {
                    report.problems.append("\(object.key): \(error.message)")
                    continue
                }
                report.files += 1
                let verified = content.verified.count == content.lines.count ? content.verified : VerifiedEvent.verifyInParallel(content.lines)
                // Only the room's own events: a file never brings another room in under this one's name.
                let own = verified.indices.filter { (try? verified[$0].get().event.roomID).map { $0 == room } ?? true }
                let (kept, lines) = (own.map { verified[$0] }, own.map { content.lines[$0] })
                let outcome = try await onQueue { [store] in try store.ingest(verified: kept, lines: lines, receivedMs: RelayAccounts.nowMs()) }
                report.accepted += outcome.outcomes.filter { $0 == .accepted }.count + outcome.released.filter { $0.outcome == .accepted }.count
                let refused = outcome.outcomes.filter { if case .rejected = $0 { true } else { false } }.count
                if refused > 0 { report.problems.append("\(object.key): \(refused) event(s) refused") }
            }
        }
        return report
    }
}
