import Crypto
import ParleyCore
import ParleyTesting
import Testing

@Suite struct ReconciliationTests {
    static func randomItems(_ count: Int, generator: inout SeededGenerator, from startMs: UInt64 = 1_760_000_000_000, spanMs: UInt64 = 86_400_000)
        -> [ReconciliationItem]
    {
        (0..<count).map { _ in
            ReconciliationItem(
                timestampMs: startMs + generator.next() % spanMs,
                hash: EventHash256(words: (generator.next(), generator.next(), generator.next(), generator.next())))
        }
    }

    /// Two sides exchanging messages cut into datagram-sized parts until neither has anything to say; each side's
    /// items grow by what the other sent. Returns how many message rounds passed (a round: one side's parts).
    static func reconcile(_ a: inout Set<ReconciliationItem>, _ b: inout Set<ReconciliationItem>, salt: UInt64, maxBytes: Int = 1_100) throws -> (
        rounds: Int, bytes: Int
    ) {
        var sides = [Reconciler(ReconciliationSet(Array(a))), Reconciler(ReconciliationSet(Array(b)))]
        var received: [Set<ReconciliationItem>] = [[], []]
        var inFlight = sides[0].start(salt: salt).parts(maxBytes: maxBytes)
        var sender = 0
        var rounds = 0
        var bytes = 0
        while !inFlight.isEmpty {
            rounds += 1
            let receiver = 1 - sender
            var replies: [ReconciliationMessage] = []
            for part in inFlight {
                let encoded = part.encoded
                #expect(encoded.count <= maxBytes)
                bytes += encoded.count
                let reply = sides[receiver].reply(to: try ReconciliationMessage(decoding: encoded))
                received[sender].formUnion(reply.send)
                replies += reply.message?.parts(maxBytes: maxBytes) ?? []
            }
            inFlight = replies
            sender = receiver
        }
        a.formUnion(received[0])
        b.formUnion(received[1])
        sides = []
        return (rounds, bytes)
    }

    @Test func `two sets that differ on both sides end equal after one session`() throws {
        var generator = SeededGenerator(seed: 1)
        let shared = Self.randomItems(20_000, generator: &generator)
        var a = Set(shared + Self.randomItems(200, generator: &generator))
        var b = Set(shared + Self.randomItems(200, generator: &generator))
        let union = a.union(b)
        var sessions = 0
        while a != b && sessions < 3 {
            sessions += 1
            _ = try Self.reconcile(&a, &b, salt: generator.next())
        }
        #expect(a == union)
        #expect(b == union)
        #expect(sessions <= 2, "a short-id collision may leave an item to the next session, rarely more")
    }

    @Test func `a few differences among many are found within three round trips, the last one moving events`() throws {
        var generator = SeededGenerator(seed: 2)
        let shared = Self.randomItems(100_000, generator: &generator)
        for differences in [1, 5, 10] {
            var a = Set(shared + Self.randomItems(differences / 2 + differences % 2, generator: &generator))
            var b = Set(shared + Self.randomItems(differences / 2, generator: &generator))
            let union = a.union(b)
            let (rounds, bytes) = try Self.reconcile(&a, &b, salt: generator.next())
            #expect(a == union && b == union)
            // Rounds of messages until nothing is left to say: the last carries wants, answered by events; with the
            // first message and the events that answer the last, at most six messages: three round trips.
            #expect(rounds <= 5, "\(differences) differences took \(rounds) rounds")
            #expect(bytes < 4_000 * differences, "\(differences) differences cost \(bytes) bytes")
        }
    }

    @Test func `identical sets settle with the first message and no reply`() throws {
        var generator = SeededGenerator(seed: 3)
        let items = Self.randomItems(5_000, generator: &generator)
        let first = Reconciler(ReconciliationSet(items)).start(salt: 9)
        let reply = Reconciler(ReconciliationSet(items.reversed())).reply(to: first)
        #expect(reply.message == nil)
        #expect(reply.send.isEmpty)
    }

    @Test func `a side holding nothing lists nothing and is sent everything`() throws {
        var generator = SeededGenerator(seed: 4)
        var a = Set<ReconciliationItem>()
        var b = Set(Self.randomItems(3_000, generator: &generator))
        let first = Reconciler(ReconciliationSet([])).start(salt: 1)
        #expect(first.ranges == [ReconciliationMessage.Range(upper: .infinity, mode: .ids([]))])
        _ = try Self.reconcile(&a, &b, salt: 1)
        #expect(a == b)
        #expect(a.count == 3_000)
    }

