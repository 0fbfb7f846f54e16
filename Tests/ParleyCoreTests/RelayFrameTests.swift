import ParleyCore
import ParleyTesting
import Testing

@Suite struct RelayFrameTests {
    static let key = TestDevice("alice").publicKey

    static let frames: [(RelayFrame, RelayFrame.Sender)] = [
        (.auth(token: "t", deviceKey: key), .client),
        (.subscribe([.init(roomID: "team", heads: [key: 3])]), .client),
        (.publish(id: 7, events: [["a": 1]]), .client),
        (.history(id: 8, roomID: "team", before: "team::20251009T085320.123Z::34f3715e-36de-43e2-9307-24174c0be1aa", limit: 50), .client),
        (.typing(roomID: "team", isTyping: true), .client),
        (.ready(userID: "alice", deviceKey: key), .relay),
        (.heads(roomID: "team", heads: [key: 1]), .relay),
        (.events(roomID: "team", events: [["b": "c"]]), .relay),
        (.synced(roomID: "team"), .relay),
        (.ack(id: 7, results: [.init(.stored, eventID: "x"), .init(.rejected, eventID: nil, code: "gap", reason: "why")]), .relay),
        (.page(id: 8, roomID: "team", events: [], hasMore: false), .relay),
        (.typingNotice(roomID: "team", userID: "bob", isTyping: false), .relay),
        (.error(code: "not_a_member", message: "no", id: 4), .relay),
    ]

    @Test func `every frame reads back as written, from the side that sends it`() throws {
        for (frame, sender) in Self.frames {
            #expect(try RelayFrame(parsing: Array(frame.text.utf8), from: sender) == frame)
        }
    }

    @Test func `a frame from the other side, an unknown type or a bad member is refused with its code`() {
        let cases: [(String, RelayFrame.Sender, RelayProtocolError.Code)] = [
            (RelayFrame.synced(roomID: "team").text, .client, .unknownType),
            (RelayFrame.auth(token: "t", deviceKey: Self.key).text, .relay, .unknownType),
            ("{\"type\":\"subscribe\",\"rooms\":[{\"room_id\":\"Team\",\"heads\":{}}]}", .client, .invalidMember),
            ("{\"type\":\"subscribe\",\"rooms\":[{\"room_id\":\"team\",\"heads\":{\"\(Self.key)\":0}}]}", .client, .invalidMember),
            ("{\"type\":\"publish\",\"id\":-1,\"events\":[]}", .client, .invalidMember),
            ("{\"type\":\"history\",\"id\":1,\"room_id\":\"team\",\"limit\":501}", .client, .invalidMember),
            ("{\"type\":7}", .client, .malformedFrame),
            ("[1]", .client, .malformedFrame),
            (String(repeating: " ", count: RelayFrame.maxFrameBytes + 1), .client, .malformedFrame),
        ]
        for (text, sender, code) in cases {
            do throws(RelayProtocolError) {
                _ = try RelayFrame(parsing: Array(text.utf8), from: sender)
                Issue.record("Taken: \(text.prefix(80))")
            } catch {
                #expect(error.code == code, "\(text.prefix(80))")
            }
        }
    }

    @Test func `a device's answer to a relay challenge verifies only for its key and that challenge`() throws {
        let device = TestDevice("alice")
        let challenge = RelayChallenge(
            origin: "https://relay.example.net", userID: "alice", nonce: Base64.encode([UInt8](repeating: 1, count: 32)), expiresMs: 1_760_000_300_000)
        let signature = Base64.encode(device.key.sign(challenge.signingInput(deviceKey: device.publicKey)))
        try challenge.verify(deviceKey: device.publicKey, signature: signature)
        #expect(challenge.signingInput(deviceKey: device.publicKey).starts(with: Array("parley.relay.device.v1\n".utf8)))
        var elsewhere = challenge
        elsewhere.origin = "https://other.example.net"
        #expect(throws: RelayProtocolError.self) { try elsewhere.verify(deviceKey: device.publicKey, signature: signature) }
        #expect(throws: RelayProtocolError.self) { try challenge.verify(deviceKey: TestDevice("bob").publicKey, signature: signature) }
        #expect(try RelayChallenge(json: challenge.json) == challenge)
    }
}

@Suite struct RelayChallengeVectorTests {
    static func cases(_ group: String) throws -> [JSONValue] { try Vectors.load("relay.json")[group]?.arrayValue ?? [] }

    @Test func `each valid challenge vector gives its signing input and its signature verifies`() throws {
        let cases = try Self.cases("valid")
        #expect(cases.count == 2)
        for item in cases {
            let challenge = try RelayChallenge(json: try #require(item["challenge"]))
            let key = try #require(item["device_key"]?.stringValue)
            #expect(Hex.encode(challenge.signingInput(deviceKey: key)) == item["signing_input_hex"]?.stringValue, "\(item["name"]?.stringValue ?? "")")
            try challenge.verify(deviceKey: key, signature: try #require(item["signature"]?.stringValue))
        }
    }

    @Test func `no invalid challenge vector verifies`() throws {
        let cases = try Self.cases("invalid")
        #expect(cases.count == 4)
        for item in cases {
            let challenge = try RelayChallenge(json: try #require(item["challenge"]))
            #expect(throws: RelayProtocolError.self, "\(item["name"]?.stringValue ?? "")") {
                try challenge.verify(deviceKey: item["device_key"]?.stringValue ?? "", signature: item["signature"]?.stringValue ?? "")
            }
        }
    }
}
