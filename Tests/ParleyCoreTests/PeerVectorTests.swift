import Crypto
import ParleyCore
import ParleyTesting
import Testing

/// docs/vectors/peers.json, from the independent generator: the peer transport's forms and reconciliation rules.
@Suite struct PeerVectorTests {
    static let vectors = try! Vectors.load("peers.json")

    static func items(_ value: JSONValue?) -> [ReconciliationItem] {
        (value?.array ?? []).map { pair in
            ReconciliationItem(timestampMs: UInt64(pair.array[0].integerValue!), hash: EventHash256(hex: pair.array[1].text)!)
        }
    }

    static func salt(_ value: JSONValue?) -> UInt64 { UInt64(value!.text, radix: 16)! }

    @Test func `fingerprints, bounds and short ids are the generator's`() {
        let salt = Self.salt(Self.vectors["salt"])
        let set = ReconciliationSet(Self.items(Self.vectors["items"]))
        for case_ in Self.vectors["fingerprints"]!.array {
            let range = Int(case_["from"]!.integerValue!)..<Int(case_["to"]!.integerValue!)
            #expect(Hex.encode(set.fingerprint(range, salt: salt)) == case_["fingerprint"]!.text)
        }
        for case_ in Self.vectors["bounds"]!.array {
            let lower = Self.items(.array([case_["lower"]!]))[0]
            let upper = Self.items(.array([case_["upper"]!]))[0]
            let bound = ReconciliationBound(between: lower, and: upper)
            #expect(bound.timestampMs == UInt64(case_["bound"]!.array[0].integerValue!))
            #expect(Hex.encode(bound.prefix) == case_["bound"]!.array[1].text)
        }
        for case_ in Self.vectors["short_ids"]!.array {
            #expect(Int(ReconciliationMessage.shortID(EventHash256(hex: case_["hash"]!.text)!, salt: salt)) == Int(case_["short_id"]!.integerValue!))
        }
    }

    @Test func `each session's messages and answers are the generator's, byte for byte`() throws {
        for session in Self.vectors["sessions"]!.array {
            let name = session["name"]!.text
            let sides = ["a": Reconciler(ReconciliationSet(Self.items(session["a"]))), "b": Reconciler(ReconciliationSet(Self.items(session["b"])))]
            let steps = session["steps"]!.array
            #expect(Hex.encode(sides["a"]!.start(salt: Self.salt(session["salt"])).encoded) == steps.first?["message_hex"]?.text, "\(name)")
            for step in steps {
                let answerer = step["from"]!.text == "a" ? "b" : "a"
                let message = try ReconciliationMessage(decoding: Vectors.hex(step["message_hex"]!.text))
                let reply = sides[answerer]!.reply(to: message)
                #expect(reply.message.map { Hex.encode($0.encoded) } == step["answer_hex"]?.stringValue, "\(name)")
                #expect(Set(reply.send) == Set(Self.items(step["sends"])), "\(name)")
            }
        }
    }

    @Test func `malformed messages are refused`() {
        for case_ in Self.vectors["malformed"]!.array {
            #expect(throws: ReconciliationError.self, "\(case_["name"]!.text)") { try ReconciliationMessage(decoding: Vectors.hex(case_["hex"]!.text)) }
        }
    }

    @Test func `a Bloom digest over every prefix is the generator's, and holds what it says`() throws {
        let bloom = Self.vectors["bloom"]!
        let hashes = bloom["hashes"]!.array.map { EventHash256(hex: $0.text)! }
        let digests = BloomDigest.digests(of: hashes, salt: Self.salt(bloom["salt"]), maxBytes: 10_000)
        #expect(digests.count == 1)
        #expect(Hex.encode(digests[0].encoded) == bloom["digest_hex"]!.text)
        let read = try BloomDigest(decoding: Vectors.hex(bloom["digest_hex"]!.text))
        for other in bloom["others"]!.array {
            #expect(read.contains(EventHash256(hex: other["hash"]!.text)!) == other["contained"]!.boolValue)
        }
    }

