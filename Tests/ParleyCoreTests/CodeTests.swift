import ParleyCore
import ParleyTesting
import Testing

/// One case of docs/vectors/codes.json, named for the test report.
struct CodeVector: CustomTestStringConvertible, Sendable {
    let name: String
    let item: JSONValue
    var testDescription: String { name }

    subscript(key: String) -> JSONValue { item[key] ?? .null }

    /// The cases listed under `key` in docs/vectors/codes.json.
    static func cases(_ key: String) throws -> [CodeVector] {
        try Vectors.load("codes.json")[key]!.array.map { CodeVector(name: $0["name"]!.text, item: $0) }
    }
}

/// The error code a code reader throws, or nil when it reads.
private func codeError(_ body: () throws(CodeError) -> Void) -> String? {
    do {
        try body()
        return nil
    } catch {
        return error.code.rawValue
    }
}

private let fingerprint = String(repeating: "ab", count: 32)

@Suite struct CodeTests {
    @Test(arguments: try CodeVector.cases("valid_invites"))
    func `a valid invite code reads as the generator says`(vector: CodeVector) throws {
        let code = try InviteCode(parsing: vector["text"].text)
        #expect(code.roomID == vector["room_id"].text)
        #expect(code.creatorFingerprint == vector["creator"].text)
        #expect(code.locations.map(\.json) == vector["locations"].array)
        #expect(code.preSharedSecret.map(Base64.encode) == vector["psk"].stringValue)
        #expect(code.needsPassphrase == vector["psk_passphrase"].boolValue)
    }

    @Test(arguments: try CodeVector.cases("valid_invites"))
    func `a valid invite code written again in the current version reads the same`(vector: CodeVector) throws {
        let code = try InviteCode(parsing: vector["text"].text)
        let again = try InviteCode(parsing: code.text)
        #expect(again == code)
        #expect(try CodeText.decode(prefix: InviteCode.prefix, code.text, maxBytes: InviteCode.maxBytes)["v"] == .integer(2))
    }

    @Test(arguments: try CodeVector.cases("invalid_invites"))
    func `an invalid invite code is refused with the vector's error code`(vector: CodeVector) {
        #expect(codeError { () throws(CodeError) in _ = try InviteCode(parsing: vector["text"].text) } == vector["error"].text)
    }

    @Test(arguments: try CodeVector.cases("invalid_linked_rooms"))
    func `an invalid room of a link code is refused with the vector's error code`(vector: CodeVector) {
        #expect(codeError { () throws(CodeError) in _ = try LinkedRoom(json: vector["room"]) } == vector["error"].text)
    }

    @Test(arguments: try CodeVector.cases("link_codes"))
    func `the rooms a link code carries read as the generator says, in both versions`(vector: CodeVector) throws {
        // The sealed payload is opened in the client's tests; here each room's JSON form is read back from the vector.
        for room in vector["rooms"].array {
            let read =
                vector["version"].integerValue == 2
                ? try LinkedRoom(versionTwoJSON: ["bucket": room["locations"]!.array[0]["url"]!, "creator": room["creator"]!, "room_id": room["room_id"]!])
                : try LinkedRoom(json: room)
            #expect(read.json == room)
        }
    }

    @Test func `invite codes an earlier version of Parley made still read, with their bucket as the one location`() throws {
        // Made by `parley room invite` before invite codes carried locations (version 1): a plain room and a
        // pre-shared-key room in a folder bucket.
        let plain = try InviteCode(
            parsing:
                "parley-invite:eyJidWNrZXQiOiJmaWxlOi8vL3RtcC92MWNvZGVzL2J1Y2tldCIsImNyZWF0b3IiOiI0MWQ4NmVmNzA5ZWY2Y2E2YmE0NWQ5NzQyODlmNzE2NTQ4ZTMxNDgyODY1MDIwZGYzMzQ2MTMxOTIyNTk0YWYwIiwicm9vbV9pZCI6InRlYW0iLCJ2IjoxfQ"
        )
        #expect(plain.roomID == "team" && plain.locations == [.bucket(url: "file:///tmp/v1codes/bucket")])
        #expect(plain.creatorFingerprint == "41d86ef709ef6ca6ba45d974289f716548e31482865020df3346131922594af0")
        #expect(plain.preSharedSecret == nil && !plain.needsPassphrase)
        let secret = try InviteCode(
            parsing:
                "parley-invite:eyJidWNrZXQiOiJmaWxlOi8vL3RtcC92MWNvZGVzL2J1Y2tldCIsImNyZWF0b3IiOiI0MWQ4NmVmNzA5ZWY2Y2E2YmE0NWQ5NzQyODlmNzE2NTQ4ZTMxNDgyODY1MDIwZGYzMzQ2MTMxOTIyNTk0YWYwIiwicHNrIjoiUUhHKy9aQXhGMzdHRVMvellDQk42ZmlURzZRRERwVyt1eXdYbDUxZkhsQT0iLCJyb29tX2lkIjoidmF1bHQiLCJ2IjoxfQ"
        )
        #expect(secret.roomID == "vault" && secret.locations == [.bucket(url: "file:///tmp/v1codes/bucket")])
        #expect(secret.preSharedSecret.map(Base64.encode) == "QHG+/ZAxF37GES/zYCBN6fiTG6QDDpW+uywXl51fHlA=")
    }

