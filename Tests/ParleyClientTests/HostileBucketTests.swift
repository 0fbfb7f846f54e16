import Foundation
import ParleyCore
import ParleyStore
import ParleyTesting
import Testing

@testable import ParleyBucket
@_spi(Tools) @testable import ParleyClient

/// What a bucket can throw at a reader: another room's events, a planted create, junk lines by the million.
extension BucketRoomTests {
    /// Writes `lines` (each followed by LF) under `key`.
    func plant(_ key: String, _ lines: [[UInt8]], in world: BucketWorld) async throws {
        _ = try await world.objects.putIfAbsent(key: key, bytes: lines.flatMap { $0 + [0x0A] }, retention: nil)
    }

    @Test(arguments: BucketKind.all)
    func `a bucket never brings a room into a node: another room's events in a room's logs or hints are reported and not stored`(kind: BucketKind) async throws
    {
        let world = try BucketWorld(kind)
        let clock = TestClock()
        let (alice, _) = try await twoMembers(world, aliceClock: clock, bobClock: clock)
        let time = clock.ms + 1000
        // A create for room `side`, dated before anything, and a message, in the logs of `team`.
        var mallory = TestDevice("mallory")
        let planted = LogFileName(roomID: "team", startMs: time, endMs: time, clientID: "mallory")
        var intrusion = mallory.create("side", at: time)
        intrusion.append(mallory.message("side", "hi", at: time))
        try await plant(planted.key, intrusion.map(\.wire), in: world)
        // A hint in `team` naming a log file of room `other`.
        var eve = TestDevice("eve")
        let elsewhere = LogFileName(roomID: "other", startMs: time, endMs: time, clientID: "eve")
        try await plant(elsewhere.key, eve.create("other", at: time).map(\.wire), in: world)
        let hint = BucketLayout.hintKey(roomID: "team", uploadMs: time, clientID: "eve")
        _ = try await world.objects.putIfAbsent(key: hint, bytes: Array(elsewhere.key.utf8), retention: nil)

        let report = try await alice.sync("team")
        let text = report.problems.joined(separator: "\n")
        for line in 1...3 {
            #expect(text.contains("\(planted.key): line \(line): an event of room side, not of this room; not stored"), "\(text)")
        }
        #expect(text.contains("\(hint): the hint does not name a log file of this room"), "\(text)")
        #expect(try alice.node.store.roomIDs() == ["team"])
        #expect(try alice.node.store.rejectedEvents().allSatisfy { $0.roomID != "side" && $0.roomID != "other" })

        // The genuine room `side`, created later in the same bucket, is joined as if nothing had been planted.
        let carol = world.client(try world.node("carol", clock: clock))
        _ = try await carol.createRoom("side", bucket: world.url)
        try carol.node.invite("side", userID: "alice", key: alice.node.identity.signingKeyBase64)
        _ = try await carol.flush("side")
        _ = try await alice.join(try #require(try carol.inviteCode("side")))
        #expect(try alice.node.roomState("side").creation?.creatorKey == carol.node.identity.signingKeyBase64)
    }

    /// Mallory's create for `team`, dated a year before Alice's, planted in the room's logs.
    func plantBackdatedCreate(in world: BucketWorld) async throws -> LogFileName {
        var mallory = TestDevice("mallory")
        let early: Int64 = 1_750_000_000_000
        let name = LogFileName(roomID: "team", startMs: early, endMs: early, clientID: "mallory")
        try await plant(name.key, mallory.create("team", at: early).map(\.wire), in: world)
        return name
    }

    @Test func `a node that syncs a bucket room it did not join with an invite still pins the creator from metadata.json`() async throws {
        let world = try BucketWorld(.folder)
        let (alice, _) = try await twoMembers(world)
        let planted = try await plantBackdatedCreate(in: world)
        // A restored backup or a linked device knows the room by its bucket and creator fingerprint only.
        let restored = world.client(try world.node("bob", home: "bob-restored"))
        let code = try #require(try alice.inviteCode("team"))
        try restored.node.store.addBucketRoom(roomID: "team", bucketURL: world.url.text, creatorFingerprint: code.creatorFingerprint)
        let report = try await restored.sync("team")
        let state = try restored.node.roomState("team")
        #expect(state.creation?.creatorKey == alice.node.identity.signingKeyBase64)
        #expect(state.joinedMembers.map(\.userID).sorted() == ["alice", "bob"])
        #expect(
            report.problems.contains { $0.hasPrefix("\(planted.key): line 1: not authorized: another m.room.create founded this room") }, "\(report.problems)")
    }

