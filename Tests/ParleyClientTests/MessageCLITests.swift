import Foundation
import ParleyCore
import ParleyTesting
import Testing

/// Sending and reading messages through the `parley` executable: text from files and standard input, sizes, replies,
/// times, and event ids given by their start.
@Suite struct MessageCLITests {
    /// A node with a room `r` of its own; the directory lives as long as the value.
    struct RoomOfOne {
        let directory = TemporaryDirectory()
        let node: ParleyCommand

        init() throws {
            node = ParleyCommand(home: directory.file("alice"))
            try #require(try node.run(["init", "--user", "alice"]).status == 0)
            try #require(try node.run(["room", "create", "r"]).status == 0)
        }
    }

    func send(_ node: ParleyCommand, _ arguments: [String], input: [UInt8] = []) throws -> String {
        let sent = try node.run(["send", "r"] + arguments, input: input)
        try #require(sent.status == 0, "\(sent.stderr)")
        return sent.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The items of `log r --json` (reaction keys may be emoji, above U+FFFF).
    func items(_ node: ParleyCommand) throws -> [JSONValue] {
        let log = try node.run(["log", "r", "--json"])
        try #require(log.status == 0, "\(log.stderr)")
        return try JSONParser(keysWithinBMP: false).parse(Array(log.stdout.utf8)).array
    }

    func bodies(_ node: ParleyCommand) throws -> [String] {
        try items(node).compactMap { $0["body"]?.stringValue }
    }

    @Test func `send - reads the text from standard input, without its final line ending`() throws {
        let room = try RoomOfOne()
        let node = room.node
        _ = try send(node, ["-"], input: Array("first line\nsecond line\n".utf8))
        #expect(try bodies(node) == ["first line\nsecond line"])
    }

    @Test func `send --text-file reads the text from a file`() throws {
        let room = try RoomOfOne()
        let (directory, node) = (room.directory, room.node)
        let path = directory.file("note.txt")
        #expect(FileManager.default.createFile(atPath: path, contents: Data("from a file\n".utf8)))
        _ = try send(node, ["--text-file", path])
        #expect(try bodies(node) == ["from a file"])
    }

    @Test func `send refuses a text and a file at once, and neither`() throws {
        let room = try RoomOfOne()
        let node = room.node
        let cases = [
            (["send", "r"], "Give the text, '-' to read it from standard input, or --text-file PATH."),
            (["send", "r", "text", "--text-file", "/dev/null"], "Give the text, or --text-file PATH, not both."),
            (["send", "r", "--file", "/dev/null", "--emote"], "--file shares a file; --notice and --emote are for text."),
        ]
        for (arguments, message) in cases {
            let result = try node.run(arguments)
            #expect(result.status == 64)
            #expect(result.stderr.contains(message), "\(result.stderr)")
        }
    }

    @Test func `text that is not UTF-8 is refused`() throws {
        let room = try RoomOfOne()
        let node = room.node
        let result = try node.run(["send", "r", "-"], input: [0x68, 0x69, 0xFF])
        #expect(result.status == 1)
        #expect(result.stderr.contains("standard input is not UTF-8 text."))
    }

    @Test func `a text too large for one event is refused with its size, the limit and what to do`() throws {
        let room = try RoomOfOne()
        let node = room.node
        let result = try node.run(["send", "r", "-"], input: Array(repeating: UInt8(ascii: "a"), count: 100_000))
        #expect(result.status == 1)
        #expect(result.stderr.contains("The text is 100000 bytes: too large for one event, which may be at most 65536 bytes (64 KiB)"), "\(result.stderr)")
        #expect(result.stderr.contains("Send it as several messages of at most 63 KiB each."))
        #expect(try bodies(node).isEmpty)
    }

    @Test func `the size the advice names fits, in a plain and in an encrypted room`() throws {
        let room = try RoomOfOne()
        let node = room.node
        _ = try send(node, ["-"], input: Array(repeating: UInt8(ascii: "a"), count: 63 * 1024))
        try #require(try node.run(["room", "create", "sealed", "--encrypted"]).status == 0)
        let sealed = try node.run(["send", "sealed", "-"], input: Array(repeating: UInt8(ascii: "b"), count: 46 * 1024))
        #expect(sealed.status == 0, "\(sealed.stderr)")
        let tooLarge = try node.run(["send", "sealed", "-"], input: Array(repeating: UInt8(ascii: "b"), count: 50 * 1024))
        #expect(tooLarge.stderr.contains("Send it as several messages of at most 46 KiB each (in this encrypted room)."), "\(tooLarge.stderr)")
    }

    @Test func `input beyond a megabyte is refused without being read whole`() throws {
        let room = try RoomOfOne()
        let (directory, node) = (room.directory, room.node)
        let path = directory.file("big.txt")
        #expect(FileManager.default.createFile(atPath: path, contents: Data(repeating: UInt8(ascii: "a"), count: 10 << 20)))
        let fromFile = try node.run(["send", "r", "--text-file", path], measuringMemory: true)
        #expect(fromFile.status == 1)
        #expect(fromFile.stderr.contains("holds 10485760 bytes: too large for one message"), "\(fromFile.stderr)")
        #expect(try #require(fromFile.maxRSSKilobytes) < 60_000)
        let fromInput = try node.run(["send", "r", "-"], inputFile: path)
        #expect(fromInput.stderr.contains("standard input holds 10485760 bytes") || fromInput.stderr.contains("standard input holds more than 1048576 bytes"))
    }

    @Test func `a reply shows who wrote what it answers and the start of its first line`() throws {
        let room = try RoomOfOne()
        let node = room.node
        let parent = try send(node, ["a question that goes on for quite a while, longer than any quote\nand a second line"])
        _ = try send(node, ["the answer", "--reply-to", parent])
        let log = try node.run(["log", "r"]).stdout
        #expect(log.contains(#"alice: the answer (reply to alice: "a question that goes on for quite a whi…")"#), "\(log)")
        #expect(!log.contains("(reply)"))
    }

    @Test func `a reply to a message this node does not hold says so`() throws {
        let room = try RoomOfOne()
        let node = room.node
        var dave = TestDevice("dave")
        let missing = EventID.make(roomID: "q", timestampMs: 1_760_000_000_500, randomBytes: Array(repeating: 7, count: 16))
        let events = dave.create("q", at: 1_760_000_000_000) + [dave.message("q", "answering", at: 1_760_000_001_000, parent: missing)]
        let imported = try node.run(["import"], input: events.flatMap { $0.wire + [0x0A] })
        try #require(imported.status == 0, "\(imported.stderr)")
        #expect(try node.run(["log", "q"]).stdout.contains("dave: answering (reply to a message not held)"))
    }

    @Test func `log prints local time with its offset, honouring TZ, and UTC with --utc`() throws {
        let room = try RoomOfOne()
        let node = room.node
        let id = try send(node, ["what time is it"])
        let item = try #require(try items(node).first { $0["event_id"]?.stringValue == id })
        let date = Date(timeIntervalSince1970: Double(try #require(item["timestamp_ms"]?.integerValue)) / 1000)
        func expected(_ zone: TimeZone, _ suffix: String) -> String {
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = zone
            let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
            return String(format: "%04d-%02d-%02d %02d:%02d:%02d ", parts.year!, parts.month!, parts.day!, parts.hour!, parts.minute!, parts.second!) + suffix
        }
        let local = try node.run(["log", "r"], environment: ["TZ": "<+0530>-5:30"]).stdout
        #expect(local.contains(expected(TimeZone(secondsFromGMT: 19_800)!, "+0530") + "  alice: what time is it"), "\(local)")
        let utc = try node.run(["log", "r", "--utc"], environment: ["TZ": "<+0530>-5:30"]).stdout
        #expect(utc.contains(expected(TimeZone(secondsFromGMT: 0)!, "UTC") + "  alice: what time is it"), "\(utc)")
    }

    @Test func `a message's further lines are indented, so none can pass for a log line`() throws {
        let room = try RoomOfOne()
        let node = room.node
        _ = try send(node, ["first\n2030-01-01 00:00:00 +0000  mallory: forged\r\nthird"])
        let lines = try node.run(["log", "r", "--utc"]).stdout.split(separator: "\n")
        let start = try #require(lines.firstIndex { $0.contains("alice: first") })
        #expect(lines[start + 1] == "    2030-01-01 00:00:00 +0000  mallory: forged")
        #expect(lines[start + 2] == "    third")
        #expect(lines.allSatisfy { $0.hasPrefix("    ") || $0.first?.isNumber == true })
    }

    @Test func `edit, react, redact, read and --reply-to take the start of an event id's last part`() throws {
        let room = try RoomOfOne()
        let node = room.node
        let target = try send(node, ["hello"])
        let short = String(target.split(separator: ":").last!.prefix(8))
        for arguments in [
            ["edit", "r", short, "hello, edited"], ["react", "r", short, "👍"], ["read", "r", short], ["send", "r", "re", "--reply-to", short],
        ] {
            let result = try node.run(arguments)
            #expect(result.status == 0, "\(arguments[0]): \(result.stderr)")
        }
        let message = try #require(try items(node).first { $0["event_id"]?.stringValue == target })
        #expect(message["body"]?.stringValue == "hello, edited" && message["reactions"]?["👍"] != nil)
        #expect(try items(node).contains { $0["parent_event_id"]?.stringValue == target })
        let uppercase = try node.run(["redact", "r", short.uppercased(), "--json"])
        #expect(uppercase.status == 0, "\(uppercase.stderr)")
        #expect(try items(node).first { $0["event_id"]?.stringValue == target }?["redacted"] == .bool(true))
    }

    @Test func `an ambiguous start of an event id lists the events it matches`() throws {
        let room = try RoomOfOne()
        let node = room.node
        _ = try send(node, ["one"])
        _ = try send(node, ["two"])
        let result = try node.run(["edit", "r", "r::2", "changed"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("error: r::2 is the start of 4 event ids in room r:"), "\(result.stderr)")
        #expect(result.stderr.contains("\n  r::2") && result.stderr.contains("  alice: one\n") && result.stderr.contains("  alice created the room\n"))
        #expect(result.stderr.contains("Give more of the id."))
    }

    @Test func `a start of an event id that matches nothing, or is too short, is refused`() throws {
        let room = try RoomOfOne()
        let node = room.node
        _ = try send(node, ["one"])
        // Never the start of a version-4 UUID: its 15th character is 4.
        let unknown = try node.run(["react", "r", "ffffffff-ffff-0", "x"])
        #expect(unknown.status == 1 && unknown.stderr.contains("No event of room r that this node holds has an id starting with ffffffff-ffff-0."))
        let short = try node.run(["react", "r", "ab", "x"])
        #expect(short.status == 1 && short.stderr.contains("\"ab\" is not an event id, nor the start of one."))
    }
}
