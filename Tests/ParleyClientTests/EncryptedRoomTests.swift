import Foundation
import ParleyBucket
import ParleyCore
import ParleyStore
import ParleyTesting
import Testing

@_spi(Tools) @testable import ParleyClient

@Suite struct EncryptedRoomTests {
    /// Alice creates an encrypted room `vault` in the bucket, invites `others` and each joins with the invite code.
    func encryptedRoom(
        _ world: BucketWorld, history: HistoryVisibility = .joined, members others: [String] = ["bob"]
    ) async throws -> [String: BucketClient] {
        let alice = world.client(try world.node("alice"))
        _ = try await alice.createRoom("vault", bucket: world.url, encryption: .epochs(history: history))
        var clients = ["alice": alice]
        for user in others {
            let client = world.client(try world.node(user))
            try await add(client, to: alice, world: world)
            clients[user] = client
        }
        return clients
    }

    func add(_ client: BucketClient, to inviter: BucketClient, world: BucketWorld) async throws {
        try inviter.node.invite("vault", userID: client.node.identity.userID, key: client.node.identity.signingKeyBase64)
        _ = try await inviter.flush("vault")
        let code = try #require(try inviter.inviteCode("vault"))
        _ = try await client.join(InviteCode(parsing: code.text))
        _ = try await inviter.sync("vault")
    }

    func bodies(_ client: BucketClient) throws -> [String] {
        try client.node.timeline("vault", limit: 100).compactMap(\.body)
    }

    /// Every object in the bucket, as text.
    func bucketText(_ world: BucketWorld) async throws -> [String: String] {
        var result: [String: String] = [:]
        for object in try await world.objects.listAll(prefix: "") {
            let data = try await world.objects.get(key: object.key, maxBytes: 1 << 24)
            let bytes = object.key.hasSuffix(".gz") ? try Gzip.decompress(data, maxBytes: 1 << 24) : data
            result[object.key] = String(decoding: bytes, as: UTF8.self)
        }
        return result
    }

