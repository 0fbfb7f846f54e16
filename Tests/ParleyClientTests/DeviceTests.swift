import Crypto
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

        let phone = world.client(try world.node("alice", home: "alice-phone", clock: clock))
        let code = try alice.node.linkDevice(try LinkRequest(parsing: phone.node.identity.linkRequest(nowMs: clock.ms).text))
        _ = try await alice.flush("vault")
        try phone.node.acceptLink(try LinkCode(opening: code.text, identity: phone.node.identity, nowMs: clock.ms))
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

    @Test func `a link code opens only on the device it was made for, signed by the device it names, before it expires`() throws {
        let directory = TemporaryDirectory()
        func node(_ user: String, _ name: String) throws -> Node {
            let home = ParleyHome(path: directory.file(name))
            _ = try Identity.create(userID: user, home: home)
            return try Node(home: home)
        }
        let alice = try node("alice", "alice")
        let phone = try node("alice", "alice-phone")
        let laptop = try node("alice", "alice-laptop")
        let now = Node.systemClock()
        let code = try alice.linkDevice(phone.identity.linkRequest(nowMs: now))
        let opened = try LinkCode(opening: code.text, identity: phone.identity, nowMs: code.expiresMs)
        #expect(opened.requestCreatedMs == now)
        #expect(opened.linkedBy == alice.identity.signingKeyBase64 && opened.recipientKey == phone.identity.signingKeyBase64)

        func refusal(_ text: String, on device: Node, at nowMs: Int64? = nil) -> String {
            do {
                _ = try LinkCode(opening: text, identity: device.identity, nowMs: nowMs ?? now)
                return "opened"
            } catch { return error.message }
        }
        #expect(refusal(code.text, on: phone, at: code.expiresMs + 1).contains("expired"))
        #expect(refusal(code.text, on: laptop).contains("made for another device"))
        #expect(refusal(String(code.text.dropLast(10)), on: phone).contains("not a valid"))

        // Someone who knows only the phone's public keys (not its request's secret) cannot make a code it accepts.
        let mallory = try node("alice", "mallory")
        let guessed = LinkRequest(userID: "alice", binding: phone.identity.binding, createdMs: now, secret: [UInt8](repeating: 7, count: 32))
        #expect(refusal(try mallory.linkDevice(guessed).text, on: phone).contains("not made from this device's request"))
        // Whoever holds the request itself can: a code from another device given it opens.
        let resealed = try mallory.linkDevice(phone.identity.linkRequest(nowMs: now)).text
        #expect(refusal(resealed, on: phone) == "opened")
        // ...but cannot pass it off as made by a device whose signing key they lack.
        let relabelled = try Self.resealed(resealed, for: phone.identity) { $0["linked_by"] = .string(alice.identity.signingKeyBase64) }
        #expect(refusal(relabelled, on: phone).contains("signature"))
        // A request seen long ago is no use either, whatever expiry the code's maker writes and signs.
        let threeHoursAgo = now - 3 * 3_600_000
        let oldRequest = phone.identity.linkRequest(nowMs: threeHoursAgo)
        let pastHome = ParleyHome(path: directory.file("alice"))
        let aliceThen = try Node(home: pastHome, clock: { threeHoursAgo + 60_000 })
        let oldCode = try aliceThen.linkDevice(oldRequest)
        #expect(refusal(oldCode.text, on: phone).contains("expired"))
        let extended = try Self.resealed(oldCode.text, for: phone.identity, signedBy: mallory.identity.signingKey) { $0["expires_ms"] = .integer(now + 3_600_000) }
        #expect(refusal(extended, on: phone).contains("expired"), "a request three hours old")
        #expect(refusal(extended, on: phone, at: threeHoursAgo + 120_000) == "opened", "the same code while the request was fresh")
        // Nor is a request dated ahead of the clocks.
        #expect(throws: ClientError.self) { try alice.linkDevice(phone.identity.linkRequest(nowMs: now + 3_600_000)) }

        // A request is the new device's own, of the same user, recent, with keys that can be used.
        let bob = try node("bob", "bob")
        #expect(throws: ClientError.self) { try alice.linkDevice(bob.identity.linkRequest(nowMs: now)) }
        #expect(throws: ClientError.self) { try alice.linkDevice(alice.identity.linkRequest(nowMs: now)) }
        #expect(throws: ClientError.self) { try alice.linkDevice(phone.identity.linkRequest(nowMs: now - Node.linkRequestLifetimeMs - 60_000)) }
        let smallOrder = LinkRequest(
            userID: "alice", binding: DeviceBinding(signingKey: Base64.encode([1] + [UInt8](repeating: 0, count: 31)), exchangeKey: phone.identity.exchangeKeyBase64),
            createdMs: now, secret: guessed.secret)
        #expect(throws: ClientError.self) { try LinkRequest(parsing: smallOrder.text) }
        let zeroExchange = LinkRequest(
            userID: "alice", binding: DeviceBinding(signingKey: phone.identity.signingKeyBase64, exchangeKey: Base64.encode([UInt8](repeating: 0, count: 32))),
            createdMs: now, secret: guessed.secret)
        #expect(throws: ClientError.self) { try LinkRequest(parsing: zeroExchange.text) }
        #expect(try LinkRequest(parsing: phone.identity.linkRequest(nowMs: now).text) == phone.identity.linkRequest(nowMs: now))
        #expect(throws: ClientError.self) { try alice.removeDevice(alice.identity.signingKeyBase64) }
    }

    /// `code`, opened with `identity`, its payload changed by `change` and sealed again to the same device: what anyone
    /// who knows the device's public keys can make. With `signer`, signed again by that key (named as `linked_by`).
    static func resealed(
        _ code: String, for identity: Identity, signedBy signer: DeviceSigningKey? = nil, change: (inout JSONObject) -> Void
    ) throws -> String {
        var outer = try #require(CodeTextForTests.decode(code))
        let info = Data("parley.link.v2\n\(identity.signingKeyBase64)".utf8)
        let enc = try #require(outer["enc"]?.stringValue.flatMap(Base64.decode))
        var recipient = try HPKE.Recipient(privateKey: identity.exchangeKey, ciphersuite: KeySeal.ciphersuite, info: info, encapsulatedKey: Data(enc))
        let sealed = try #require(outer["sealed"]?.stringValue.flatMap(Base64.decode))
        var payload = try #require(try JSONParser().parse(Array(try recipient.open(sealed))).objectValue)
        change(&payload)
        if let signer {
            payload["signature"] = nil
            payload["linked_by"] = .string(signer.publicKeyBase64)
            payload["signature"] = .string(Base64.encode(signer.sign(Array("parley.link.v2\n".utf8) + CanonicalJSON.encode(.object(payload)))))
        }
        var sender = try HPKE.Sender(recipientKey: identity.exchangeKey.publicKey, ciphersuite: KeySeal.ciphersuite, info: info)
        outer["sealed"] = .string(Base64.encode(try sender.seal(CanonicalJSON.encode(.object(payload)))))
        outer["enc"] = .string(Base64.encode(sender.encapsulatedKey))
        return CodeTextForTests.encode(outer)
    }
}

