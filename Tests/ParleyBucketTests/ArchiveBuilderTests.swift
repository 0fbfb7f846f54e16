import Crypto
import ParleyBucket
import ParleyCore
import ParleyTesting
import Testing

/// A day of room "general" in three log files (alice's first three events, bob's two, alice's next two), and the
/// archive parts built from them.
struct ArchiveDay {
    static let room = "general"
    /// 2023-11-14T22:13:20Z.
    static let t0: Int64 = 1_700_000_000_000
    var alice = TestDevice("alice")
    var bob = TestDevice("bob")
    var carol = TestDevice("carol")
    var events: [VerifiedEvent] = []
    var files: [ArchiveBuilder.FileRecord] = []

    init() {
        let t0 = Self.t0
        let first = alice.create(Self.room, at: t0) + [alice.invite(Self.room, bob, at: t0 + 1_000)]
        let second = [bob.join(Self.room, at: t0 + 2_000), bob.message(Self.room, "hello", at: t0 + 3_000)]
        let third = [alice.message(Self.room, "welcome", at: t0 + 2_500), alice.message(Self.room, "later", at: t0 + 4_000)]
        events = first + second + third
        files = [file(first, size: 1_800), file(second, size: 1_100, gzip: true), file(third, size: 900)]
    }

    static func clientID(_ device: TestDevice) -> String {
        "\(device.userID).\(InviteCode.fingerprint(ofKey: device.publicKey)!.prefix(12))"
    }

    /// The record of a log file holding `events`, named as a writer names it.
    func file(_ events: [VerifiedEvent], size: Int64, gzip: Bool = false) -> ArchiveBuilder.FileRecord {
        let sender = events[0].event.senderKey
        let device = [alice, bob, carol].first { $0.publicKey == sender }!
        return ArchiveBuilder.FileRecord(
            name: LogFileName(
                roomID: Self.room, startMs: events[0].event.timestampMs, endMs: events.last!.event.timestampMs, clientID: Self.clientID(device),
                gzip: gzip),
            size: size, senderKey: sender, firstSeq: events[0].event.seq, lastSeq: events.last!.event.seq)
    }

    var inRoomOrder: [VerifiedEvent] { events.sorted { EventOrder($0.event) < EventOrder($1.event) } }

    func build(signer: TestDevice? = nil, limits: ArchiveBuilder.Limits = .init()) throws -> [ArchiveBuilder.Part] {
        let signer = signer ?? bob
        return try ArchiveBuilder.build(
            roomID: Self.room, date: "2023-11-14", clientID: Self.clientID(signer), signer: signer.key, files: files, events: events, limits: limits)
    }
}

/// A part as a reader reads it: every check of docs/PROTOCOL.md §13.9.4.
func readPart(manifest bytes: [UInt8], name: ArchiveName, body: [UInt8]) throws(ArchiveError) -> [VerifiedEvent] {
    let manifest = try ArchiveManifest(parsing: bytes, name: name, listedSize: Int64(bytes.count))
    return try ArchiveCheck.read(body: body, listedSize: Int64(body.count), manifest: manifest)
}

/// A part whose body was replaced by `lines` (compressed) and whose manifest was signed again to match it: a lie that
/// gets past the hash, as a member device could write it.
func resealed(_ part: ArchiveBuilder.Part, lines: [UInt8], by signer: TestDevice, editing edit: (inout ArchiveManifest) -> Void = { _ in }) -> (
    manifest: [UInt8], body: [UInt8]
) {
    let body = Gzip.compress(lines)
    var manifest = part.manifest
    manifest.body.sha256 = Hex.encode(SHA256.hash(data: body))
    manifest.body.size = Int64(body.count)
    edit(&manifest)
    manifest.sign(with: signer.key)
    return (manifest.encoded(), body)
}

func joinedLines(_ events: [VerifiedEvent]) -> [UInt8] { events.flatMap { $0.wire + [0x0A] } }

@Suite struct ArchiveBuilderTests {
    let day = ArchiveDay()

    func expectFailure(_ code: ArchiveError.Code, manifest: [UInt8], name: ArchiveName, body: [UInt8]) {
        do {
            _ = try readPart(manifest: manifest, name: name, body: body)
            Issue.record("the part was read; expected \(code.rawValue)")
        } catch {
            #expect(error.code == code, "\(error)")
        }
    }

