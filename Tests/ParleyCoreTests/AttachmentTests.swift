import ParleyCore
import ParleyTesting
import Testing

/// The `file` object of a message (docs/PROTOCOL.md §16.4): what a reader accepts, and what a hostile sender cannot
/// make it accept.
@Suite struct AttachmentTests {
    /// A well-formed `file` object of a 5,000-byte file, with `changes` applied.
    static func fileObject(_ changes: [String: JSONValue?] = [:]) throws -> JSONObject {
        let (_, reference, _) = try BlockTests.seal(BlockTests.file(5_000))
        var object = FileAttachment(reference: reference, name: "notes.txt", mediaType: "text/plain", sha256: Array(repeating: 7, count: 32)).jsonObject
        for (key, value) in changes { object[key] = value }
        return object
    }

    static func parse(_ file: JSONObject?, msgtype: String = "file") throws(ContentError) -> EventContent {
        var content = JSONObject(["msgtype": .string(msgtype), "body": .string("notes.txt")])
        if let file { content["file"] = .object(file) }
        return try EventContent.parse(type: EventType.message, content: content, roomID: "room")
    }

    static func problem(_ file: JSONObject?, msgtype: String = "file") -> String? {
        do {
            _ = try parse(file, msgtype: msgtype)
            return nil
        } catch {
            return error.message
        }
    }

    @Test func `a file message round-trips through its content`() throws {
        let object = try Self.fileObject(["width": .integer(640), "height": .integer(480)])
        guard case .message(.file, "notes.txt", let file?, _, _) = try Self.parse(object) else {
            Issue.record("not a file message")
            return
        }
        #expect(file.name == "notes.txt" && file.size == 5_000 && file.width == 640 && file.height == 480)
        #expect(file.jsonObject == object)
    }

    @Test func `names that are paths, hold controls or reorder text, or are too long, are refused`() throws {
        let hostile = [
            "../../.bashrc", "a/b", "a\\b", "nul\u{0}byte", "bell\u{7}", "line\nbreak", "esc\u{1B}[31m", "\u{202E}txt.exe", "..", ".",
            String(repeating: "n", count: 10_000), "",
        ]
        for name in hostile {
            let problem = Self.problem(try Self.fileObject(["name": .string(name)]))
            #expect(problem?.contains("name") == true, "\(name.debugDescription.prefix(40)): \(problem ?? "accepted")")
        }
        #expect(Self.problem(try Self.fileObject(["name": .string("résumé 2026 (final).pdf")])) == nil)
    }

    @Test func `a sender makes any name safe, keeping its extension`() {
        #expect(FileAttachment.safeName("a/b\u{0}c.txt") == "a_b_c.txt")
        #expect(FileAttachment.safeName("..") == "file")
        let long = FileAttachment.safeName(String(repeating: "é", count: 5_000) + ".tar.gz")
        #expect(long.utf8.count <= FileAttachment.maxNameBytes && long.hasSuffix(".gz"))
        #expect(FileAttachment.problem(withName: long) == nil)
    }

    @Test func `a reference whose root tier or size does not fit, or a bad key or hash, is refused`() throws {
        let cases: [(String, JSONValue)] = [
            ("root_tier", .integer(24)), ("root_tier", .integer(12)), ("size", .integer(-1)), ("size", .integer(1 << 41)),
            ("key", .string("c2hvcnQ=")), ("sha256", .string("ABC")), ("root", .string(String(repeating: "g", count: 64))),
            ("media_type", .string("text")), ("media_type", .string("text/pl ain")), ("width", .integer(10)), ("extra", .integer(1)),
        ]
        for (field, value) in cases {
            #expect(Self.problem(try Self.fileObject([field: value])) != nil, "\(field) = \(value)")
        }
        #expect(Self.problem(try Self.fileObject(["width": .integer(0), "height": .integer(5)])) != nil)
    }

    @Test func `msgtype file needs a file object, and only it may have one`() throws {
        #expect(Self.problem(nil)?.contains("needs a file object") == true)
        #expect(Self.problem(try Self.fileObject(), msgtype: "text")?.contains("only msgtype file") == true)
    }

    @Test func `images are recognised by their first bytes and their size read from them`() {
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13] + Array("IHDR".utf8)
        png += [0, 0, 2, 128, 0, 0, 1, 224]
        #expect(FileKind.mediaType(header: png, name: "x.bin") == "image/png")
        #expect(FileKind.imageDimensions(header: png)! == (640, 480))
        let gif = Array("GIF89a".utf8) + [0x20, 0x03, 0x58, 0x02]
        #expect(FileKind.imageDimensions(header: gif)! == (800, 600))
        // SOI, an APP0 segment of 16 bytes, then SOF0 with height 300 and width 400.
        let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0, 0, 16] + Array(repeating: 0, count: 14) + [0xFF, 0xC0, 0, 17, 8, 0x01, 0x2C, 0x01, 0x90, 3]
        #expect(FileKind.imageDimensions(header: jpeg)! == (400, 300))
        // A truncated header, a zero side and text give no dimensions.
        #expect(FileKind.imageDimensions(header: Array(png.prefix(20))) == nil)
        #expect(FileKind.imageDimensions(header: Array("GIF89a".utf8) + [0, 0, 5, 0]) == nil)
        #expect(FileKind.imageDimensions(header: Array("hello".utf8)) == nil)
        #expect(FileKind.mediaType(header: Array("hello".utf8), name: "notes.TXT") == "text/plain")
        #expect(FileKind.mediaType(header: [], name: "noextension") == "application/octet-stream")
    }

    @Test func `a JPEG whose segments run past its header gives no dimensions, whatever their lengths`() {
        for length in [0, 1, 2, 0xFFFF] {
            let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0, UInt8(length >> 8), UInt8(length & 0xFF)] + Array(repeating: 0xFF, count: 40)
            #expect(FileKind.imageDimensions(header: jpeg) == nil)
        }
    }
}
