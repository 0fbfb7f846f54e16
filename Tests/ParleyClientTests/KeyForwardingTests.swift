import Foundation
import ParleyBucket
import ParleyCore
import ParleyStore
import ParleyTesting
import Testing

@_spi(Tools) @testable import ParleyClient

/// Messages a member may read reach them whatever order devices learn of each other (docs/PROTOCOL.md §14.10), and
/// nothing the history rule hides ever does.
@Suite struct KeyForwardingTests {
    /// One clock for every node, so "later" means the same to all of them.
    let clock = TestClock()

    func timelineBodies(_ client: BucketClient, _ roomID: String) throws -> [String] {
        try client.node.timeline(roomID, limit: 100).compactMap(\.body)
    }

    func undecryptable(_ client: BucketClient, _ roomID: String) throws -> Int {
        try client.node.timeline(roomID, limit: 100).filter(\.undecryptable).count
    }

    /// Alice creates `room` (epoch keys, history from join) and invites carol by her signing key only, as `dm` does.
    func aliceInvitesCarol(_ world: BucketWorld, room: String = "dm-1") async throws -> (alice: BucketClient, carol: BucketClient, code: InviteCode) {
        let alice = world.client(try world.node("alice", clock: clock))
        let carol = world.client(try world.node("carol", clock: clock))
        _ = try await alice.createRoom(room, bucket: world.url, encryption: .epochs(history: .joined))
        try alice.node.invite(room, userID: "carol", key: carol.node.identity.signingKeyBase64)
        _ = try await alice.flush(room)
        return (alice, carol, try #require(try alice.inviteCode(room)))
    }

    @Test("A message sealed before the sender saw the recipient join becomes readable in the next sync rounds", arguments: BucketKind.all)
    func sealedBeforeTheJoinWasSeen(kind: BucketKind) async throws {
        let world = try BucketWorld(kind)
        let (alice, carol, code) = try await aliceInvitesCarol(world)
        clock.advance(1_000)
        _ = try await carol.join(code)
        clock.advance(1_000)
        // Alice writes at once: her node has not read carol's join, so the message is sealed to alice's devices only.
        _ = try alice.node.send("dm-1", text: "are you there?")
        _ = try await alice.flush("dm-1")
        clock.advance(1_000)
        _ = try await carol.sync("dm-1")
        #expect(try undecryptable(carol, "dm-1") == 1)

        // No user action from here on: sync rounds on both sides.
        for _ in 0..<2 {
            clock.advance(1_000)
            _ = try await alice.sync("dm-1")
            clock.advance(1_000)
            _ = try await carol.sync("dm-1")
        }
        #expect(try timelineBodies(carol, "dm-1") == ["are you there?"])
        #expect(try undecryptable(carol, "dm-1") == 0)
    }

    @Test("A key forwarded by a member that is not the message's key neither opens it nor stops the true one from opening it")
    func garbageForwardIsHarmless() async throws {
        let world = try BucketWorld(.folder)
        let (alice, carol, code) = try await aliceInvitesCarol(world, room: "team")
        let mallory = world.client(try world.node("mallory", clock: clock))
        try alice.node.invite("team", userID: "mallory", key: mallory.node.identity.signingKeyBase64)
        _ = try await alice.flush("team")
        _ = try await mallory.join(try #require(try alice.inviteCode("team")))
        _ = try await alice.sync("team")
        clock.advance(1_000)
        _ = try await carol.join(code)
        clock.advance(1_000)
        let message = try alice.node.send("team", text: "the real text")
        _ = try await alice.flush("team")
        // Mallory has read carol's join and forwards her a random key for alice's message, before alice can.
        _ = try await mallory.sync("team")
        let carolBinding = try #require(try mallory.node.roomState("team").members["carol"]?.devices.values.first)
        var generator = SystemRandomNumberGenerator()
        let garbage = try MessageKey(bytes: (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
        let forward = try ForwardSeal.seal(
            [ForwardedKey(position: ChainPosition(message.event), key: garbage)], roomID: "team", senderKey: mallory.node.identity.signingKeyBase64,
            recipientKey: carolBinding.signingKey, exchangeKey: try #require(carolBinding.exchangeKey.flatMap(Base64.decode)))
        _ = try mallory.node.publish(roomID: "team", type: EventType.keyForward, content: forward.jsonObject)
        _ = try await mallory.flush("team")
        clock.advance(1_000)
        _ = try await carol.sync("team")
        #expect(try undecryptable(carol, "team") == 1)
        #expect(try carol.node.store.messageKeys(roomID: "team", at: [ChainPosition(message.event)]).isEmpty)
        // Alice's forward still opens it.
        clock.advance(1_000)
        _ = try await alice.sync("team")
        clock.advance(1_000)
        _ = try await carol.sync("team")
        #expect(try timelineBodies(carol, "team") == ["the real text"])
    }

    @Test("A member never receives the key of a message sent before their invite, even when they ask for it")
    func historyBeforeTheInviteStaysHidden() async throws {
        let world = try BucketWorld(.folder)
        let alice = world.client(try world.node("alice", clock: clock))
        let carol = world.client(try world.node("carol", clock: clock))
        _ = try await alice.createRoom("dm-1", bucket: world.url, encryption: .epochs(history: .joined))
        let before = try alice.node.send("dm-1", text: "before carol")
        clock.advance(1_000)
        try alice.node.invite("dm-1", userID: "carol", key: carol.node.identity.signingKeyBase64)
        _ = try await alice.flush("dm-1")
        _ = try await carol.join(try #require(try alice.inviteCode("dm-1")))
        clock.advance(1_000)
        // Carol asks outright for the key of the earlier message; alice's node must refuse it, and not only because
        // carol's own node would not ask.
        _ = try carol.node.publish(
            roomID: "dm-1", type: EventType.keyRequest, content: KeyRequestContent(events: [ChainPosition(before.event)]).jsonObject)
        _ = try await carol.flush("dm-1")
        for _ in 0..<2 {
            clock.advance(Node.keyRequestGraceMs)
            _ = try await alice.sync("dm-1")
            clock.advance(1_000)
            _ = try await carol.sync("dm-1")
        }
        let after = try alice.node.send("dm-1", text: "after carol")
        _ = try await alice.flush("dm-1")
        _ = try await carol.sync("dm-1")
        #expect(try timelineBodies(carol, "dm-1") == ["after carol"])
        #expect(try undecryptable(carol, "dm-1") == 1)
        #expect(try carol.node.store.messageKeys(roomID: "dm-1", at: [ChainPosition(before.event)]).isEmpty)
        #expect(try carol.node.store.event(eventID: after.event.eventID)?.status == .accepted)
    }

    @Test("A device linked while a member was offline reads what that member sends before seeing the link, after their next sync")
    func linkedWhileOffline() async throws {
        let world = try BucketWorld(.folder)
        let alice = world.client(try world.node("alice", clock: clock))
        let bob = world.client(try world.node("bob", clock: clock))
        _ = try await alice.createRoom("vault", bucket: world.url, encryption: .epochs(history: .joined))
        try alice.node.invite("vault", userID: "bob", key: bob.node.identity.signingKeyBase64)
        _ = try await alice.flush("vault")
        _ = try await bob.join(InviteCode(parsing: try #require(try alice.inviteCode("vault")).text))
        _ = try await alice.sync("vault")
        // Bob goes offline; alice links her laptop meanwhile.
        clock.advance(1_000)
        let laptop = world.client(try world.node("alice", home: "alice-laptop", clock: clock))
        let code = try alice.node.linkDevice(try LinkRequest(parsing: laptop.node.identity.linkRequest(nowMs: clock.ms).text))
        _ = try await alice.flush("vault")
        try laptop.node.acceptLink(try LinkCode(opening: code.text, identity: laptop.node.identity, nowMs: clock.ms))
        #expect(try await laptop.joinLinkedRooms() == ["vault"])
        // Bob writes before his node has read the link: sealed to alice's first device and his own.
        clock.advance(1_000)
        _ = try bob.node.send("vault", text: "written offline")
        _ = try await bob.flush("vault")
        clock.advance(1_000)
        _ = try await laptop.sync("vault")
        #expect(try undecryptable(laptop, "vault") == 1)
        // Bob's next sync reads the link and forwards the key to the laptop.
        let back = try await bob.sync("vault")
        #expect(back.keys.forwardedKeys == 1)
        clock.advance(1_000)
        _ = try await laptop.sync("vault")
        #expect(try timelineBodies(laptop, "vault") == ["written offline"])
    }

    @Test("When the sender is gone, another member holding the key answers the request after a grace period")
    func anotherHolderAnswers() async throws {
        let world = try BucketWorld(.folder)
        let (alice, carol, code) = try await aliceInvitesCarol(world, room: "team")
        let bob = world.client(try world.node("bob", clock: clock))
        try alice.node.invite("team", userID: "bob", key: bob.node.identity.signingKeyBase64)
        _ = try await alice.flush("team")
        _ = try await bob.join(try #require(try alice.inviteCode("team")))
        _ = try await alice.sync("team")
        clock.advance(1_000)
        _ = try await carol.join(code)
        clock.advance(1_000)
        // Alice has read bob's join but not carol's: her message is sealed to alice and bob. Then alice goes away.
        _ = try alice.node.send("team", text: "for bob and carol")
        _ = try await alice.flush("team")
        _ = try await bob.sync("team")
        #expect(try timelineBodies(bob, "team") == ["for bob and carol"])
        _ = try await carol.sync("team")
        #expect(try undecryptable(carol, "team") == 1)
        // Bob sees carol's request but leaves it to alice for the grace period...
        clock.advance(1_000)
        _ = try await bob.sync("team")
        _ = try await carol.sync("team")
        #expect(try undecryptable(carol, "team") == 1)
        // ...then answers it.
        clock.advance(Node.keyRequestGraceMs)
        _ = try await bob.sync("team")
        _ = try await carol.sync("team")
        #expect(try timelineBodies(carol, "team") == ["for bob and carol"])
    }
}