    @Test func `datagrams encode, seal and verify as the generator's, and the broken ones are refused with its code`() throws {
        let datagrams = Self.vectors["datagrams"]!
        let seed = Array(SHA256.hash(data: Array("parley vector signing key alice".utf8)))
        let alice = try DeviceSigningKey(seed: seed)
        let roomKey = SymmetricKey(data: Vectors.hex(datagrams["room_key_hex"]!.text))
        let key = PeerDatagram.datagramKey(roomKey: roomKey, roomID: "general")
        #expect(key.withUnsafeBytes { Hex.encode(Array($0)) } == datagrams["datagram_key_hex"]!.text)
        for case_ in datagrams["valid"]!.array {
            let sealed = case_["sealed"]!.boolValue!
            let echo = Vectors.hex(case_["echo_hex"]!.text)
            let made = PeerDatagram(
                kind: PeerDatagram.Kind(rawValue: UInt8(case_["kind"]!.integerValue!))!, roomID: case_["room_id"]!.text, senderKey: alice.publicKeyBytes,
                sentMs: UInt64(case_["sent_ms"]!.integerValue!), nonce: Vectors.hex(case_["nonce_hex"]!.text), echo: echo.allSatisfy { $0 == 0 } ? nil : echo,
                body: Vectors.hex(case_["body_hex"]!.text), sealingWith: sealed ? key : nil, sign: alice.sign)
            #expect(Hex.encode(made.encoded) == case_["hex"]!.text, "\(case_["name"]!.text)")
            let read = try PeerDatagram(parsing: Vectors.hex(case_["hex"]!.text))
            try read.verify()
            #expect(try read.openBody(with: sealed ? key : nil) == Vectors.hex(case_["body_hex"]!.text))
        }
        for case_ in datagrams["invalid"]!.array {
            var code: String?
            do { try PeerDatagram(parsing: Vectors.hex(case_["hex"]!.text)).verify() } catch { code = error.code.rawValue }
            #expect(code == case_["error"]!.text, "\(case_["name"]!.text)")
        }
    }

    @Test func `event lines pack into the generator's fragments`() {
        let batches = Self.vectors["event_batches"]!
        var ids = batches["batch_ids"]!.array.map { UInt64($0.integerValue!) }.makeIterator()
        let bodies = EventBatches.bodies(for: batches["lines"]!.array.map { Array($0.text.utf8) }, budget: Int(batches["budget"]!.integerValue!)) {
            ids.next()!
        }
        #expect(bodies.map(Hex.encode) == batches["bodies_hex"]!.array.map(\.text))
    }

    @Test func `block pieces, absences and wants are the generator's, and its refused wants are refused`() throws {
        let blocks = try #require(Self.vectors["blocks"])
        #expect(BlockPieces.pieceBytes == Int(blocks["piece_bytes"]!.integerValue!))
        for tier in BlockTier.allCases {
            #expect(BlockPieces.pieceCount(tier) == Int(blocks["piece_counts"]!["\(tier.rawValue)"]!.integerValue!))
        }
        let small = try #require(Hex.decode(blocks["small_block_hex"]!.text))
        let smallID = try #require(BlockID(hex: blocks["small_block_id"]!.text))
        for (index, expected) in blocks["small_pieces_hex"]!.array.enumerated() {
            let piece = BlockPiece(of: small, id: smallID, tier: .small, index: index)
            #expect(Hex.encode(piece.encoded) == expected.text)
            #expect(try BlockPiece(decoding: piece.encoded) == piece)
        }
        #expect(Hex.encode(BlockPiece.absent(id: smallID, tier: .small)) == blocks["absent_hex"]!.text)
        let largeID = try #require(BlockID(hex: blocks["large_block_id"]!.text))
        for want in blocks["wants"]!.array {
            let ranges = want["ranges"]!.array.map { Int($0.array[0].integerValue!)..<Int($0.array[1].integerValue!) }
            #expect(Hex.encode(BlockWant(id: largeID, tier: .large, ranges: ranges).encoded) == want["hex"]!.text)
            #expect(try BlockWant(decoding: Hex.decode(want["hex"]!.text)!).ranges == ranges)
        }
        for refused in blocks["refused_wants"]!.array {
            #expect(throws: ReconciliationError.self, "\(refused["name"]!.text)") { try BlockWant(decoding: Hex.decode(refused["hex"]!.text)!) }
        }
    }

    @Test func `announcement keys and an announcement's tags are the generator's`() throws {
        let vectors = try #require(Self.vectors["announcements"])
        var keys: [SymmetricKey] = []
        for room in vectors["rooms"]!.array {
            let key = PeerAnnouncement.roomKey(
                createHash: room["create_hash"]!.text, preSharedRoomKey: room["pre_shared_key_hex"]?.stringValue.flatMap { Hex.decode($0) },
                roomID: room["room_id"]!.text)
            #expect(key.withUnsafeBytes { Hex.encode(Array($0)) } == room["key_hex"]!.text)
            keys.append(key)
        }
        let announcement = PeerAnnouncement(
            port: UInt16(vectors["port"]!.integerValue!), sentMs: UInt64(vectors["sent_ms"]!.integerValue!), nonce: Hex.decode(vectors["nonce_hex"]!.text)!,
            roomKeys: keys)
        #expect(Hex.encode(announcement.encoded) == vectors["hex"]!.text)
        for key in keys { #expect(try PeerAnnouncement(parsing: Hex.decode(vectors["hex"]!.text)!).names(roomKey: key)) }
    }
}
