import Crypto
import ParleyCore
import ParleyTesting
import Testing

/// The authorization rules of encrypted rooms (docs/PROTOCOL.md §14.5), through a full replay.
@Suite struct EncryptedStateTests {
    let room = "vault"
    let t: Int64 = 1_790_000_000_000

    /// A sealed-content object naming `key`, as a device would publish it.
    func sealed(_ key: RoomKey, _ body: String) -> JSONObject {
        var generator = SystemRandomNumberGenerator()
        return RoomCipher.seal(
            type: EventType.message, content: JSONObject(["msgtype": "text", "body": .string(body)]), key: key,
            associatedData: [], using: &generator)
    }

    func keyEvent(_ key: RoomKey, from sender: inout TestDevice, to devices: [TestDevice], at time: Int64) throws -> VerifiedEvent {
        let recipients = try devices.map { device in
            try KeySeal.seal(
                key, roomID: room, senderKey: sender.publicKey, recipientKey: device.publicKey, exchangeKey: Base64.decode(device.exchangeKey)!)
        }
        return sender.sign(room, EventType.roomKey, RoomKeyContent(keyID: key.keyID, recipients: recipients).jsonObject, at: time)
    }

    /// Alice creates an encrypted room and Bob joins it.
    func base(alice: inout TestDevice, bob: inout TestDevice) -> [VerifiedEvent] {
        alice.create(room, at: t) + [
            alice.sign(room, EventType.encryption, EncryptionSettings(mode: .epochs, history: .joined).jsonObject, at: t + 1),
            alice.invite(room, bob, at: t + 2),
            bob.join(room, at: t + 3),
        ]
    }

    func verdicts(_ events: [VerifiedEvent]) -> [Authorization] {
        let replay = RoomReplay(roomID: room, events: events)
        return events.map { replay.verdicts[$0.hash]! }
    }

    @Test func `a member seals under a key it was given; a plaintext message and a key it never had are refused`() throws {
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        var generator = SeededGenerator(seed: 1)
        let key = RoomKey.random(using: &generator)
        let other = RoomKey.random(using: &generator)
        var events = base(alice: &alice, bob: &bob)
        events.append(try keyEvent(key, from: &alice, to: [alice, bob], at: t + 4))
        let good = bob.sign(room, EventType.encrypted, sealed(key, "hi"), at: t + 5)
        let plain = bob.message(room, "in the clear", at: t + 6)
        let unknownKey = bob.sign(room, EventType.encrypted, sealed(other, "forged epoch"), at: t + 7)
        let verdicts = verdicts(events + [good, plain, unknownKey])
        #expect(verdicts.prefix(events.count + 1).allSatisfy { $0 == .accepted })
        guard case .rejected(let plainReason) = verdicts[events.count + 1], case .rejected(let keyReason) = verdicts[events.count + 2] else {
            Issue.record("expected rejections, got \(verdicts)")
            return
        }
        #expect(plainReason.contains("must be sent sealed"))
        #expect(keyReason.contains("had not been given"))
    }

    @Test func `sealing under a known key never given to the sender, under a key introduced only later, or after removal is refused`() throws {
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        var carol = TestDevice("carol")
        var generator = SeededGenerator(seed: 3)
        let first = RoomKey.random(using: &generator)
        let second = RoomKey.random(using: &generator)
        var events = base(alice: &alice, bob: &bob) + [alice.invite(room, carol, at: t + 4), carol.join(room, at: t + 5)]
        // The first key goes to Alice and Bob only; Carol learns it some other way and seals under it.
        events.append(try keyEvent(first, from: &alice, to: [alice, bob], at: t + 6))
        let notGiven = carol.sign(room, EventType.encrypted, sealed(first, "a key I was not given"), at: t + 7)
        // Carol seals under the second key before the event that introduces it.
        let beforeIntroduced = carol.sign(room, EventType.encrypted, sealed(second, "too early"), at: t + 8)
        let introduced = try keyEvent(second, from: &alice, to: [alice, bob, carol], at: t + 10)
        let given = carol.sign(room, EventType.encrypted, sealed(second, "now I may"), at: t + 11)
        // Bob is removed; what his device seals after that, under a key it holds, is refused.
        let removal = alice.membership(room, .leave, of: "bob", at: t + 12)
        let afterRemoval = bob.sign(room, EventType.encrypted, sealed(second, "still here?"), at: t + 13)
        let all = events + [notGiven, beforeIntroduced, introduced, given, removal, afterRemoval]
        let verdicts = verdicts(all)
        #expect(verdicts.prefix(events.count).allSatisfy { $0 == .accepted })
        func reason(_ event: VerifiedEvent) -> String {
            if case .rejected(let reason) = verdicts[all.firstIndex { $0.hash == event.hash }!] { return reason }
            return "accepted"
        }
        #expect(reason(notGiven).contains("had not been given"))
        #expect(reason(beforeIntroduced).contains("had not been given"))
        #expect(reason(introduced) == "accepted" && reason(given) == "accepted" && reason(removal) == "accepted")
        #expect(reason(afterRemoval) == "sender bob has left the room")
    }

