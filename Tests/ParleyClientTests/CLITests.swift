import Foundation
import ParleyCore
import ParleyTesting
import Testing

/// Two nodes, alice and bob, each with a home directory, driven through the `parley` executable.
extension ParleyCommand {
    /// `parley log ROOM` once it contains `text`, or as it is after 20 s.
    func waitForLog(_ room: String, containing text: String) throws -> String {
        var log = ""
        let deadline = Date().addingTimeInterval(20)
        while !log.contains(text) && Date() < deadline {
            log = try run(["log", room]).stdout
            usleep(50_000)
        }
        return log
    }
}

struct TwoNodes {
    let directory = TemporaryDirectory()
    let alice: ParleyCommand
    let bob: ParleyCommand
    let bobKey: String

    init() throws {
        alice = ParleyCommand(home: directory.file("alice"))
        bob = ParleyCommand(home: directory.file("bob"))
        try #require(try alice.run(["init", "--user", "alice"]).status == 0)
        try #require(try bob.run(["init", "--user", "bob"]).status == 0)
        let whoami = try JSONParser().parse(Array(try bob.run(["whoami", "--json"]).stdout.utf8))
        bobKey = whoami["signing_key"]!.text
    }

    /// Alice creates `room` and invites bob; bob imports it and joins; alice imports bob's join.
    func shareRoom(_ room: String) throws {
        try #require(try alice.run(["room", "create", room, "--name", "General"]).status == 0)
        try #require(try alice.run(["room", "invite", room, "bob", "--key", bobKey]).status == 0)
        try sync(from: alice, to: bob, room)
        try #require(try bob.run(["room", "join", room]).status == 0)
        try sync(from: bob, to: alice, room)
    }

    /// Alice creates `room` in a folder bucket and invites Bob, who joins by the code.
    func shareBucketRoom(_ room: String) throws {
        let url = "file://\(directory.path)/bucket"
        try #require(try alice.run(["room", "create", room, "--bucket", url, "--create-bucket"]).status == 0)
        let invite = try alice.run(["room", "invite", room, "bob", "--key", bobKey, "--json"])
        try #require(try bob.run(["room", "join", try JSONParser().parse(Array(invite.stdout.utf8))["invite_code"]!.text]).status == 0)
    }

    func sync(from source: ParleyCommand, to target: ParleyCommand, _ room: String) throws {
        let events = try source.run(["events", room])
        try #require(events.status == 0)
        let imported = try target.run(["import"], input: events.stdoutBytes)
        try #require(imported.status == 0, "\(imported.stderr)")
    }

    func log(_ node: ParleyCommand, _ room: String) throws -> [JSONValue] {
        let output = try node.run(["log", room, "--json"])
        try #require(output.status == 0, "\(output.stderr)")
        return try JSONParser(maxBytes: 1 << 26, keysWithinBMP: false).parse(Array(output.stdout.utf8)).array
    }
}