    @Test func `items with one timestamp are cut between by hash prefixes`() throws {
        var generator = SeededGenerator(seed: 5)
        let shared = Self.randomItems(2_000, generator: &generator, spanMs: 1)
        var a = Set(shared + Self.randomItems(30, generator: &generator, spanMs: 1))
        var b = Set(shared)
        _ = try Self.reconcile(&a, &b, salt: 77)
        #expect(a == b)
        let lower = ReconciliationItem(timestampMs: 5, hash: EventHash256(bytes: [0xAB, 0xCD] + Array(repeating: 0, count: 30))!)
        let upper = ReconciliationItem(timestampMs: 5, hash: EventHash256(bytes: [0xAB, 0xCE] + Array(repeating: 0, count: 30))!)
        let bound = ReconciliationBound(between: lower, and: upper)
        #expect(bound.prefix == [0xAB, 0xCE])
        #expect(bound.isAbove(lower))
        #expect(!bound.isAbove(upper))
    }

    @Test func `a message reads back as written and its parts tile the same stretch`() throws {
        var generator = SeededGenerator(seed: 6)
        let items = Self.randomItems(50_000, generator: &generator)
        let message = Reconciler(ReconciliationSet(items)).start(salt: 0xDEAD_BEEF)
        #expect(try ReconciliationMessage(decoding: message.encoded) == message)
        let parts = message.parts(maxBytes: 100)
        #expect(parts.count > 1)
        #expect(parts.first?.lower == message.lower)
        for (part, next) in zip(parts, parts.dropFirst()) {
            #expect(next.lower == part.ranges.last?.upper)
        }
        #expect(parts.flatMap(\.ranges) == message.ranges)
    }

    @Test func `a malformed message is refused with what is wrong with it`() throws {
        let salt: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 1]
        let zeroLower: [UInt8] = [0, 0]
        let cases: [(String, [UInt8])] = [
            ("it ends early", [0, 0, 0]),
            ("it ends early", salt + zeroLower + [(5 << 3) | 1, 1, 2]),
            ("bounds do not increase", salt + [10, 0] + [(1 << 3) | 0]),
            ("a range follows the infinite bound", salt + zeroLower + [0, 1 << 3]),
            ("the infinite bound has a prefix", salt + zeroLower + [4]),
            ("a bound's prefix ends in a zero byte", salt + zeroLower + [(2 << 3) | 4, 1, 0]),
            ("a bound's prefix of 33 bytes", salt + zeroLower + [(2 << 3) | 4, 33] + Array(repeating: 1, count: 33)),
            ("a varint is not in its shortest form", salt + [0x80, 0x00, 0]),
            ("a varint exceeds 64 bits", salt + Array(repeating: 0xFF, count: 9) + [0x02, 0]),
            ("more than 1024 short ids", salt + zeroLower + [2, 0x81, 0x08]),
            ("the lower bound is infinity", salt + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0]),
        ]
        for (reason, bytes) in cases {
            #expect(throws: ReconciliationError(reason)) { try ReconciliationMessage(decoding: bytes) }
        }
        #expect(throws: ReconciliationError("a reconciliation message of 65537 bytes exceeds 65536")) {
            try ReconciliationMessage(decoding: Array(repeating: 0, count: 65_537))
        }
    }

    @Test func `a message claiming absurd ranges costs the answerer at most its branches per range`() throws {
        var generator = SeededGenerator(seed: 7)
        let reconciler = Reconciler(ReconciliationSet(Self.randomItems(100_000, generator: &generator)))
        // One datagram's worth of fingerprint ranges that match nothing, each over a sliver of time.
        var ranges: [ReconciliationMessage.Range] = []
        for index in 0..<200 {
            ranges.append(
                .init(upper: ReconciliationBound(timestampMs: 1_760_000_000_000 + UInt64(index + 1) * 400_000, prefix: []), mode: .fingerprint([1, 2, 3, 4])))
        }
        let message = ReconciliationMessage(salt: 3, lower: ReconciliationBound(timestampMs: 1_760_000_000_000, prefix: []), ranges: ranges)
        let reply = reconciler.reply(to: message)
        let out = reply.message?.ranges.count ?? 0
        #expect(out <= 200 * reconciler.parameters.branches)
        #expect(reply.send.isEmpty)
    }
}