    @Test func `a key sealed to an outsider, a second encryption setting and sealed content in a plain room are refused`() throws {
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        let mallory = TestDevice("mallory")
        var generator = SeededGenerator(seed: 2)
        let key = RoomKey.random(using: &generator)
        var events = base(alice: &alice, bob: &bob)
        let toOutsider = try keyEvent(key, from: &alice, to: [alice, mallory], at: t + 4)
        let again = alice.sign(room, EventType.encryption, EncryptionSettings(mode: .epochs, history: .shared).jsonObject, at: t + 5)
        events += [toOutsider, again]
        let verdicts = verdicts(events)
        #expect(verdicts[events.count - 2] == .rejected("device \(mallory.publicKey.prefix(12))… is not a joined or invited device of the room"))
        #expect(verdicts[events.count - 1] == .rejected("the room's encryption was already set; it never changes"))

        var carol = TestDevice("carol")
        let plainRoom = carol.create("plain", at: t) + [carol.sign("plain", EventType.encrypted, sealed(key, "x"), at: t + 1)]
        let replay = RoomReplay(roomID: "plain", events: plainRoom)
        #expect(replay.verdicts[plainRoom[2].hash] == .rejected("the room is not encrypted; m.room.encrypted is refused"))
    }

    @Test func `only a holder re-shares a key, and after a removal the state records it so the next sender starts a new epoch`() throws {
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        var generator = SeededGenerator(seed: 3)
        let key = RoomKey.random(using: &generator)
        var events = base(alice: &alice, bob: &bob)
        events.append(try keyEvent(key, from: &alice, to: [alice], at: t + 4))
        let reshareByNonHolder = try keyEvent(key, from: &bob, to: [bob], at: t + 5)
        let kick = alice.membership(room, .leave, of: "bob", at: t + 6)
        events += [reshareByNonHolder, kick]
        let replay = RoomReplay(roomID: room, events: events)
        #expect(replay.verdicts[reshareByNonHolder.hash] == .rejected("key \(key.keyID.prefix(16))… was never given to this device, so it cannot share it"))
        let record = try #require(replay.state.roomKeys[key.keyID])
        #expect(record.holders == [alice.publicKey])
        #expect(try #require(replay.state.lastDeviceRemoval) > record.introducedAt)
        // Bob is gone: keys now go to Alice's device only.
        #expect(replay.state.keyRecipients.map(\.signingKey) == [alice.publicKey])
    }

    @Test func `a replayed old key event does not make an old epoch current`() throws {
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        var generator = SeededGenerator(seed: 4)
        let old = RoomKey.random(using: &generator)
        let new = RoomKey.random(using: &generator)
        var events = base(alice: &alice, bob: &bob)
        events.append(try keyEvent(old, from: &alice, to: [alice, bob], at: t + 4))
        events.append(try keyEvent(new, from: &alice, to: [alice, bob], at: t + 5))
        // Bob shares the old key again later: accepted as a re-share, but the epoch still starts where it started.
        events.append(try keyEvent(old, from: &bob, to: [alice], at: t + 6))
        let replay = RoomReplay(roomID: room, events: events)
        #expect(replay.verdicts[events.last!.hash] == .accepted)
        let newest = replay.state.roomKeys.values.max { $0.introducedAt < $1.introducedAt }
        #expect(newest?.keyID == new.keyID)
    }
}
