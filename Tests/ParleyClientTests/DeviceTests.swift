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

/// `parley device` and `parley init --link` through the executable.
@Suite struct DeviceCLITests {
    @Test func `device link, init --link, device list and device remove work from the command line`() throws {
        let nodes = try TwoNodes()
        let bucket = "file://\(nodes.directory.file("bucket"))"
        try #require(try nodes.alice.run(["room", "create", "team", "--bucket", bucket, "--encrypted"]).status == 0)
        try #require(try nodes.alice.run(["send", "team", "first words", "--flush"]).status == 0)
        let linked = try nodes.alice.run(["device", "link", "--json"])
        try #require(linked.status == 0, "\(linked.stderr)")
        let code = try JSONParser().parse(Array(linked.stdout.utf8))["link_code"]!.text

        let laptop = ParleyCommand(home: nodes.directory.file("alice-laptop"))
        let installed = try laptop.run(["init", "--link", code, "--json"])
        try #require(installed.status == 0, "\(installed.stderr)")
        let identity = try JSONParser().parse(Array(installed.stdout.utf8))
        #expect(identity["user_id"]?.text == "alice")
        #expect(identity["joined_rooms"]?.array.map(\.text) == ["team"])
        #expect(try nodes.log(laptop, "team").contains { $0["body"]?.text == "first words" })
        #expect(try laptop.run(["init", "--link", code]).status != 0)

        try #require(try nodes.alice.run(["sync"]).status == 0)
        let listed = try JSONParser().parse(Array(try nodes.alice.run(["device", "list", "--json"]).stdout.utf8)).array
        #expect(listed.count == 2)
        let laptopKey = identity["signing_key"]!.text
        #expect(listed.contains { $0["signing_key"]?.text == laptopKey && $0["joined_rooms"]?.array.map(\.text) == ["team"] })

        let removed = try nodes.alice.run(["device", "remove", laptopKey])
        try #require(removed.status == 0, "\(removed.stderr)")
        #expect(try nodes.alice.run(["send", "team", "laptop may not read this", "--flush"]).status == 0)
        #expect(try laptop.run(["sync"]).status == 0)
        #expect(!(try nodes.log(laptop, "team").contains { $0["body"]?.text == "laptop may not read this" }))
        #expect(try laptop.run(["send", "team", "hello?"]).status != 0)
    }
}
