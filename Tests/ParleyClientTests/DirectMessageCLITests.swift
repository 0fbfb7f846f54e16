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

extension TwoNodes {
    func search(_ node: ParleyCommand, _ query: String) throws -> Int {
        let result = try node.run(["search", query, "--json"])
        return try JSONParser().parse(Array(result.stdout.utf8)).array.count
    }
}