@Suite struct BloomDigestTests {
    @Test func `digests cover the whole hash space, each within a datagram, and hold every item`() throws {
        var generator = SeededGenerator(seed: 11)
        let hashes = ReconciliationTests.randomItems(20_000, generator: &generator).map(\.hash)
        let digests = BloomDigest.digests(of: hashes, salt: 5, maxBytes: 1_100)
        #expect(digests.first?.firstPrefix == 0)
        #expect(digests.last?.lastPrefix == .max)
        for (digest, next) in zip(digests, digests.dropFirst()) { #expect(next.firstPrefix == digest.lastPrefix + 1) }
        for digest in digests {
            #expect(digest.encoded.count <= 1_100)
            #expect(try BloomDigest(decoding: digest.encoded) == digest)
        }
        for hash in hashes { #expect(digests.contains { $0.covers(hash) && $0.contains(hash) }) }
        let others = ReconciliationTests.randomItems(20_000, generator: &generator).map(\.hash)
        let falsePositives = others.filter { hash in digests.contains { $0.covers(hash) && $0.contains(hash) } }.count
        #expect(falsePositives < 400, "about 1% of 20,000 expected, found \(falsePositives)")
    }

    @Test func `hashes made to share one prefix stay in one digest rather than being skipped`() {
        var generator = SeededGenerator(seed: 12)
        let hashes = (0..<3_000).map { _ in EventHash256(words: (0xABCD << 48 | generator.next() >> 16, generator.next(), generator.next(), generator.next())) }
        let digests = BloomDigest.digests(of: hashes, salt: 1, maxBytes: 1_100)
        for hash in hashes { #expect(digests.contains { $0.covers(hash) && $0.contains(hash) }) }
    }

    @Test func `a malformed digest is refused`() {
        let header: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xFF, 0xFF]
        #expect(throws: ReconciliationError("a Bloom digest with 0 bit positions per item")) { try BloomDigest(decoding: header + [0, 1]) }
        #expect(throws: ReconciliationError("a Bloom digest with 17 bit positions per item")) { try BloomDigest(decoding: header + [17, 1]) }
        #expect(throws: ReconciliationError("a Bloom digest has no filter")) { try BloomDigest(decoding: header + [7]) }
        #expect(throws: ReconciliationError("a Bloom digest's stretch ends before it starts")) {
            try BloomDigest(decoding: [0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 0, 1, 7, 1])
        }
        #expect(throws: ReconciliationError("it ends early")) { try BloomDigest(decoding: [1, 2, 3]) }
    }
}

@Suite struct PeerDatagramTests {
    static let alice = TestDevice("alice")
    static let mallory = TestDevice("mallory")

    static func datagram(_ body: [UInt8], key: SymmetricKey? = nil, device: TestDevice = alice, roomID: String = "general") -> PeerDatagram {
        PeerDatagram(
            kind: .reconcile, roomID: roomID, senderKey: device.key.publicKeyBytes, sentMs: 1_760_000_000_000, nonce: Array(repeating: 7, count: 12), echo: nil,
            body: body, sealingWith: key, sign: device.key.sign)
    }

    @Test func `a datagram reads back, verifies and opens as written, in clear and sealed`() throws {
        let plain = Self.datagram([1, 2, 3])
        let read = try PeerDatagram(parsing: plain.encoded)
        #expect(read == plain)
        try read.verify()
        #expect(try read.openBody(with: nil) == [1, 2, 3])

        let key = PeerDatagram.datagramKey(roomKey: SymmetricKey(data: Array(repeating: 9, count: 32)), roomID: "general")
        let sealed = try PeerDatagram(parsing: Self.datagram([4, 5, 6], key: key).encoded)
        try sealed.verify()
        #expect(sealed.body != [4, 5, 6])
        #expect(try sealed.openBody(with: key) == [4, 5, 6])
        #expect(throws: PeerDatagramError(.badSeal, "the datagram's body does not open under the room's key")) {
            try sealed.openBody(with: SymmetricKey(data: Array(repeating: 1, count: 32)))
        }
        #expect(throws: PeerDatagramError(.badSeal, "a sealed datagram in a room without a pre-shared key")) { try sealed.openBody(with: nil) }
        #expect(throws: PeerDatagramError(.badSeal, "a datagram in clear in a pre-shared-key room")) { try read.openBody(with: key) }
    }

    @Test func `a full body fits the largest datagram`() throws {
        for sealed in [false, true] {
            let key = sealed ? SymmetricKey(data: Array(repeating: 3, count: 32)) : nil
            let budget = PeerDatagram.bodyBudget(roomID: "general", sealed: sealed)
            #expect(Self.datagram(Array(repeating: 0, count: budget), key: key).encoded.count == PeerDatagram.maxBytes)
        }
    }

    @Test func `truncated, oversized, altered or foreign datagrams are refused with their reason`() throws {
        let bytes = Self.datagram([1, 2, 3]).encoded
        let code: ([UInt8]) -> PeerDatagramError.Code? = { input in
            do {
                try PeerDatagram(parsing: input).verify()
                return nil
            } catch let error as PeerDatagramError { return error.code } catch { return nil }
        }
        #expect(code(bytes) == nil)
        #expect(code(Array(bytes.prefix(60))) == .malformed)
        #expect(code(Array(bytes.prefix(3))) == .malformed)
        #expect(code(bytes + Array(repeating: 0, count: PeerDatagram.maxBytes)) == .oversized)
        var altered = bytes
        altered[altered.count - 70] ^= 1
        #expect(code(altered) == .badSignature)
        var otherKind = bytes
        otherKind[4] = 99
        #expect(code(otherKind) == .malformed)
        var badRoom = bytes
        badRoom[7] = UInt8(ascii: "G")
        #expect(code(badRoom) == .malformed)
        var forged = Self.datagram([1, 2, 3], device: Self.mallory)
        forged.senderKey = Self.alice.key.publicKeyBytes
        #expect(code(forged.encoded) == .badSignature)
    }
}
