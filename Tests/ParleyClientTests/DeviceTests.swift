import Foundation
import ParleyBucket
import ParleyClient
import ParleyCore
import ParleyStore
import ParleyTesting
import Testing

@Suite struct DeviceTests {
    @Test func `a linked device joins the user's rooms, reads what history allows, writes on its own chain, and once removed reads nothing new`() async throws {
        let world = try BucketWorld(.folder)
        let clock = TestClock()
        let alice = world.client(try world.node("alice", clock: clock))
        let bob = world.client(try world.node("bob", clock: clock))
        _ = try await alice.createRoom("vault", bucket: world.url, encryption: .epochs(history: .shared))
        try alice.node.invite("vault", userID: "bob", key: bob.node.identity.signingKeyBase64)
        _ = try await alice.flush("vault")
        _ = try await bob.join(InviteCode(parsing: try #require(try alice.inviteCode("vault")).text))
        _ = try await alice.sync("vault")
        _ = try alice.node.send("vault", text: "before the second device")
        _ = try await alice.flush("vault")

        let code = try alice.node.linkDevice()
        _ = try await alice.flush("vault")
        let phone = world.client(try Node.installLinked(
            LinkCode(parsing: code.text, nowMs: clock.ms), home: ParleyHome(path: world.directory.file("alice-phone")), clock: clock.function))
        #expect(phone.node.identity.userID == "alice")
        #expect(phone.node.identity.signingKeyBase64 != alice.node.identity.signingKeyBase64)
        #expect(try await phone.joinLinkedRooms() == ["vault"])
        #expect(try phone.node.timeline("vault", limit: 100).compactMap(\.body) == ["before the second device"])

        let fromPhone = try phone.node.send("vault", text: "from my phone")
        #expect(fromPhone.event.senderID == "alice" && fromPhone.event.seq == 2)
        _ = try await phone.flush("vault")
        _ = try await bob.sync("vault")
        #expect(try bob.node.timeline("vault", limit: 100).compactMap(\.body) == ["before the second device", "from my phone"])

        _ = try await alice.sync("vault")
        let devices = try alice.node.devices()
        #expect(devices.map(\.signingKey) == [alice.node.identity.signingKeyBase64, phone.node.identity.signingKeyBase64])
        #expect(devices.allSatisfy { $0.joinedRooms == ["vault"] })

        #expect(try alice.node.removeDevice(phone.node.identity.signingKeyBase64) == ["vault"])
        _ = try await alice.flush("vault")
        _ = try await bob.sync("vault")
        _ = try bob.node.send("vault", text: "the phone is gone")
        _ = try await bob.flush("vault")
        _ = try await phone.sync("vault")
        let phoneView = try phone.node.timeline("vault", limit: 100)
        #expect(phoneView.last?.undecryptable == true)
        #expect(!phoneView.contains { $0.body == "the phone is gone" })
        #expect(throws: ClientError.self) { try phone.node.send("vault", text: "still mine?") }
        #expect(try alice.node.devices().map(\.signingKey) == [alice.node.identity.signingKeyBase64])
    }

    @Test func `an expired or damaged link code is refused`() throws {
        let directory = TemporaryDirectory()
        let home = ParleyHome(path: directory.file("alice"))
        _ = try Identity.create(userID: "alice", home: home)
        let node = try Node(home: home)
        let code = try node.linkDevice()
        #expect(throws: ClientError.self) { try LinkCode(parsing: code.text, nowMs: code.expiresMs + 1) }
        #expect(throws: ClientError.self) { try LinkCode(parsing: String(code.text.dropLast(10)), nowMs: 0) }
        #expect(throws: ClientError.self) { try node.removeDevice(node.identity.signingKeyBase64) }
    }
}