    @Test func `a code with every kind of location and a secret round-trips, spelled in base64url only`() throws {
        let code = InviteCode(
            roomID: "team", creatorFingerprint: fingerprint,
            locations: [
                .bucket(url: "s3://chat-bucket/p/"), .relay(url: "wss://relay.example.net/parley"), .peer(address: "[::1]:7000"),
                .unknown(kind: "mesh", JSONObject(["kind": "mesh", "nodes": [1, 2, 3]])),
            ],
            preSharedSecret: [UInt8](repeating: 0xFB, count: 32))
        #expect(code.text.hasPrefix("parley-invite:"))
        #expect(!code.text.dropFirst(InviteCode.prefix.count).contains { $0 == "+" || $0 == "/" || $0 == "=" })
        #expect(try InviteCode(parsing: code.text) == code)
        var passphrase = code
        passphrase.preSharedSecret = nil
        passphrase.needsPassphrase = true
        #expect(try InviteCode(parsing: passphrase.text) == passphrase)
    }

    @Test func `a location's members this version does not know are not kept, and an unknown kind is kept whole`() throws {
        let known = try RoomLocation(json: ["kind": "bucket", "url": "file:///srv", "weight": 3])
        #expect(known == .bucket(url: "file:///srv") && known.json == ["kind": "bucket", "url": "file:///srv"])
        let object = JSONObject(["kind": "mesh", "nodes": [1, 2], "x": ["y": true]])
        let unknown = try RoomLocation(json: .object(object))
        #expect(unknown == .unknown(kind: "mesh", object) && unknown.kind == "mesh" && unknown.json == .object(object))
    }

    @Test func `the text form survives every length of object, and its decoder refuses what is not its one spelling`() throws {
        for length in 0..<7 {
            let object = JSONObject(["k": .string(String(repeating: "x", count: length))])
            let text = CodeText.encode(prefix: "p:", object)
            #expect(try CodeText.decode(prefix: "p:", text, maxBytes: 64) == object)
            #expect(codeError { () throws(CodeError) in _ = try CodeText.decode(prefix: "q:", text, maxBytes: 64) } == "wrong_prefix")
            #expect(codeError { () throws(CodeError) in _ = try CodeText.decode(prefix: "p:", text + "\n", maxBytes: 64) } == "not_base64url")
            #expect(codeError { () throws(CodeError) in _ = try CodeText.decode(prefix: "p:", text, maxBytes: 7) } == "too_large")
        }
    }

    @Test func `hostile codes are refused with bounded work: far too long, nested too deep, not text`() {
        let huge = InviteCode.prefix + String(repeating: "A", count: 10_000_000)
        #expect(codeError { () throws(CodeError) in _ = try InviteCode(parsing: huge) } == "too_large")
        // Far within the size limit, but deeper than the JSON parser goes.
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        let deepText =
            InviteCode.prefix
            + Base64.encode(Array(#"{"v":2,"locations":[{"kind":"later","x":\#(deep)}]}"#.utf8))
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        #expect(codeError { () throws(CodeError) in _ = try InviteCode(parsing: deepText) } == "not_json")
        let notUTF8 =
            InviteCode.prefix + Base64.encode([0xFF, 0xFE, 0x7B, 0x7D]).replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        #expect(codeError { () throws(CodeError) in _ = try InviteCode(parsing: notUTF8) } == "not_json")
    }

    @Test func `a version two link code's bucket room reads as a room whose one location is its bucket`() throws {
        let room = try LinkedRoom(versionTwoJSON: ["bucket": "file:///srv/chat", "creator": .string(fingerprint), "room_id": "team"])
        #expect(room == LinkedRoom(roomID: "team", creatorFingerprint: fingerprint, locations: [.bucket(url: "file:///srv/chat")]))
        #expect(try LinkedRoom(json: room.json) == room)
        #expect(
            codeError { () throws(CodeError) in _ = try LinkedRoom(versionTwoJSON: ["creator": .string(fingerprint), "room_id": "team"]) } == "invalid_member")
    }
}