    @Test("In an encrypted bucket room members read everything and no message text appears in any object", arguments: BucketKind.all)
    func membersReadBucketDoesNot(kind: BucketKind) async throws {
        let world = try BucketWorld(kind)
        let clients = try await encryptedRoom(world)
        let (alice, bob) = (clients["alice"]!, clients["bob"]!)
        let first = try alice.node.send("vault", text: "zebra-secret-one")
        _ = try await alice.flush("vault")
        _ = try await bob.sync("vault")
        #expect(try bodies(bob) == ["zebra-secret-one"])
        _ = try bob.node.send("vault", text: "zebra-secret-two", replyTo: first.event.eventID)
        _ = try bob.node.react("vault", eventID: first.event.eventID, key: "zebra-reaction")
        _ = try bob.node.edit("vault", eventID: try #require(bob.node.timeline("vault", limit: 10).last?.eventID), text: "zebra-secret-edited")
        _ = try await bob.flush("vault")
        _ = try await alice.sync("vault")
        let aliceView = try alice.node.timeline("vault", limit: 100).filter { $0.type == EventType.message }
        #expect(aliceView.map(\.body) == ["zebra-secret-one", "zebra-secret-edited"])
        #expect(aliceView[0].reactions == ["zebra-reaction": ["bob"]])
        #expect(aliceView[1].parentEventID == first.event.eventID && aliceView[1].edited)
        // Local search finds decrypted text, on the device only.
        #expect(try alice.node.search("zebra-secret-edited", roomID: "vault").count == 1)

        let objects = try await bucketText(world)
        #expect(objects.count >= 3)
        for (key, text) in objects {
            #expect(!text.contains("zebra"), "plaintext in \(key)")
        }
        #expect(objects.values.contains { $0.contains(EventType.encrypted) })
    }

    @Test("A non-member with every object of the bucket reads nothing")
    func outsiderReadsNothing() async throws {
        let world = try BucketWorld(.folder)
        let clients = try await encryptedRoom(world)
        _ = try clients["alice"]!.node.send("vault", text: "for members only")
        _ = try await clients["alice"]!.flush("vault")

        let mallory = try world.node("mallory")
        var lines: [[UInt8]] = []
        for object in try await world.objects.listAll(prefix: BucketLayout.logsPrefix("vault")) {
            let data = try await world.objects.get(key: object.key, maxBytes: 1 << 24)
            lines += data.split(separator: 0x0A).map(Array.init)
        }
        _ = try mallory.store.ingest(lines: lines, receivedMs: 0)
        let items = try mallory.timeline("vault", limit: 100)
        let sealed = items.filter(\.undecryptable)
        #expect(sealed.count == 1)
        #expect(items.allSatisfy { $0.body == nil })
        #expect(try mallory.store.undecryptableCount(roomID: "vault") == 1)
    }

    @Test("Messages whose key arrives in the same sync are opened as they are stored, with nothing left for a later pass")
    func keyAndMessagesInOneBatch() async throws {
        let world = try BucketWorld(.folder)
        let clients = try await encryptedRoom(world)
        let (alice, bob) = (clients["alice"]!, clients["bob"]!)
        // Bob's join makes Alice's first message start an epoch: its key events travel in the same file.
        for text in ["one", "two", "three"] { _ = try alice.node.send("vault", text: text) }
        _ = try await alice.flush("vault")
        _ = try await bob.sync("vault")

        // Read from the store itself: the node's reads would run a decryption pass first.
        let stored = try bob.node.store.timeline(roomID: "vault", limit: 100)
        #expect(stored.compactMap(\.body) == ["one", "two", "three"])
        #expect(try bob.node.store.undecryptableCount(roomID: "vault") == 0)
        #expect(try bob.node.catchUpDecryption() == DecryptionReport())
    }

    @Test("A removed member's node cannot decrypt what is sent after the removal, nor write")
    func removedMemberReadsNothingNew() async throws {
        let world = try BucketWorld(.folder)
        let clients = try await encryptedRoom(world, members: ["bob", "carol"])
        let (alice, bob, carol) = (clients["alice"]!, clients["bob"]!, clients["carol"]!)
        _ = try alice.node.send("vault", text: "before")
        _ = try alice.node.setMembership("vault", userID: "bob", .leave, reason: nil)
        _ = try alice.node.send("vault", text: "after")
        _ = try await alice.flush("vault")
        _ = try await bob.sync("vault")
        _ = try await carol.sync("vault")

        #expect(try bodies(carol) == ["before", "after"])
        let bobView = try bob.node.timeline("vault", limit: 100).filter { $0.type == EventType.message || $0.undecryptable }
        #expect(bobView.map(\.body) == ["before", nil])
        #expect(bobView.last?.undecryptable == true)
        // Writing after removal: the room refuses it before anything is signed.
        #expect(throws: ClientError.self) { try bob.node.send("vault", text: "still here?") }
    }

    @Test(
        "A sealed event that does not open is kept as a chain link and logged with its reason, the events after it are shown, and a replayed key event changes nothing"
    )
    func unopenableEventKept() async throws {
        let world = try BucketWorld(.folder)
        let clients = try await encryptedRoom(world)
        let (alice, bob) = (clients["alice"]!, clients["bob"]!)
        _ = try await bob.sync("vault")
        let before = try bob.node.send("vault", text: "before")
        _ = try await bob.flush("vault")
        _ = try await alice.sync("vault")
        #expect(try bodies(alice) == ["before"])

        // Bob's device signs two more events by hand: one whose ciphertext lost a bit after sealing, then a good one.
        let keyID = try #require(before.event.content?["key_id"]?.stringValue)
        let key = try #require(try bob.node.store.roomKeys(roomID: "vault")[keyID])
        let bobKey = bob.node.identity.signingKeyBase64
        var head = ChainLink(seq: before.event.seq, hash: before.hash, timestampMs: before.event.timestampMs)
        var generator = SystemRandomNumberGenerator()
        func sealed(_ text: String, flippingABit: Bool) throws -> VerifiedEvent {
            let time = head.timestampMs + 1
            let eventID = EventID.make(roomID: "vault", timestampMs: time, randomBytes: Array(repeating: UInt8(head.seq), count: 16))
            let associatedData = RoomCipher.associatedData(
                eventID: eventID, roomID: "vault", timestampMs: time, senderID: "bob", senderKey: bobKey, seq: head.seq + 1, parentEventID: nil,
                prevEventHash: head.hash)
            var content = RoomCipher.seal(
                type: EventType.message, content: JSONObject(["msgtype": "text", "body": .string(text)]), key: key, associatedData: associatedData,
                using: &generator)
            if flippingABit {
                var ciphertext = try #require(content["ciphertext"]?.stringValue.flatMap(Base64.decode))
                ciphertext[3] ^= 0x10
                content["ciphertext"] = JSONValue.string(Base64.encode(ciphertext))
            }
            let event = bob.node.identity.signingKey.signEvent(
                roomID: "vault", type: EventType.encrypted, content: content, senderID: "bob", seq: head.seq + 1, previousHash: head.hash,
                timestampMs: time, eventID: eventID)
            head = ChainLink(seq: event.event.seq, hash: event.hash, timestampMs: time)
            return event
        }
        let altered = try sealed("altered", flippingABit: true)
        let after = try sealed("after", flippingABit: false)
        let report = try alice.node.store.ingest(events: [altered, after], receivedMs: 0)
        #expect(report.outcomes == [.accepted, .accepted], "both are valid links of bob's chain")
        _ = try alice.node.catchUpDecryption()
        #expect(try bodies(alice) == ["before", "after"])
        #expect(!(try alice.node.timeline("vault", limit: 100).contains { $0.eventID == altered.event.eventID }))
        let logged = try alice.node.store.rejectedEvents().first { $0.eventID == altered.event.eventID }
        #expect(logged?.reason.contains("does not open") == true, "\(String(describing: logged))")
        #expect(try alice.node.store.chainHead(roomID: "vault", senderKey: bobKey)?.seq == after.event.seq)

        // The key event that gave Alice the key, offered again: a duplicate, nothing changes.
        var keyEvents: [[UInt8]] = []
        try alice.node.store.forEachEvent(roomID: "vault") { wire in
            if (try? Event.parse(wire))?.type == EventType.roomKey { keyEvents.append(wire) }
        }
        let replay = try alice.node.store.ingest(events: keyEvents.map { try VerifiedEvent(parsing: $0) }, receivedMs: 0)
        #expect(!keyEvents.isEmpty && replay.outcomes.allSatisfy { $0 == .duplicate })
        #expect(try bodies(alice) == ["before", "after"])
    }

    @Test("In an encrypted room a reason for a removal or a redaction is refused: it would travel unencrypted")
    func cleartextReasonsRefused() async throws {
        let world = try BucketWorld(.folder)
        let clients = try await encryptedRoom(world)
        let alice = clients["alice"]!
        let message = try alice.node.send("vault", text: "oops")
        let headBefore = try alice.node.store.chainHead(roomID: "vault", senderKey: alice.node.identity.signingKeyBase64)
        #expect { try alice.node.redact("vault", eventID: message.event.eventID, reason: "typo in the secret") } throws: { error in
            (error as? ClientError)?.message.contains("unencrypted") == true
        }
        #expect(throws: ClientError.self) { try alice.node.setMembership("vault", userID: "bob", .leave, reason: "you know why") }
        // Nothing was signed; without a reason both go through.
        #expect(try alice.node.store.chainHead(roomID: "vault", senderKey: alice.node.identity.signingKeyBase64) == headBefore)
        _ = try alice.node.redact("vault", eventID: message.event.eventID, reason: nil)
        _ = try alice.node.setMembership("vault", userID: "bob", .leave, reason: nil)
    }

