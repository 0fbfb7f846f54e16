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
        let extended = try Self.resealed(oldCode.text, for: phone.identity, signedBy: mallory.identity.signingKey) {
            $0["expires_ms"] = .integer(now + 3_600_000)
        }
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
            userID: "alice",
            binding: DeviceBinding(signingKey: Base64.encode([1] + [UInt8](repeating: 0, count: 31)), exchangeKey: phone.identity.exchangeKeyBase64),
            createdMs: now, secret: guessed.secret)
        #expect(throws: ClientError.self) { try LinkRequest(parsing: smallOrder.text) }
        let zeroExchange = LinkRequest(
            userID: "alice", binding: DeviceBinding(signingKey: phone.identity.signingKeyBase64, exchangeKey: Base64.encode([UInt8](repeating: 0, count: 32))),
            createdMs: now, secret: guessed.secret)
        #expect(throws: ClientError.self) { try LinkRequest(parsing: zeroExchange.text) }
        #expect(try LinkRequest(parsing: phone.identity.linkRequest(nowMs: now).text) == phone.identity.linkRequest(nowMs: now))
        #expect(throws: ClientError.self) { try alice.removeDevice(alice.identity.signingKeyBase64) }
    }

    /// The identity whose secret form (what `device.key` holds) is `secret`, loaded from a home of its own.
    static func identity(secret: JSONValue, in directory: TemporaryDirectory) throws -> Identity {
        let home = ParleyHome(path: directory.file("device"))
        try FileManager.default.createDirectory(atPath: home.path, withIntermediateDirectories: true)
        try #require(
            FileManager.default.createFile(
                atPath: home.secretKeyPath, contents: Data(CanonicalJSON.encode(secret)), attributes: [.posixPermissions: 0o600]))
        return try Identity.load(home: home)
    }

    @Test func `the vectors' link codes open with the recipient's keys, in the current version and in version 2`() throws {
        for vector in try Vectors.load("codes.json")["link_codes"]!.array {
            let directory = TemporaryDirectory()
            let identity = try Self.identity(secret: vector["recipient"]!, in: directory)
            let code = try LinkCode(opening: vector["text"]!.text, identity: identity, nowMs: vector["now_ms"]!.integerValue!)
            #expect(code.rooms.map(\.json) == vector["rooms"]!.array, "\(vector["name"]!.text)")
            #expect(code.linkedBy == vector["linked_by"]!.text && code.expiresMs == vector["expires_ms"]!.integerValue)
            #expect(code.requestCreatedMs == vector["request_created_ms"]!.integerValue)
            #expect(
                code.preSharedSecrets.map {
                    ["from_passphrase": .bool($0.fromPassphrase), "room_id": .string($0.roomID), "secret": .string(Base64.encode($0.secret))] as JSONValue
                }
                    == vector["psk_secrets"]!.array)
        }
    }

    @Test func `a link code an earlier version of Parley made still opens, its bucket rooms read as rooms with one bucket location`() throws {
        // Made by `parley device link` before link codes carried locations (version 2), for the device whose secret
        // key is this one, in a home with a plain room and a pre-shared-key room in a folder bucket.
        let secret: JSONValue = [
            "exchange_private_key": "ULaHXU64C4eCk0TJal2RrzlhYoajIspKk1JJj+QAP0A=", "signing_seed": "YlUQNZe1ib68PiUgEF4OVZ0JjD6d5IDksd1pFTx7B5E=",
            "user_id": "alice",
        ]
        let text =
            "parley-link:eyJlbmMiOiIrUjlaaEdMVVhES080SnZ4YVZmUWliZGxUNlNlenhtdDZLdDJTSG8xWWt3PSIsInNlYWxlZCI6Im1CbHF0bldyNlVrcHdtTSt6c25pKzhsVGVWM3J3NTNOMC9tQlIxNGFwcW1BRWNZbU82T3pVVXArREpaMVJDRmV4eC9SYjM1SE1OR1VIMzlMYU9LblFybVc5WVcySzFGMy92ZW1rMkJBQ2d6ZmVmMXUyYUF4VlFVZ2lUR3lpOWNRSDNsOGRQZWV6a2pVazFTdUhBY3FUWjlVelB3QURJZ3FxeSt5SjBZR3BNTGZyRGRZUVlhSTdVRzVpWm5Zek9PdTNEeXBtTytxaTlaVWFuVTZMRTZHLzgzeEhlNXJ1UTFCeDNHc3djWlVUdVVKNUVzU01TZHFqdmNUS0p5R0lBOU1FNVRuWHZRbThkbTY5WEdPU0VCRGxZSjcxSFBid250OUNJVndOTGFMbFNYaWZ1Yk5rUm5Ya0JqWlBOQ1FlYmxGN29Pd09WUnlEaW04bEc4ck1Od3FSUmphUmdKV0ZXWTAzWVFHVXdtcUdQZUhhb2IzUWd6N0swOHNtajU5RisvcnpFUUxyTDJPaHlZMUVZcDl1aFU1SWgrK0Z5WHEzWkVPa3FiSEV6UlhhQklGL2MraVhjRTdPeW9lOGtqOHhTUWpQU2RIbGNDT1BLcFRsdEdTZ3dib0xVaXY2emJMZGkyRVRHS2NKeXZZUnl0Smx5eVJ6WFRidUQyMWVQa1FVR3VzVGNBWHlTTUhCdzlpeWNqVWgwVXNJZ0FRNUtEOHI2Tk5rUXJoL0R0UFlmRG81ZWZMaWhsTGQvMFRseFI2eFh6amxLTzNPNnJWUDlJVi9sSFRvZmh3L05PK0VNU1pSV25IOUova0gyT2M4TUhBaXlyZ1VuWnZBTGJpckxneDZPamxiSC9uNU5xS0FBa1lVWVpmTDFObW1nMGlWeHllN0FYRDFpRWtmd1pnSmd3V1JDejBqdUVVeVYyaHVjekIxR0pGeURZbUtsSHNrZVZkWC9BUUsrQ2NkSG4vWTk0ZktNYjdtYTBuL0Z6clZ3SDZla2NjRXBKQk03RVVHdG1CbTVRcmtGRElISVNuc2ptaFJ4cEdOMjQ0Sy9VYStxd0lOWDFlVGgzYmViNnhSeTZYM1VidFQwK1hUWEFEU0FlcUxOOGp2MEVlSzhybnYvWE1GZ1lOTDlESzFkODVBUjFsc3hmb2tiMVFNOE5rN0N5VkV3ZEpmVkllaG5oQUdUTi9QSFczQWR0SlRuRnFUTC9Va21XWU5vVTFWN3Q4cUk1RHQrSUxwem9rV1dCNjJ5VzJ4YWp1MENIakZWbldESHROQVJIemVSbTJYdytlUGZFUHhOQ2JmMEhaTG01OC9HNThEVUlqYVhsanJvWWhnVElnZVVRdWN3dGJxazI4WDF1MWEzZDZpN3o5Vk4xRGFzU2QiLCJ0byI6InNSWTgyb3kzS245KysrWUluaUNXVFUvZkFPMWVtcDlNemhzU3ZuTjdkbjg9IiwidiI6Mn0"
        let directory = TemporaryDirectory()
        let code = try LinkCode(opening: text, identity: try Self.identity(secret: secret, in: directory), nowMs: 1_796_362_366_300)
        let creator = "41d86ef709ef6ca6ba45d974289f716548e31482865020df3346131922594af0"
        #expect(
            code.rooms
                == ["team", "vault"].map { LinkedRoom(roomID: $0, creatorFingerprint: creator, locations: [.bucket(url: "file:///tmp/v1codes/bucket")]) })
        #expect(
            code.preSharedSecrets.map(\.roomID) == ["vault"]
                && code.preSharedSecrets.map { Base64.encode($0.secret) } == ["QHG+/ZAxF37GES/zYCBN6fiTG6QDDpW+uywXl51fHlA="])
    }

    @Test func `a linked room the code lists at no location this node can use is not registered, and the node says why`() throws {
        let directory = TemporaryDirectory()
        func node(_ name: String) throws -> Node {
            let home = ParleyHome(path: directory.file(name))
            _ = try Identity.create(userID: "alice", home: home)
            return try Node(home: home)
        }
        let alice = try node("alice")
        let phone = try node("alice-phone")
        let now = Node.systemClock()
        let fingerprint = String(repeating: "ab", count: 32)
        let rooms: JSONValue = [
            LinkedRoom(roomID: "far", creatorFingerprint: fingerprint, locations: [.relay(url: "wss://relay.example.net/"), .bucket(url: "gs://chat")]).json,
            LinkedRoom(roomID: "near", creatorFingerprint: fingerprint, locations: [.peer(address: "192.0.2.7:7000"), .bucket(url: "file:///srv/chat")]).json,
        ]
        let made = try alice.linkDevice(phone.identity.linkRequest(nowMs: now)).text
        let text = try Self.resealed(made, for: phone.identity, signedBy: alice.identity.signingKey) { $0["rooms"] = rooms }
        let unusable = try phone.acceptLink(try LinkCode(opening: text, identity: phone.identity, nowMs: now))
        #expect(unusable.map(\.code) == [.noUsableLocation])
        #expect(unusable.first?.message == "The link code's room far lists no location this version of Parley can use:")
        #expect(unusable.first?.details.first == "a relay, wss://relay.example.net/")
        #expect(phone.home.recordedBucketRooms().map(\.roomID) == ["near"])
        #expect(phone.home.recordedBucketRooms().map(\.bucketURL) == ["file:///srv/chat"])
    }

    /// `code`, opened with `identity`, its payload changed by `change` and sealed again to the same device: what anyone
    /// who knows the device's public keys can make. With `signer`, signed again by that key (named as `linked_by`).
    static func resealed(
        _ code: String, for identity: Identity, signedBy signer: DeviceSigningKey? = nil, change: (inout JSONObject) -> Void
    ) throws -> String {
        var outer = try #require(CodeTextForTests.decode(code))
        let info = Data("parley.link.v3\n\(identity.signingKeyBase64)".utf8)
        let enc = try #require(outer["enc"]?.stringValue.flatMap(Base64.decode))
        var recipient = try HPKE.Recipient(privateKey: identity.exchangeKey, ciphersuite: KeySeal.ciphersuite, info: info, encapsulatedKey: Data(enc))
        let sealed = try #require(outer["sealed"]?.stringValue.flatMap(Base64.decode))
        var payload = try #require(try JSONParser().parse(Array(try recipient.open(sealed))).objectValue)
        change(&payload)
        if let signer {
            payload["signature"] = nil
            payload["linked_by"] = .string(signer.publicKeyBase64)
            payload["signature"] = .string(Base64.encode(signer.sign(Array("parley.link.v3\n".utf8) + CanonicalJSON.encode(.object(payload)))))
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
        LinkCode.prefix
            + Base64.encode(CanonicalJSON.encode(.object(object))).replacingOccurrences(of: "+", with: "-")
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