@Suite(.serialized) struct CLITests {
    @Test func `two nodes share a room by exchanging events and import`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("general")
        let hello = try nodes.bob.run(["send", "general", "hello from bob"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(EventID.problem(with: hello, roomID: "general") == nil, "send prints the new event id")
        try nodes.sync(from: nodes.bob, to: nodes.alice, "general")
        let reply = try nodes.alice.run(["send", "general", "hi bob", "--reply-to", hello]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try nodes.alice.run(["react", "general", hello, "👍"]).status == 0)
        try nodes.sync(from: nodes.alice, to: nodes.bob, "general")
        #expect(try nodes.bob.run(["edit", "general", hello, "hello from bob, edited"]).status == 0)
        try nodes.sync(from: nodes.bob, to: nodes.alice, "general")

        for node in [nodes.alice, nodes.bob] {
            let items = try nodes.log(node, "general")
            let message = try #require(items.first { $0["event_id"]?.stringValue == hello })
            #expect(message["body"]?.stringValue == "hello from bob, edited")
            #expect(message["edited"] == .bool(true))
            #expect(message["redacted"] == .bool(false))
            #expect(message["sender_id"]?.stringValue == "bob")
            #expect(message["type"]?.stringValue == EventType.message)
            #expect(message["reactions"]?["👍"]?.array.map(\.text) == ["alice"])
            #expect(message["timestamp_ms"]?.integerValue != nil)
            let answer = try #require(items.first { $0["event_id"]?.stringValue == reply })
            #expect(answer["parent_event_id"]?.stringValue == hello)
        }
        let aliceEvents = try nodes.alice.run(["events", "general"]).stdoutBytes
        let bobEvents = try nodes.bob.run(["events", "general"]).stdoutBytes
        #expect(aliceEvents == bobEvents, "both nodes hold the same events, byte for byte")
    }

    @Test func `a reaction taken back with --remove leaves the other user's, and the item lists the reaction events behind its counts`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("r")
        let hello = try nodes.bob.run(["send", "r", "hello"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let bobReaction = try nodes.bob.run(["react", "r", hello, "👍"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try nodes.sync(from: nodes.bob, to: nodes.alice, "r")
        let aliceReaction = try nodes.alice.run(["react", "r", hello, "👍"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        var message = try #require(try nodes.log(nodes.alice, "r").first { $0["event_id"]?.stringValue == hello })
        #expect(message["reactions"]?["👍"]?.array.map(\.text) == ["alice", "bob"])
        #expect(message["reaction_events"]?.array.map { $0["event_id"]?.stringValue } == [bobReaction, aliceReaction])
        #expect(message["reaction_events"]?.array.map { $0["sender_id"]?.stringValue } == ["bob", "alice"])

        let removed = try nodes.alice.run(["react", "r", hello, "👍", "--remove", "--json"])
        #expect(removed.status == 0, "\(removed.stderr)")
        let redaction = try JSONParser(keysWithinBMP: false).parse(Array(removed.stdout.utf8))
        #expect(redaction["event_id"]?.stringValue != nil)
        try nodes.sync(from: nodes.alice, to: nodes.bob, "r")
        for node in [nodes.alice, nodes.bob] {
            message = try #require(try nodes.log(node, "r").first { $0["event_id"]?.stringValue == hello })
            #expect(message["reactions"]?["👍"]?.array.map(\.text) == ["bob"])
            #expect(message["reaction_events"]?.array.map { $0["event_id"]?.stringValue } == [bobReaction])
        }
        let again = try nodes.alice.run(["react", "r", hello, "👍", "--remove"])
        #expect(again.status == 1)
        #expect(again.stderr.contains("You have not reacted with 👍"))
        // Taken back, it can be given again.
        #expect(try nodes.alice.run(["react", "r", hello, "👍"]).status == 0)
    }

    @Test func `a redaction hides the message on both nodes and keeps the envelope`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("r")
        let id = try nodes.bob.run(["send", "r", "regrettable"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try nodes.sync(from: nodes.bob, to: nodes.alice, "r")
        #expect(try nodes.alice.run(["redact", "r", id, "--reason", "moderation"]).status == 0)
        try nodes.sync(from: nodes.alice, to: nodes.bob, "r")
        for node in [nodes.alice, nodes.bob] {
            let item = try #require(try nodes.log(node, "r").first { $0["event_id"]?.stringValue == id })
            #expect(item["redacted"] == .bool(true))
            #expect(item["body"] == nil)
            #expect(!(try node.run(["events", "r"]).stdout.contains("regrettable")))
            #expect(try node.run(["search", "regrettable", "--json"]).stdout == "[]\n")
        }
        #expect(try ParleyCommand.run(["verify"], input: try nodes.bob.run(["events", "r"]).stdoutBytes).status == 0)
    }

    @Test func `unauthorized actions are refused with the room's reason and nothing is signed`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("r")
        let alicesMessage = try nodes.alice.run(["send", "r", "mine"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try nodes.sync(from: nodes.alice, to: nodes.bob, "r")
        let before = try nodes.bob.run(["events", "r"]).stdoutBytes

        let promote = try nodes.bob.run(["room", "power", "r", "bob", "100"])
        #expect(promote.status == 1)
        #expect(promote.stderr.contains("sending m.room.power_levels needs power level 50; bob has 0"))
        let edit = try nodes.bob.run(["edit", "r", alicesMessage, "not yours"])
        #expect(edit.status == 1)
        #expect(edit.stderr.contains("only the original sender alice can edit"))
        let redact = try nodes.bob.run(["redact", "r", alicesMessage])
        #expect(redact.status == 1)
        #expect(redact.stderr.contains("redacting another user's event needs power level 50"))
        let ban = try nodes.bob.run(["room", "ban", "r", "alice"])
        #expect(ban.status == 1)
        #expect(try nodes.bob.run(["events", "r"]).stdoutBytes == before, "no refused event entered bob's chain")
    }

    @Test func `a banned member's later events are refused by everyone`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("r")
        #expect(try nodes.alice.run(["room", "ban", "r", "bob", "--reason", "spam"]).status == 0)
        // Bob has not seen the ban yet and keeps writing.
        let late = try nodes.bob.run(["send", "r", "still here"])
        #expect(late.status == 0)
        let events = try nodes.bob.run(["events", "r"])
        let imported = try nodes.alice.run(["import"], input: events.stdoutBytes)
        #expect(imported.status == 1)
        #expect(imported.stderr.contains("not authorized: sender bob is banned from the room"))
        #expect(!(try nodes.alice.run(["log", "r"]).stdout.contains("still here")))
    }

    @Test func `import reports every bad line with its number and keeps going`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("r")
        _ = try nodes.alice.run(["send", "r", "one"])
        var lines = try nodes.alice.run(["events", "r"]).stdout.split(separator: "\n").map(String.init)
        let good = lines.count
        var tampered = Array(lines[good - 1].utf8)
        tampered[tampered.count - 20] ^= 0x01
        lines.insert(String(decoding: tampered, as: UTF8.self), at: 1)
        lines.insert(#"{"a":1,"a":2}"#, at: 2)
        lines.insert(#"{"timestamp_ms":1.5}"#, at: 3)
        lines.insert(String(repeating: "[", count: 100_000), at: 4)
        lines.insert("\u{FF}not utf8", at: 5)
        let fresh = ParleyCommand(home: nodes.directory.file("carol"))
        _ = try fresh.run(["init", "--user", "carol"])
        let result = try fresh.run(["import"], input: Array((lines.joined(separator: "\n") + "\n").utf8))
        #expect(result.status == 1)
        #expect(result.stderr.contains("line 2: rejected:"))
        #expect(result.stderr.contains("line 3: rejected: invalid JSON: duplicate object key \"a\""))
        #expect(result.stderr.contains("line 4: rejected: invalid JSON: numbers must be integers"))
        #expect(result.stderr.contains("line 5: rejected: invalid JSON: JSON nests deeper than the limit of 32 levels"))
        #expect(result.stderr.contains("line 6: rejected: invalid JSON"))
        #expect(result.stdout.contains("\(good) accepted"))
        #expect(try fresh.run(["log", "r"]).stdout.contains("alice: one"))
        let log = try fresh.run(["rejected"]).stdout
        #expect(log.contains("duplicate object key"))
        #expect(log.contains("nests deeper"))
    }

    @Test func `a 100 MB line is skipped with bounded memory and the next lines are imported`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("r")
        let events = try nodes.alice.run(["events", "r"]).stdoutBytes
        let path = nodes.directory.file("huge.jsonl")
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try #require(FileHandle(forWritingAtPath: path))
        let block = Data(repeating: UInt8(ascii: "x"), count: 1 << 20)
        handle.write(Data("{\"pad\":\"".utf8))
        for _ in 0..<100 { handle.write(block) }
        handle.write(Data("\"}\n".utf8))
        handle.write(Data(events))
        try handle.close()
        let fresh = ParleyCommand(home: nodes.directory.file("dave"))
        _ = try fresh.run(["init", "--user", "dave"])
        let result = try fresh.run(["import", path], measuringMemory: true)
        #expect(result.status == 1)
        #expect(result.stderr.contains("line 1: rejected: 104857610 bytes, longer than the limit of 1048576"))
        #expect(result.stdout.contains("1 rejected"))
        #expect(try fresh.run(["room", "info", "r"]).status == 0)
        let peak = try #require(result.maxRSSKilobytes)
        #expect(peak < 150_000, "peak RSS \(peak) kB")
    }

    @Test func `verify names tampering, forks and gaps by line`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("r")
        for index in 0..<3 { _ = try nodes.alice.run(["send", "r", "m\(index)"]) }
        let lines = try nodes.alice.run(["events", "r"]).stdout.split(separator: "\n").map(String.init)
        #expect(try ParleyCommand.run(["verify"], input: Array((lines.joined(separator: "\n") + "\n").utf8)).status == 0)

        var withGap = lines
        withGap.remove(at: withGap.count - 2)
        let gap = try ParleyCommand.run(["verify"], input: Array(withGap.joined(separator: "\n").utf8))
        #expect(gap.status == 1)
        #expect(gap.stdout.contains("line \(withGap.count): gap: seq"))

        var tampered = lines
        tampered[2] = tampered[2].replacingOccurrences(of: "\"seq\":", with: "\"seq\": ")
            .replacingOccurrences(of: "General", with: "Genera1")
        let altered = try ParleyCommand.run(["verify"], input: Array(tampered.joined(separator: "\n").utf8))
        #expect(altered.status == 1)
        #expect(altered.stdout.contains("line 3: invalid event: content does not match content_hash"))
    }

    @Test func `identity secrets are owner-only and init refuses to overwrite them`() throws {
        let directory = TemporaryDirectory()
        let node = ParleyCommand(home: directory.file("n"))
        #expect(try node.run(["init", "--user", "erin"]).status == 0)
        let attributes = try FileManager.default.attributesOfItem(atPath: directory.file("n/device.key"))
        #expect(attributes[.posixPermissions] as? Int == 0o600)
        let again = try node.run(["init", "--user", "erin"])
        #expect(again.status == 1)
        #expect(again.stderr.contains("already holds an identity"))
        let badUser = try ParleyCommand(home: directory.file("m")).run(["init", "--user", "../etc"])
        #expect(badUser.status == 1)
        #expect(badUser.stderr.contains("Invalid user id"))
        let noIdentity = try ParleyCommand(home: directory.file("none")).run(["log", "r"])
        #expect(noIdentity.status == 1)
        #expect(noIdentity.stderr.contains("parley init --user USER_ID"))
        _ = try node.run(["room", "create", "r"])
        let storeMode = try FileManager.default.attributesOfItem(atPath: directory.file("n/parley.sqlite"))[.posixPermissions] as? Int
        #expect(storeMode == 0o600)
    }

    @Test func `every event reported as sent survives a kill -9`() throws {
        let directory = TemporaryDirectory()
        let node = ParleyCommand(home: directory.file("n"))
        _ = try node.run(["init", "--user", "frank"])
        _ = try node.run(["room", "create", "r"])
        let sentLog = directory.file("sent.txt")
        let script = """
            while true; do id=$("\(ParleyCommand.executable.path)" --home "\(node.home)" send r "message $RANDOM") && echo "$id" >> "\(sentLog)"; done
            """
        let loop = try Subprocess.spawn("/bin/bash", ["-c", script], stdout: .null, stderr: .null, ownProcessGroup: true)
        // Wait until a good number of sends were reported, then kill the whole process group mid-flight.
        var reported = 0
        for _ in 0..<600 where reported < 20 {
            Thread.sleep(forTimeInterval: 0.05)
            reported = (try? String(contentsOfFile: sentLog, encoding: .utf8))?.split(separator: "\n").count ?? 0
        }
        // The loop's current `parley send`, if any, is in its process group and dies mid-flight too.
        loop.kill(SIGKILL, group: true)
        loop.wait()
        let sent = try String(contentsOfFile: sentLog, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(sent.count >= 20)
        let log = try node.run(["log", "r", "--limit", "100000"]).stdout
        for id in sent { #expect(log.contains(id), "\(id) was reported sent but is missing") }
        #expect(try ParleyCommand.run(["verify"], input: try node.run(["events", "r"]).stdoutBytes).status == 0)
    }
}