/// The `parley-link:` text form, written out again here from PROTOCOL.md §14.8 rather than taken from the client.
enum CodeTextForTests {
    static func decode(_ text: String) -> JSONObject? {
        guard text.hasPrefix(LinkCode.prefix) else { return nil }
        var base64 = String(text.dropFirst(LinkCode.prefix.count).map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        while base64.utf8.count % 4 != 0 { base64 += "=" }
        return Base64.decode(base64).flatMap { try? JSONParser().parse($0).objectValue }
    }

    static func encode(_ object: JSONObject) -> String {
        LinkCode.prefix + Base64.encode(CanonicalJSON.encode(.object(object))).replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}

/// `parley device` and `parley init --link` through the executable.
@Suite struct DeviceCLITests {
    @Test func `device link, init --link, device list and device remove work from the command line`() throws {
        let nodes = try TwoNodes()
        let bucket = "file://\(nodes.directory.file("bucket"))"
        try #require(try nodes.alice.run(["room", "create", "team", "--bucket", bucket, "--encrypted"]).status == 0)
        try #require(try nodes.alice.run(["send", "team", "first words", "--flush"]).status == 0)
        let laptop = ParleyCommand(home: nodes.directory.file("alice-laptop"))
        #expect(try laptop.run(["init", "--link", "parley-link:AAAA"]).stderr.contains("parley init --user"), "nothing to link yet")
        try #require(try laptop.run(["init", "--user", "alice"]).status == 0)
        let requested = try laptop.run(["device", "request", "--json"])
        try #require(requested.status == 0, "\(requested.stderr)")
        let request = try JSONParser().parse(Array(requested.stdout.utf8))["request"]!.text

        // In text, both sides name the new device's key, so the user can compare them.
        let laptopKey = try #require(try JSONParser().parse(Array(requested.stdout.utf8))["signing_key"]?.text)
        #expect(try laptop.run(["device", "request"]).stdout.contains("this device: \(laptopKey)"))
        let linked = try nodes.alice.run(["device", "link", request, "--json"])
        try #require(linked.status == 0, "\(linked.stderr)")
        let code = try JSONParser().parse(Array(linked.stdout.utf8))["link_code"]!.text
        #expect(try JSONParser().parse(Array(linked.stdout.utf8))["signing_key"]?.text == laptopKey)
        #expect(try nodes.bob.run(["init", "--link", code]).stderr.contains("made for another device"))

        let installed = try laptop.run(["init", "--link", code, "--json"])
        try #require(installed.status == 0, "\(installed.stderr)")
        let identity = try JSONParser().parse(Array(installed.stdout.utf8))
        #expect(identity["user_id"]?.text == "alice")
        #expect(identity["joined_rooms"]?.array.map(\.text) == ["team"])
        #expect(try nodes.log(laptop, "team").contains { $0["body"]?.text == "first words" })

        try #require(try nodes.alice.run(["sync"]).status == 0)
        let listed = try JSONParser().parse(Array(try nodes.alice.run(["device", "list", "--json"]).stdout.utf8)).array
        #expect(listed.count == 2)
        #expect(identity["signing_key"]?.text == laptopKey)
        #expect(listed.contains { $0["signing_key"]?.text == laptopKey && $0["joined_rooms"]?.array.map(\.text) == ["team"] })

        let removed = try nodes.alice.run(["device", "remove", laptopKey])
        try #require(removed.status == 0, "\(removed.stderr)")
        #expect(try nodes.alice.run(["send", "team", "laptop may not read this", "--flush"]).status == 0)
        #expect(try laptop.run(["sync"]).status == 0)
        #expect(!(try nodes.log(laptop, "team").contains { $0["body"]?.text == "laptop may not read this" }))
        #expect(try laptop.run(["send", "team", "hello?"]).status != 0)
    }
}