    @Test func `a day's files make one part that reads back as exactly their events, in room order`() throws {
        let parts = try day.build()
        #expect(parts.count == 1)
        let part = parts[0]
        #expect(part.manifest.name.manifestKey.hasPrefix("rooms/general/archive/2023-11-14/1700000000000_1700000004000_bob."))
        #expect(part.manifest.part == 1 && part.manifest.parts == 1 && part.manifest.events == 7 && part.manifest.signer == day.bob.publicKey)
        let events = try readPart(manifest: part.manifestBytes, name: part.manifest.name, body: part.body)
        #expect(events.map(\.hash) == day.inRoomOrder.map(\.hash))
        #expect(part.lines == joinedLines(day.inRoomOrder))
        #expect(part.manifest.files.map { $0.key(roomID: ArchiveDay.room) } == day.files.map(\.name.key).sorted())
        #expect(
            Set(part.manifest.chains.map { [$0.senderKey, "\($0.firstSeq)", "\($0.lastSeq)"] })
                == [[day.alice.publicKey, "1", "5"], [day.bob.publicKey, "1", "2"]])
    }

    @Test(arguments: [(3, Int.max, 20_000), (100_000, 2_500, 20_000), (100_000, Int.max, 1)])
    func `a day over a part's bounds makes a set of parts, each file whole in one, that a reader takes whole`(
        maxEvents: Int, maxBodyBytes: Int, maxFiles: Int
    ) throws {
        var limits = ArchiveBuilder.Limits()
        limits.maxEvents = maxEvents
        limits.maxBodyBytes = maxBodyBytes
        limits.maxFiles = maxFiles
        let parts = try day.build(limits: limits)
        #expect(parts.count > 1)
        var read: [VerifiedEvent] = []
        for part in parts {
            #expect(part.manifest.parts == parts.count)
            #expect(part.manifest.events <= maxEvents && part.lines.count <= maxBodyBytes && part.manifest.files.count <= maxFiles)
            read += try readPart(manifest: part.manifestBytes, name: part.manifest.name, body: part.body)
        }
        #expect(Set(read.map(\.hash)) == Set(day.events.map(\.hash)) && read.count == day.events.count)
        let covered = parts.flatMap { $0.manifest.files.map { $0.key(roomID: ArchiveDay.room) } }
        #expect(covered.sorted() == day.files.map(\.name.key).sorted())
        let selection = ArchiveSelection(parts.map(\.manifest).reversed(), nowMs: ArchiveDay.t0 + 2 * 86_400_000)
        #expect(selection.chosen["2023-11-14"]?.map(\.part) == Array(1...parts.count) && selection.refused.isEmpty)
    }

    @Test func `a body with an event left out of a chain is refused`() throws {
        let part = try day.build()[0]
        let lines = joinedLines(day.inRoomOrder.filter { $0.event.seq != 3 })
        let lie = resealed(part, lines: lines, by: day.bob)
        expectFailure(.chainMismatch, manifest: lie.manifest, name: part.manifest.name, body: lie.body)
        let shorter = resealed(part, lines: joinedLines(Array(day.inRoomOrder.dropLast())), by: day.bob)
        expectFailure(.chainMismatch, manifest: shorter.manifest, name: part.manifest.name, body: shorter.body)
    }

    @Test func `a body with an extra event, of a device with no chain or past a chain's end, is refused`() throws {
        let part = try day.build()[0]
        var day = day
        let intruder = day.carol.message(ArchiveDay.room, "not a member", at: ArchiveDay.t0 + 3_500)
        let extra = resealed(part, lines: joinedLines((day.events + [intruder]).sorted { EventOrder($0.event) < EventOrder($1.event) }), by: day.bob)
        expectFailure(.unlistedSender, manifest: extra.manifest, name: part.manifest.name, body: extra.body)
        let more = day.bob.message(ArchiveDay.room, "one more", at: ArchiveDay.t0 + 3_800)
        let longer = resealed(part, lines: joinedLines((day.events + [more]).sorted { EventOrder($0.event) < EventOrder($1.event) }), by: day.bob)
        expectFailure(.chainMismatch, manifest: longer.manifest, name: part.manifest.name, body: longer.body)
    }

    @Test func `a body with an altered event is refused`() throws {
        let part = try day.build()[0]
        let text = String(decoding: part.lines, as: UTF8.self).replacingOccurrences(of: "\"hello\"", with: "\"hellO\"")
        let lie = resealed(part, lines: Array(text.utf8), by: day.bob)
        expectFailure(.invalidEvent, manifest: lie.manifest, name: part.manifest.name, body: lie.body)
    }

    @Test func `a body with two events swapped, or one twice, is refused`() throws {
        let part = try day.build()[0]
        var events = day.inRoomOrder
        events.swapAt(3, 4)
        let swapped = resealed(part, lines: joinedLines(events), by: day.bob)
        expectFailure(.outOfOrder, manifest: swapped.manifest, name: part.manifest.name, body: swapped.body)
        let twice = resealed(part, lines: joinedLines(day.inRoomOrder + [day.inRoomOrder.last!]), by: day.bob)
        expectFailure(.duplicateEvent, manifest: twice.manifest, name: part.manifest.name, body: twice.body)
    }

    @Test func `a manifest claiming a file its chains do not cover is refused before its body is read`() throws {
        let part = try day.build()[0]
        let name = LogFileName(
            roomID: ArchiveDay.room, startMs: ArchiveDay.t0 + 5_000, endMs: ArchiveDay.t0 + 6_000, clientID: ArchiveDay.clientID(day.alice))
        let lie = resealed(part, lines: part.lines, by: day.bob) { manifest in
            manifest.files.append(
                .init(name: String(name.key.dropFirst("rooms/general/logs/".count)), size: 10, senderKey: day.alice.publicKey, firstSeq: 6, lastSeq: 7))
        }
        #expect(
            throws: ArchiveError(
                .fileNotCovered,
                "2023-11-14/messages_1700000005000_1700000006000_\(ArchiveDay.clientID(day.alice)).jsonl claims seq 6…7, outside what the body holds of its sender"
            )
        ) {
            try ArchiveManifest(parsing: lie.manifest, name: part.manifest.name)
        }
    }

    @Test func `a body whose hash is not the manifest's is refused`() throws {
        let part = try day.build()[0]
        let lie = resealed(part, lines: part.lines, by: day.bob) { $0.body.sha256 = String(repeating: "0", count: 64) }
        expectFailure(.bodyHashMismatch, manifest: lie.manifest, name: part.manifest.name, body: lie.body)
    }

    @Test func `a manifest changed after signing is refused`() throws {
        let part = try day.build()[0]
        var manifest = part.manifest
        manifest.files[0].size += 1
        expectFailure(.badSignature, manifest: manifest.encoded(), name: part.manifest.name, body: part.body)
    }

    @Test func `a truncated body, and one that inflates past 64 MiB, are refused without reading it all`() throws {
        let part = try day.build()[0]
        let truncated = Array(part.body.dropLast(10))
        let cut = resealed(part, lines: part.lines, by: day.bob) {
            $0.body.sha256 = Hex.encode(SHA256.hash(data: truncated))
            $0.body.size = Int64(truncated.count)
        }
        expectFailure(.bodyCorrupt, manifest: cut.manifest, name: part.manifest.name, body: truncated)
        let bomb = resealed(part, lines: [UInt8](repeating: 0x0A, count: ArchiveManifest.maxBodyBytes + 1), by: day.bob)
        #expect(bomb.body.count < 100_000)
        expectFailure(.bodyTooLarge, manifest: bomb.manifest, name: part.manifest.name, body: bomb.body)
    }

    @Test func `files that cannot make an archive a reader would accept are refused by the builder`() throws {
        var missing = day
        missing.events.removeAll { $0.event.senderKey == day.bob.publicKey && $0.event.seq == 2 }
        #expect(throws: ArchiveError.self) { try missing.build() }
        var orphan = day
        orphan.files.removeLast()
        #expect { try orphan.build() } throws: { ($0 as? ArchiveError)?.code == .chainMismatch }
        var overlapping = day
        overlapping.files[2].firstSeq = 3
        #expect { try overlapping.build() } throws: { ($0 as? ArchiveError)?.code == .filesNotContiguous }
        var elsewhere = day
        elsewhere.files[0].name = LogFileName(roomID: ArchiveDay.room, startMs: ArchiveDay.t0 + 86_400_000, endMs: ArchiveDay.t0 + 86_400_000, clientID: "a")
        #expect { try elsewhere.build() } throws: { ($0 as? ArchiveError)?.code == .fileNameInvalid }
        var misnamed = day
        misnamed.files[0].name.endMs -= 1
        #expect { try misnamed.build() } throws: { ($0 as? ArchiveError)?.code == .fileTimeMismatch }
    }
}