    @Test("With shared history a late joiner reads earlier messages once a member shares the keys; with joined history no member's later sends give them")
    func historyVisibility() async throws {
        for history in HistoryVisibility.allCases {
            let world = try BucketWorld(.folder)
            let clients = try await encryptedRoom(world, history: history)
            let (alice, bob) = (clients["alice"]!, clients["bob"]!)
            _ = try alice.node.send("vault", text: "early")
            _ = try await alice.flush("vault")
            let dave = world.client(try world.node("dave"))
            try await add(dave, to: alice, world: world)
            // Dave holds the early message but no key for it yet: kept, shown as undecryptable.
            #expect(try dave.node.timeline("vault", limit: 100).contains(where: \.undecryptable))
            // Bob's next message shares what the room's history setting allows.
            _ = try await bob.sync("vault")
            _ = try bob.node.send("vault", text: "late")
            _ = try await bob.flush("vault")
            _ = try await dave.sync("vault")
            let expected: [String] = history == .shared ? ["early", "late"] : ["late"]
            #expect(try bodies(dave) == expected, "history \(history)")
            #expect(try dave.node.timeline("vault", limit: 100).contains(where: \.undecryptable) == (history == .joined))
            // Alice, who holds the early key and whose sends need no new epoch, must not pass it on either.
            _ = try await alice.sync("vault")
            _ = try alice.node.send("vault", text: "later")
            _ = try await alice.flush("vault")
            _ = try await dave.sync("vault")
            #expect(try bodies(dave) == expected + ["later"], "history \(history)")
        }
    }

