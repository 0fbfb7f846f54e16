import Foundation
import ParleyBucket
import ParleyCore
import ParleyTesting
import Testing

/// Direct messages and encrypted rooms through the `parley` executable.
@Suite struct DirectMessageCLITests {
    @Test func `a direct message in a folder bucket reaches the other person, and the bucket holds no plaintext`() async throws {
        let nodes = try TwoNodes()
        let bucket = "file://\(nodes.directory.file("bucket"))"
        let started = try nodes.alice.run(["dm", "bob", "--key", nodes.bobKey, "--bucket", bucket, "--json"])
        try #require(started.status == 0, "\(started.stderr)")
        let reply = try JSONParser().parse(Array(started.stdout.utf8))
        let roomID = reply["room_id"]!.text
        #expect(roomID.hasPrefix("dm-"))
        let joined = try nodes.bob.run(["room", "join", reply["invite_code"]!.text])
        try #require(joined.status == 0, "\(joined.stderr)")
        #expect(try nodes.alice.run(["sync"]).status == 0)
        let sent = try nodes.alice.run(["send", roomID, "quokka whispers", "--flush"])
        try #require(sent.status == 0, "\(sent.stderr)")
        #expect(try nodes.bob.run(["sync"]).status == 0)
        #expect(try nodes.log(nodes.bob, roomID).contains { $0["body"]?.text == "quokka whispers" })

        let listed = try nodes.bob.run(["dm", "list", "--json"])
        try #require(listed.status == 0, "\(listed.stderr)")
        let conversations = try JSONParser().parse(Array(listed.stdout.utf8)).array
        #expect(conversations.map { $0["room_id"]!.text } == [roomID])
        #expect(conversations.first?["user_id"]?.text == "alice")
        #expect(conversations.first?["last"]?["body"]?.text == "quokka whispers")

        let info = try JSONParser().parse(Array(try nodes.bob.run(["room", "info", roomID, "--json"]).stdout.utf8))
        #expect(info["encryption"]?["history"]?.text == "joined")

        let files = try FileManager.default.subpathsOfDirectory(atPath: nodes.directory.file("bucket"))
        for file in files {
            let text = String(decoding: FileManager.default.contents(atPath: nodes.directory.file("bucket") + "/" + file) ?? Data(), as: UTF8.self)
            #expect(!text.contains("quokka"), "plaintext in \(file)")
        }
    }

    @Test func `a direct message sent before the sender's node saw the join becomes readable after a sync on each side`() throws {
        let nodes = try TwoNodes()
        let bucket = "file://\(nodes.directory.file("bucket"))"
        let started = try nodes.alice.run(["dm", "bob", "--key", nodes.bobKey, "--bucket", bucket, "--json"])
        try #require(started.status == 0, "\(started.stderr)")
        let reply = try JSONParser().parse(Array(started.stdout.utf8))
        let roomID = reply["room_id"]!.text
        try #require(try nodes.bob.run(["room", "join", reply["invite_code"]!.text]).status == 0)
        // Alice writes at once, before her node has read bob's join.
        try #require(try nodes.alice.run(["send", roomID, "capybara at dawn", "--flush"]).status == 0)
        #expect(try nodes.bob.run(["sync"]).status == 0)
        #expect(try nodes.log(nodes.bob, roomID).contains { $0["undecryptable"]?.boolValue == true })
        let aliceSync = try nodes.alice.run(["sync"])
        #expect(aliceSync.status == 0 && aliceSync.stdout.contains("forwarded 1 message key(s) to other devices"), "\(aliceSync.stdout) \(aliceSync.stderr)")
        #expect(try nodes.bob.run(["sync"]).status == 0)
        let log = try nodes.log(nodes.bob, roomID)
        #expect(log.contains { $0["body"]?.text == "capybara at dawn" }, "\(log)")
        #expect(!log.contains { $0["undecryptable"]?.boolValue == true })
    }

    @Test func `an encrypted room shares by export and import, and only members read it`() throws {
        let nodes = try TwoNodes()
        try #require(try nodes.alice.run(["room", "create", "hidden", "--encrypted"]).status == 0)
        try #require(try nodes.alice.run(["room", "invite", "hidden", "bob", "--key", nodes.bobKey]).status == 0)
        try nodes.sync(from: nodes.alice, to: nodes.bob, "hidden")
        try #require(try nodes.bob.run(["room", "join", "hidden"]).status == 0)
        try nodes.sync(from: nodes.bob, to: nodes.alice, "hidden")
        try #require(try nodes.alice.run(["send", "hidden", "narwhal"]).status == 0)
        let exported = try nodes.alice.run(["events", "hidden"])
        #expect(!exported.stdout.contains("narwhal"))
        try nodes.sync(from: nodes.alice, to: nodes.bob, "hidden")
        #expect(try nodes.log(nodes.bob, "hidden").contains { $0["body"]?.text == "narwhal" })
        #expect(try nodes.search(nodes.bob, "narwhal") == 1)
    }

