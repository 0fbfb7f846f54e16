import ParleyCore
import ParleyTesting
import Testing

@Suite struct EventTests {
    @Test func `signed vector events verify and give the generator's hashes and bytes`() throws {
        for item in try Vectors.load("events.json")["valid"]!.array {
            let wire = Array(item["wire"]!.text.utf8)
            let event = try VerifiedEvent(parsing: wire)
            #expect(event.hash == item["event_hash"]!.text)
            #expect(event.event.contentHash == item["content_hash"]!.text)
            #expect(event.wire == wire, "the wire form is canonical and reproduced byte for byte")
            #expect(event.event.signingInput() == Array(item["signing_input"]!.text.utf8))
            let stripped = event.stripped()
            #expect(stripped.wire == Array(item["stripped_wire"]!.text.utf8))
            #expect(try VerifiedEvent(parsing: stripped.wire).hash == event.hash, "a stripped event still verifies")
        }
    }

    @Test func `invalid vector events are rejected with the expected code`() throws {
        for item in try Vectors.load("events.json")["invalid"]!.array {
            let name = item["name"]!.text
            #expect(
                performing: { _ = try VerifiedEvent(parsing: Array(item["wire"]!.text.utf8)) },
                throws: { error in
                    let code = (error as? EventError)?.code.rawValue
                    if code != item["error"]!.text { Issue.record("\(name): got \(String(describing: code)) \(error)") }
                    return true
                })
        }
    }

    @Test func `flipping any single bit of a signed event makes it fail verification`() throws {
        var alice = TestDevice("alice")
        let event = alice.message("room", "the quick brown fox", at: 1_760_000_000_000)
        let wire = event.wire
        var accepted = 0
        for index in wire.indices {
            for bit in 0..<8 {
                var mutated = wire
                mutated[index] ^= UInt8(1 << bit)
                if let verified = try? VerifiedEvent(parsing: mutated) {
                    // A flip may only survive where JSON gives it no meaning to the signature; none should.
                    Issue.record("bit \(bit) of byte \(index) accepted: \(String(decoding: verified.wire, as: UTF8.self))")
                    accepted += 1
                }
            }
        }
        #expect(accepted == 0)
    }

    @Test func `every envelope field is found by name, and a name one letter off is an unknown field`() throws {
        var alice = TestDevice("alice")
        let event = alice.message("room", "x", at: 1_760_000_000_000, parent: nil)
        let second = alice.message("room", "y", at: 1_760_000_000_001, parent: event.event.eventID)
        var object = try #require(try JSONParser().parse(second.wire).objectValue)
        #expect(
            object.members.map(\.key) == [
                "content", "content_hash", "event_id", "parent_event_id", "prev_event_hash", "room_id", "sender_id", "sender_key", "seq",
                "signature", "timestamp_ms", "type",
            ])
        #expect(try Event(json: .object(object)) == second.event)
        for name in object.members.map(\.key) {
            // Same length and first letter, last letter changed: what a matcher on length and a byte or two could take.
            let nearMiss = String(name.dropLast()) + (name.last == "z" ? "y" : "z")
            var changed = object
            changed[nearMiss] = changed[name]
            changed[name] = nil
            do {
                _ = try Event(json: .object(changed))
                Issue.record("\(nearMiss) accepted")
            } catch {
                #expect(error.code == .unknownField, "\(nearMiss): \(error)")
            }
        }
        // Each required field, when missing, is named in the error: the name comes from its index, not the input.
        for name in object.members.map(\.key) where name != "parent_event_id" && name != "content" {
            var missing = object
            missing[name] = nil
            do {
                _ = try Event(json: .object(missing))
                Issue.record("an event without \(name) accepted")
            } catch {
                #expect(error.code == .missingField && error.message == "missing field \"\(name)\"", "\(name): \(error)")
            }
        }
        object["types"] = "m.room.message"
        #expect(throws: EventError.self) { try Event(json: .object(object)) }
    }

    @Test func `an event signed here verifies and round-trips through its wire form`() throws {
        var alice = TestDevice("alice")
        let event = alice.message("room", "héllo", at: 1_760_000_000_000, parent: nil)
        let parsed = try VerifiedEvent(parsing: event.wire)
        #expect(parsed == event)
        #expect(parsed.event.seq == 1)
        #expect(parsed.event.prevEventHash == nil)
        let second = alice.message("room", "again", at: 1_760_000_000_001)
        #expect(second.event.prevEventHash == event.hash)
    }

    @Test func `content that no longer matches content_hash is rejected, and reattaching it is checked`() throws {
        var alice = TestDevice("alice")
        let event = alice.message("room", "secret", at: 1_760_000_000_000)
        let stripped = event.stripped()
        #expect(throws: EventError.self) { try stripped.withContent(JSONObject(["msgtype": "text", "body": "other"])) }
        #expect(try stripped.withContent(event.event.content!) == event)
    }

    @Test func `an event over 64 KiB is rejected`() {
        var alice = TestDevice("alice")
        let big = alice.message("room", String(repeating: "x", count: 70_000), at: 1_760_000_000_000)
        #expect {
            try VerifiedEvent(parsing: big.wire)
        } throws: { ($0 as? EventError)?.code == .tooLarge }
    }
}

