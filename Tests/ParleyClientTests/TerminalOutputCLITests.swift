import Foundation
import ParleyBucket
import ParleyCore
import ParleyTesting
import Testing

/// Text from outside, with what a terminal would obey in it: a colour change, a line that imitates `parley log`
/// output, a carriage return, a right-to-left override and a bell.
let hostile = "evil\u{1B}[31mred\u{1B}[0m\n2030-01-01 00:00:00 +0000  FORGED: hi\r\u{202E}gnp.exe\u{07}"
/// Short enough for a reaction key (64 bytes).
let hostileKey = "\u{1B}[2J\u{202E}👍"

/// Whether `text` may reach a terminal as it is: no control character but the line feed, no bidirectional control,
/// no line or paragraph separator.
func isSafeForTerminal(_ text: String) -> Bool {
    text.unicodeScalars.allSatisfy { scalar in
        switch scalar.value {
        case 0x0A: true
        case 0x00..<0x20, 0x7F..<0xA0, 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069, 0x2028, 0x2029: false
        default: true
        }
    }
}

/// Checks one command's output: safe for a terminal, the hostile text shown as visible escapes, and no line of its
/// own made from it.
func expectEscaped(_ result: ParleyCommand.Output, _ command: String, sourceLocation: SourceLocation = #_sourceLocation) {
    expectEscaped(result.stdout + result.stderr, command, sourceLocation: sourceLocation)
}

func expectEscaped(_ text: String, _ command: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(isSafeForTerminal(text), "\(command) printed raw control characters: \(text.debugDescription)", sourceLocation: sourceLocation)
    #expect(text.contains(#"evil\x1b[31mred\x1b[0m"#), "\(command) did not show the escapes: \(text)", sourceLocation: sourceLocation)
    #expect(!text.split(separator: "\n").contains { $0.hasPrefix("2030-01-01") }, "\(command) printed a forged line: \(text)", sourceLocation: sourceLocation)
}

/// A bucket room whose name, topic, messages, reactions and reasons are hostile, seen from alice's node.
struct HostileRoom {
    let nodes: TwoNodes
    let bucket: String
    let message: String

    init() throws {
        nodes = try TwoNodes()
        bucket = nodes.directory.file("bucket")
        let alice = nodes.alice
        try #require(try alice.run(["room", "create", "r", "--bucket", "file://\(bucket)", "--name", hostile]).status == 0)
        try #require(try alice.run(["room", "topic", "r", hostile]).status == 0)
        let invite = try alice.run(["room", "invite", "r", "bob", "--key", nodes.bobKey, "--json"])
        let code = try JSONParser().parse(Array(invite.stdout.utf8))["invite_code"]!.text
        try #require(try nodes.bob.run(["room", "join", code]).status == 0)
        let sent = try nodes.bob.run(["send", "r", hostile, "--flush"])
        try #require(sent.status == 0, "\(sent.stderr)")
        message = sent.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(try alice.run(["sync"]).status == 0)
        try #require(try alice.run(["react", "r", message, hostileKey]).status == 0)
        try #require(try alice.run(["send", "r", "a reply", "--reply-to", message]).status == 0)
        try #require(try alice.run(["room", "ban", "r", "mallory", "--reason", hostile]).status == 0)
    }
}

@Suite struct TerminalOutputCLITests {
    @Test func `log shows names, topics, messages, reactions, reasons and quoted replies escaped, and keeps them exact in JSON`() throws {
        let room = try HostileRoom()
        let log = try room.nodes.alice.run(["log", "r"])
        try #require(log.status == 0, "\(log.stderr)")
        expectEscaped(log, "log")
        #expect(log.stdout.contains(#"\x1b[2J\u{202e}👍×1"#), "the reaction key")
        #expect(log.stdout.contains(#"(reply to bob: "evil\x1b[31mred\x1b[0m…")"#), "the quoted parent")
        let items = try room.nodes.log(room.nodes.alice, "r")
        #expect(items.contains { $0["body"]?.stringValue == hostile }, "JSON keeps the text exact")
        #expect(items.contains { $0["reactions"]?[hostileKey] != nil })
    }

    @Test func `room info shows the name and topic escaped`() throws {
        let room = try HostileRoom()
        expectEscaped(try room.nodes.alice.run(["room", "info", "r"]), "room info")
    }

    @Test func `search shows message text escaped`() throws {
        let room = try HostileRoom()
        expectEscaped(try room.nodes.alice.run(["search", "evil"]), "search")
    }