    @Test func `a sync refuses to start a room from a metadata.json the creator fingerprint does not match`() async throws {
        let world = try BucketWorld(.folder)
        _ = try await twoMembers(world)
        let restored = world.client(try world.node("bob", home: "bob-restored"))
        try restored.node.store.addBucketRoom(roomID: "team", bucketURL: world.url.text, creatorFingerprint: String(repeating: "ab", count: 32))
        await #expect(throws: ClientError.self) { try await restored.sync("team") }
        #expect(try restored.node.store.roomIDs().isEmpty)
    }

    @Test func `bucket verify pins the creator from metadata.json and reports a create planted in the logs`() async throws {
        let world = try BucketWorld(.folder)
        let (alice, _) = try await twoMembers(world)
        let planted = try await plantBackdatedCreate(in: world)
        let audit = try await BucketAuditor().audit(world.objects, roomID: "team")
        let room = try #require(audit.audit.rooms.first { $0.roomID == "team" })
        #expect(room.state.creation?.creatorKey == alice.node.identity.signingKeyBase64)
        #expect(room.state.joinedMembers.map(\.userID).sorted() == ["alice", "bob"])
        #expect(
            audit.audit.problems.contains { $0.file == planted.key && $0.line == 1 && $0.message.contains("another m.room.create founded this room") },
            "\(audit.audit.problems.map(\.text))")
        #expect(!audit.audit.problems.contains { $0.file == BucketLayout.metadataKey("team") }, "\(audit.audit.problems.map(\.text))")
    }

    @Test func `bucket verify counts only a room's own events in its logs`() async throws {
        let world = try BucketWorld(.folder)
        _ = try await twoMembers(world)
        var mallory = TestDevice("mallory")
        let planted = LogFileName(roomID: "team", startMs: 1_790_000_001_000, endMs: 1_790_000_001_000, clientID: "mallory")
        try await plant(planted.key, mallory.create("side", at: 1_790_000_001_000).map(\.wire), in: world)
        let audit = try await BucketAuditor().audit(world.objects)
        #expect(audit.audit.rooms.map(\.roomID) == ["team"])
        #expect(audit.audit.problems.contains { $0.file == planted.key && $0.line == 2 && $0.message.contains("an event of room side, not of this room") })
    }

    /// `count` lines of `x`: what costs a writer nothing and compresses a thousandfold.
    func junk(_ count: Int) -> [UInt8] { Array(String(repeating: "x\n", count: count).utf8) }

    @Test func `an object of junk lines costs one problem and one rejected entry, and is not read past its first lines`() async throws {
        let world = try BucketWorld(.folder)
        let clock = TestClock()
        let (alice, _) = try await twoMembers(world, aliceClock: clock, bobClock: clock)
        let rejectedBefore = try alice.node.store.rejectedEvents(limit: 1000).count
        let name = LogFileName(roomID: "team", startMs: clock.ms + 1000, endMs: clock.ms + 1000, clientID: "mallory", gzip: true)
        let body = Gzip.compress(junk(1_000_000))
        #expect(body.count < 20_000)
        _ = try await world.objects.putIfAbsent(key: name.key, bytes: body, retention: nil)
        let report = try await alice.sync("team")
        #expect(report.problems.count == 1, "\(report.problems.prefix(20))")
        #expect(
            report.problems.first?.hasPrefix("\(name.key): not Parley events: its first 100 lines are all invalid (line 1: invalid JSON") == true,
            "\(report.problems.prefix(3))")
        #expect(try alice.node.store.rejectedEvents(limit: 1000).count == rejectedBefore + 1)
        let recorded = try #require(try alice.node.bucketFileProblems("team").first { $0.name == name.key })
        #expect(recorded.problem?.contains("not Parley events") == true)
    }

    @Test func `bucket verify reports an object of junk lines as one problem`() async throws {
        let world = try BucketWorld(.folder)
        _ = try await twoMembers(world)
        let name = LogFileName(roomID: "team", startMs: 1_790_000_001_000, endMs: 1_790_000_001_000, clientID: "mallory", gzip: true)
        _ = try await world.objects.putIfAbsent(key: name.key, bytes: Gzip.compress(junk(1_000_000)), retention: nil)
        let audit = try await BucketAuditor().audit(world.objects, roomID: "team")
        #expect(
            audit.audit.problems.map(\.text) == [
                "\(name.key): not Parley events: its first 100 lines are all invalid (line 1: invalid JSON: unexpected 'x' where a value was expected (at byte 0)); not read further"
            ])
    }

    @Test func `junk lines among events are summarized, logged at most 100 times, and read no further than the line limit`() async throws {
        let world = try BucketWorld(.folder)
        let clock = TestClock()
        let (alice, bob) = try await twoMembers(world, aliceClock: clock, bobClock: clock)
        let rejectedBefore = try alice.node.store.rejectedEvents(limit: 1000).count
        let good = try bob.node.send("team", text: "before the junk")
        let name = LogFileName(roomID: "team", startMs: good.event.timestampMs, endMs: good.event.timestampMs, clientID: "mallory")
        _ = try await world.objects.putIfAbsent(key: name.key, bytes: good.wire + [0x0A] + junk(150_000), retention: nil)
        let report = try await alice.sync("team")
        #expect(report.accepted == [good.event.eventID])
        let text = report.problems.joined(separator: "\n")
        #expect(report.problems.count <= 15, "\(text)")
        for line in 2...11 { #expect(text.contains("\(name.key): line \(line): invalid JSON"), "\(text)") }
        #expect(!text.contains("line 12:"), "\(text)")
        #expect(text.contains("\(name.key): 99,999 lines: invalid JSON …; first 10 shown"), "\(text)")
        #expect(text.contains("\(name.key): more than 100,000 lines; the rest was not read"), "\(text)")
        let logged = try alice.node.store.rejectedEvents(limit: 10_000).count - rejectedBefore
        #expect(logged <= 101, "\(logged) rejected entries")
    }

    @Test func `a log file in a folder that is not a calendar date is ignored`() async throws {
        let world = try BucketWorld(.folder)
        let clock = TestClock()
        let (alice, bob) = try await twoMembers(world, aliceClock: clock, bobClock: clock)
        let message = try bob.node.send("team", text: "misfiled")
        let key = "\(BucketLayout.logsPrefix("team"))2026-13-45/messages_\(message.event.timestampMs)_\(message.event.timestampMs)_bob.jsonl"
        try await plant(key, [message.wire], in: world)
        let report = try await alice.sync("team")
        #expect(report.accepted.isEmpty)
        #expect(report.ignored.contains { $0.hasPrefix(key) && $0.contains("is not a YYYY-MM-DD date") }, "\(report.ignored)")
    }

    @Test func `an event dated far ahead of the reader's clock is accepted and flagged by sync and bucket verify`() async throws {
        let world = try BucketWorld(.folder)
        let aliceClock = TestClock()
        let bobClock = TestClock(aliceClock.ms + 86_400_000)
        let (alice, bob) = try await twoMembers(world, aliceClock: aliceClock, bobClock: bobClock)
        let ahead = try bob.node.send("team", text: "from tomorrow")
        let written = try await bob.flush("team")
        let report = try await alice.sync("team")
        #expect(report.accepted == [ahead.event.eventID])
        #expect(report.problems.isEmpty, "\(report.problems)")
        #expect(report.warnings.contains { $0.hasPrefix("\(written.files[0]): line 1: dated 1 day ahead of this device's clock") }, "\(report.warnings)")
        let audit = try await BucketAuditor().audit(world.objects, roomID: "team", nowMs: aliceClock.ms)
        #expect(audit.isClean, "\(audit.audit.problems.map(\.text))")
        #expect(audit.warnings.contains { $0.hasPrefix("\(written.files[0]), line 1: dated 1 day ahead of this device's clock") }, "\(audit.warnings)")
    }
}