@Suite struct IdentifierTests {
    @Test(arguments: ["general", "a", "room_1", "x=y-z.w", String(repeating: "r", count: 64)])
    func `valid ids are accepted`(id: String) {
        #expect(Identifier.problem(with: id, kind: .room) == nil)
    }

    @Test(arguments: ["", "..", "a..b", ".hidden", "a/b", "a\\b", "a\u{0}b", "Upper", "a b", "a:b", "ü", String(repeating: "r", count: 65), "%2f"])
    func `ids that could escape a path or collide are refused`(id: String) {
        #expect(Identifier.problem(with: id, kind: .room) != nil)
    }

    @Test func `event ids carry the room, the UTC time and a version-4 UUID`() {
        let id = EventID.make(roomID: "general", timestampMs: 1_757_851_245_123, randomBytes: [UInt8](repeating: 0xAB, count: 16))
        #expect(id == "general::20250914T120045.123Z::abababab-abab-4bab-abab-abababababab")
        #expect(EventID.problem(with: id, roomID: "general", timestampMs: 1_757_851_245_123) == nil)
        #expect(EventID.problem(with: id, roomID: "other") != nil)
        #expect(EventID.problem(with: id.uppercased()) != nil)
        #expect(EventID.timestampMs(of: id) == 1_757_851_245_123)
        #expect(EventID.timestampMs(of: "general::2025::x") == nil)
    }

    @Test func `timestamps format and parse across leap years and the epoch`() {
        for timestamp: Int64 in [0, 951_782_400_000, 951_868_799_999, 4_107_542_400_000, EventID.maxTimestampMs] {
            #expect(EventID.parseTimestamp(EventID.formatTimestamp(timestamp)) == timestamp)
        }
        #expect(EventID.formatTimestamp(951_782_400_000) == "20000229T000000.000Z")
        #expect(EventID.parseTimestamp("20010229T000000.000Z") == nil, "2001 is not a leap year")
    }
}

@Suite struct EventEncodingTests {
    @Test func `the one-pass encodings equal the canonical encodings of the objects they stand for`() {
        var alice = TestDevice("alice")
        var events = alice.create("r", at: 1_000)
        events.append(alice.message("r", "reply \u{1}\"quoted\"", at: 2_000, parent: events[0].event.eventID))
        events.append(alice.sign("r", "x.custom", JSONObject(["é": "\u{2028}", "a": [1, -2, true, .null]]), at: 3_000))
        for verified in events {
            for event in [verified.event, verified.event.stripped()] {
                let encoding = event.encoded()
                #expect(encoding.wire == CanonicalJSON.encode(.object(event.jsonObject())))
                #expect(encoding.envelope == CanonicalJSON.encode(.object(event.jsonObject(includingContent: false))))
                #expect(
                    encoding.signingInput == Event.signaturePrefix
                        + CanonicalJSON.encode(.object(event.jsonObject(includingContent: false, includingSignature: false))))
            }
        }
    }
}

@Suite struct CanonicalInputTests {
    /// Spellings of the same event that are not canonical: each must be re-encoded, not sliced.
    func variants(of wire: [UInt8]) -> [[UInt8]] {
        let text = String(decoding: wire, as: UTF8.self)
        return [
            Array(("{ " + text.dropFirst()).utf8),
            Array((text + "\n").utf8),
            Array(text.replacingOccurrences(of: "\"type\":", with: "\"type\" :").utf8),
            Array(text.replacingOccurrences(of: "/", with: "\\/").utf8),
            Array(text.replacingOccurrences(of: "hello", with: "h\\u0065llo").utf8),
            Array(text.replacingOccurrences(of: "\\n", with: "\\u000a").utf8),
            Array(text.replacingOccurrences(of: "\\u001f", with: "\\u001F").utf8),
        ]
    }

    @Test func `canonical input is sliced, other spellings are re-encoded, and both give the same bytes and hash`() throws {
        var alice = TestDevice("alice")
        var events = alice.create("r", at: 1_000)
        events.append(alice.message("r", "hello \u{1F} /path\nline", at: 2_000, parent: events[0].event.eventID))
        events.append(alice.message("r", "hello", at: 3_000).stripped())
        for event in events {
            let reference = event.event.encoded()
            for input in [event.wire] + variants(of: event.wire) {
                let (parsed, encoding) = try Event.parseEncoded(input)
                #expect(parsed == event.event)
                #expect(encoding.wire == reference.wire)
                #expect(encoding.envelope == reference.envelope)
                #expect(encoding.signingInput == reference.signingInput)
                #expect(encoding.content.map(Array.init) == reference.content.map(Array.init))
                #expect(try VerifiedEvent(parsing: input).hash == event.hash)
            }
        }
    }

    @Test func `the parser reports canonical input only when it is canonical`() throws {
        let parser = JSONParser()
        #expect(try parser.parseDocument(Array(#"{"a":[1,"\n\u001f"],"b":{}}"#.utf8)).isCanonical)
        for spelling in [#"{"b":1,"a":2}"#, #"{"a": 1}"#, #"["\/"]"#, #"["\u0041"]"#, #"["\u001F"]"#, #"["\u000a"]"#, #"["\u00e9"]"#, " 1"] {
            #expect(try !parser.parseDocument(Array(spelling.utf8)).isCanonical, "\(spelling)")
        }
    }
}