    @Test func `a pre-shared-key room: the invite code carries the secret, members read, and a holder cannot write as another member`() async throws {
        let world = try BucketWorld(.folder)
        let alice = world.client(try world.node("alice"))
        let bob = world.client(try world.node("bob"))
        _ = try await alice.createRoom(
            "vault", bucket: world.url, encryption: .preShared(secret: RoomEncryptionOption.randomPreSharedSecret(), fromPassphrase: false))
        try await add(bob, to: alice, world: world)
        #expect(try #require(try alice.inviteCode("vault")).preSharedSecret?.count == 32)
        _ = try alice.node.send("vault", text: "okapi tidings")
        _ = try await alice.flush("vault")
        _ = try await bob.sync("vault")
        #expect(try bodies(bob) == ["okapi tidings"])
        for (key, text) in try await bucketText(world) { #expect(!text.contains("okapi"), "plaintext in \(key)") }

        // Bob holds the shared key, but signs with his own device: an event claiming to be Alice's is refused.
        let key = try #require(try bob.node.store.roomKeys(roomID: "vault").values.first)
        let head = try #require(try bob.node.store.chainHead(roomID: "vault", senderKey: bob.node.identity.signingKeyBase64))
        let eventID = EventID.make(roomID: "vault", timestampMs: head.timestampMs + 10, randomBytes: Array(repeating: 7, count: 16))
        var generator = SystemRandomNumberGenerator()
        let associatedData = RoomCipher.associatedData(
            eventID: eventID, roomID: "vault", timestampMs: head.timestampMs + 10, senderID: "alice", senderKey: bob.node.identity.signingKeyBase64,
            seq: head.seq + 1, parentEventID: nil, prevEventHash: head.hash)
        let forged = bob.node.identity.signingKey.signEvent(
            roomID: "vault", type: EventType.encrypted,
            content: RoomCipher.seal(
                type: EventType.message, content: JSONObject(["msgtype": "text", "body": "I am alice"]), key: key, associatedData: associatedData,
                using: &generator),
            senderID: "alice", seq: head.seq + 1, previousHash: head.hash, timestampMs: head.timestampMs + 10, eventID: eventID)
        let report = try alice.node.store.ingest(events: [forged], receivedMs: 0)
        guard case .unauthorized(let reason)? = report.outcomes.first else {
            Issue.record("expected a rejection, got \(report.outcomes)")
            return
        }
        #expect(reason.contains("not bound to alice"))
    }

    @Test func `a passphrase room asks the joiner for the passphrase and refuses a wrong one`() async throws {
        let world = try BucketWorld(.folder)
        let alice = world.client(try world.node("alice"))
        let secret = try RoomEncryptionOption.preSharedSecret(passphrase: Array("four sleepy owls".utf8), roomID: "vault")
        _ = try await alice.createRoom("vault", bucket: world.url, encryption: .preShared(secret: secret, fromPassphrase: true))
        let bob = world.client(try world.node("bob"))
        try alice.node.invite("vault", userID: "bob", key: bob.node.identity.signingKeyBase64)
        _ = try alice.node.send("vault", text: "tapir news")
        _ = try await alice.flush("vault")
        let code = try #require(try alice.inviteCode("vault"))
        #expect(code.needsPassphrase && code.preSharedSecret == nil)
        let parsed = try InviteCode(parsing: code.text)
        await #expect(throws: ClientError.self) { _ = try await bob.join(parsed) }
        await #expect(throws: ClientError.self) { _ = try await bob.join(parsed, passphrase: Array("four sleepy cats".utf8)) }
        let carol = world.client(try world.node("carol"))
        try alice.node.invite("vault", userID: "carol", key: carol.node.identity.signingKeyBase64)
        _ = try await alice.flush("vault")
        _ = try await carol.join(parsed, passphrase: Array("four sleepy owls".utf8))
        #expect(try carol.node.timeline("vault", limit: 100).compactMap(\.body) == ["tapir news"])
    }
}