    @Test func `sync --watch shows arriving messages escaped`() throws {
        let room = try HostileRoom()
        let watcher = try Subprocess.spawn(ParleyCommand.executable.path, ["--home", room.nodes.bob.home, "sync", "--watch", "--interval", "0.1"])
        defer {
            watcher.kill(SIGTERM)
            watcher.wait()
        }
        try #require(try room.nodes.alice.run(["send", "r", hostile + " again", "--flush"]).status == 0)
        var text = ""
        let deadline = Date().addingTimeInterval(20)
        while !text.contains(" again") && Date() < deadline {
            text += String(decoding: watcher.readOutput(timeout: 1), as: UTF8.self)
        }
        expectEscaped(text, "sync --watch")
    }

    @Test func `dm list shows the last message escaped`() throws {
        let nodes = try TwoNodes()
        let started = try nodes.alice.run(["dm", "bob", "--key", nodes.bobKey])
        try #require(started.status == 0, "\(started.stderr)")
        let roomID = started.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(try nodes.alice.run(["send", roomID, hostile]).status == 0)
        expectEscaped(try nodes.alice.run(["dm", "list"]), "dm list")
    }

    @Test func `sync and bucket verify show object keys escaped, in a folder`() throws {
        let room = try HostileRoom()
        let folder = room.bucket + "/rooms/r/logs/2030-01-01"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: folder + "/" + hostile.replacingOccurrences(of: "/", with: "_"), contents: Data("x\n".utf8)))
        expectEscaped(try room.nodes.alice.run(["sync"]), "sync")
        expectEscaped(try ParleyCommand.run(["bucket", "verify", "file://\(room.bucket)"]), "bucket verify")
    }

    @Test(.enabled(if: S3TestServer.isAvailable))
    func `sync and bucket verify show object keys escaped, over S3`() async throws {
        let nodes = try TwoNodes()
        let prefix = S3TestServer.freshPrefix()
        let url = S3TestServer.url(prefix: prefix)
        let aws = S3TestServer.awsEnvironment
        try #require(try nodes.alice.run(["room", "create", "r", "--bucket", url], environment: aws).status == 0)
        // The test server cannot take a line feed in a key; a carriage return rewrites the line just as well.
        let key = "rooms/r/logs/2030-01-01/" + hostile.replacingOccurrences(of: "\n", with: "\r")
        try await S3TestServer.putUnchecked(prefix: prefix, key: key, bytes: Array("x\n".utf8))
        expectEscaped(try nodes.alice.run(["sync"], environment: aws), "sync")
        expectEscaped(try ParleyCommand.run(["bucket", "verify", url], environment: aws), "bucket verify")
    }

    @Test func `import, verify and rejected show what a bad line holds escaped`() throws {
        let nodes = try TwoNodes()
        // The reasons quote the room id.
        let line = CanonicalJSON.string(["event_id": .string(hostile), "room_id": .string("r\u{202E}\u{1B}[31m"), "type": .string(hostile)])
        let input = Array((line + "\n").utf8)
        let imported = try nodes.alice.run(["import"], input: input)
        #expect(imported.status == 1)
        #expect(isSafeForTerminal(imported.stdout + imported.stderr), "import: \(imported.stderr.debugDescription)")
        let audit = try ParleyCommand.run(["verify"], input: input)
        #expect(isSafeForTerminal(audit.stdout + audit.stderr), "verify: \(audit.stdout.debugDescription)")
        let rejected = try nodes.alice.run(["rejected"])
        #expect(isSafeForTerminal(rejected.stdout + rejected.stderr), "rejected: \(rejected.stdout.debugDescription)")
    }

    @Test func `errors that quote a file name, an event reference or a room id show it escaped`() throws {
        let nodes = try TwoNodes()
        try #require(try nodes.alice.run(["room", "create", "r"]).status == 0)
        let path = nodes.directory.file(hostile.replacingOccurrences(of: "/", with: "_"))
        for arguments in [
            ["import", path], ["send", "r", "--text-file", path], ["backup", "import", path, "--passphrase-file", path],
            ["edit", "r", hostile, "text"], ["send", "r", "hi", "--reply-to", hostile],
        ] {
            let result = try nodes.alice.run(arguments)
            #expect(result.status != 0)
            expectEscaped(result, arguments[0])
        }
        let badRoom = try nodes.alice.run(["log", "r\u{202E}x"])
        #expect(badRoom.status != 0)
        #expect(isSafeForTerminal(badRoom.stderr) && badRoom.stderr.contains(#"\u{202e}"#), "\(badRoom.stderr.debugDescription)")
    }
}