    @Test func `naming an encrypted room warns that the name and topic are not encrypted, and reasons are refused`() throws {
        let nodes = try TwoNodes()
        let created = try nodes.alice.run(["room", "create", "hidden", "--encrypted", "--name", "Secret plans"])
        #expect(created.status == 0 && created.stderr.contains("its name is not"))
        let topic = try nodes.alice.run(["room", "topic", "hidden", "launch on friday"])
        #expect(topic.status == 0 && topic.stderr.contains("its topic is not"))
        try #require(try nodes.alice.run(["room", "create", "open", "--name", "Open plans"]).stderr.isEmpty)
        try #require(try nodes.alice.run(["room", "invite", "hidden", "bob", "--key", nodes.bobKey]).status == 0)
        let kick = try nodes.alice.run(["room", "kick", "hidden", "bob", "--reason", "the launch leaked"])
        #expect(kick.status == 1 && kick.stderr.contains("unencrypted"))
    }
}

/// Opening a direct message again, and how device changes show in direct messages and timelines.
@Suite struct DirectMessageReuseCLITests {
    func start(_ node: ParleyCommand, _ arguments: [String]) throws -> JSONValue {
        let result = try node.run(["dm"] + arguments + ["--json"])
        try #require(result.status == 0, "\(result.stderr)")
        return try JSONParser().parse(Array(result.stdout.utf8))
    }

    @Test func `a second dm with the same user opens the first, with or without the key`() throws {
        let nodes = try TwoNodes()
        let first = try start(nodes.alice, ["bob", "--key", nodes.bobKey])
        #expect(first["existing"] == .bool(false))
        let again = try start(nodes.alice, ["bob", "--key", nodes.bobKey])
        #expect(again["room_id"] == first["room_id"] && again["existing"] == .bool(true))
        #expect(try start(nodes.alice, ["bob"])["room_id"] == first["room_id"])
        let note = try nodes.alice.run(["dm", "bob"])
        #expect(note.stdout == first["room_id"]!.text + "\n")
        #expect(note.stderr.contains("note: you already have this direct message with bob; `parley dm bob --new` starts another."))
    }

    @Test func `dm --new starts another direct message with the same user`() throws {
        let nodes = try TwoNodes()
        let first = try start(nodes.alice, ["bob", "--key", nodes.bobKey])
        let second = try start(nodes.alice, ["bob", "--key", nodes.bobKey, "--new"])
        #expect(second["room_id"] != first["room_id"] && second["existing"] == .bool(false))
        #expect(try JSONParser().parse(Array(try nodes.alice.run(["dm", "list", "--json"]).stdout.utf8)).array.count == 2)
    }

    @Test func `a first dm without a key says where to get it`() throws {
        let nodes = try TwoNodes()
        let result = try nodes.alice.run(["dm", "bob"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("This node holds no direct message with bob: starting one needs their device's signing key."))
        #expect(result.stderr.contains("Give it with --key KEY: the `signing key:` line of `parley whoami` on their device."))
    }

    @Test func `linking and removing a device show as device changes, and dm list keeps the last message`() throws {
        let nodes = try TwoNodes()
        let roomID = try start(nodes.alice, ["bob", "--key", nodes.bobKey])["room_id"]!.text
        try #require(try nodes.alice.run(["send", roomID, "the last word"]).status == 0)
        let laptop = ParleyCommand(home: nodes.directory.file("laptop"))
        try #require(try laptop.run(["init", "--user", "alice"]).status == 0)
        let request = try JSONParser().parse(Array(try laptop.run(["device", "request", "--json"]).stdout.utf8))
        let linked = try nodes.alice.run(["device", "link", request["request"]!.text])
        try #require(linked.status == 0, "\(linked.stderr)")
        let laptopKey = request["signing_key"]!.text
        try #require(try nodes.alice.run(["device", "remove", laptopKey]).status == 0)

        let log = try nodes.alice.run(["log", roomID]).stdout
        #expect(log.contains("* alice linked a new device (\(laptopKey.prefix(12))…)"), "\(log)")
        #expect(log.contains("* alice removed a device (\(laptopKey.prefix(12))…)"))
        #expect(!log.contains("alice invited alice") && !log.contains("* alice left"))
        let list = try JSONParser().parse(Array(try nodes.alice.run(["dm", "list", "--json"]).stdout.utf8)).array
        #expect(list.first?["last"]?["body"]?.stringValue == "the last word")
        #expect(try nodes.alice.run(["dm", "list"]).stdout.contains("alice: the last word"))
    }
}

extension TwoNodes {
    func search(_ node: ParleyCommand, _ query: String) throws -> Int {
        let result = try node.run(["search", query, "--json"])
        return try JSONParser().parse(Array(result.stdout.utf8)).array.count
    }
}
