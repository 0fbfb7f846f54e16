import Crypto
import Foundation
import ParleyCore
import ParleyStore
import ParleyTesting
import Testing

@_spi(Tools) @testable import ParleyClient

/// What `Node.importEvents` tells about lines it accepted but that deserve a word.
@Suite struct ImportReportTests {
    let directory = TemporaryDirectory()

    func node(_ user: String) throws -> Node {
        let home = ParleyHome(path: directory.file(user))
        _ = try Identity.create(userID: user, home: home)
        return try Node(home: home)
    }

    func events(of node: Node, _ roomID: String) throws -> [[UInt8]] {
        var events: [[UInt8]] = []
        try node.store.forEachEvent(roomID: roomID) { events.append($0) }
        return events
    }

    /// Imports `lines` into `node`; returns its summary and what it reported.
    func importing(_ lines: [[UInt8]], into node: Node) throws -> (summary: ImportSummary, reported: [String]) {
        let path = directory.file("input-\(UUID().uuidString).jsonl")
        try Data(lines.flatMap { $0 + [0x0A] }).write(to: URL(fileURLWithPath: path))
        let descriptor = open(path, O_RDONLY)
        defer { close(descriptor) }
        var reader = JSONLReader(descriptor: descriptor)
        var reported: [String] = []
        let summary = try node.importEvents(from: &reader) { reported.append($0) }
        return (summary, reported)
    }

    @Test func `an import reports a sealed event this device holds no key for yet`() throws {
        let alice = try node("alice")
        let carol = try node("carol")
        _ = try alice.createRoom("vault", encryption: .epochs(history: .shared))
        let secret = try alice.send("vault", text: "for members only")
        // Carol was never invited: she holds the room's events, and no key.
        let lines = try events(of: alice, "vault")
        let line = try #require(lines.firstIndex(of: secret.wire)) + 1
        let (summary, reported) = try importing(lines, into: carol)
        #expect(reported == ["line \(line): sealed with a key this device does not hold yet; it can be read once the key arrives"])
        #expect(summary.isClean && summary.accepted == lines.count)
    }

    @Test func `an import reports sealed and key events that can never be opened, and why`() throws {
        let alice = try node("alice")
        let bob = try node("bob")
        _ = try alice.createRoom("vault", encryption: .epochs(history: .shared))
        try alice.invite("vault", userID: "bob", key: bob.identity.signingKeyBase64)
        _ = try importing(try events(of: alice, "vault"), into: bob)
        try bob.join("vault")
        _ = try importing(try events(of: bob, "vault"), into: alice)
        // Alice's next message starts an epoch whose key Bob holds too: he may seal under it.
        let secret = try alice.send("vault", text: "for members only")
        let keyID = try #require(secret.event.content?["key_id"]?.stringValue)

        // Bob signs a message whose ciphertext opens under no key, and a key event whose seal to Alice does not open.
        var head = try #require(try bob.store.chainHead(roomID: "vault", senderKey: bob.identity.signingKeyBase64))
        let time = Node.systemClock() + 1_000
        func signedByBob(_ type: String, _ content: JSONObject) -> VerifiedEvent {
            let event = bob.identity.signingKey.signEvent(
                roomID: "vault", type: type, content: content, parentEventID: nil, senderID: "bob", seq: head.seq + 1, previousHash: head.hash,
                timestampMs: time, eventID: EventID.make(roomID: "vault", timestampMs: time, randomBytes: Array(repeating: UInt8(head.seq), count: 16)))
            head = ChainLink(seq: event.event.seq, hash: event.hash, timestampMs: time)
            return event
        }
        let garbled = signedByBob(
            EventType.encrypted,
            EncryptedContent(algorithm: .epochKey, keyID: keyID, nonce: [UInt8](repeating: 1, count: 12), ciphertext: [UInt8](repeating: 2, count: 48))
                .jsonObject)
        let ephemeral = Curve25519.KeyAgreement.PrivateKey().publicKey.rawRepresentation
        let badSeal = signedByBob(
            EventType.roomKey,
            RoomKeyContent(
                keyID: String(repeating: "ab", count: 32),
                recipients: [
                    SealedRoomKey(signingKey: alice.identity.signingKeyBase64, encapsulatedKey: Array(ephemeral), sealed: [UInt8](repeating: 3, count: 48))
                ]
            ).jsonObject)
        let (summary, reported) = try importing([garbled.wire, badSeal.wire], into: alice)
        #expect(summary.accepted == 2 && summary.cannotOpen == 2 && !summary.isClean)
        #expect(reported.count == 2, "\(reported)")
        #expect(reported.first?.hasPrefix("line 1: could not be opened: m.room.encrypted: decrypt_failed") == true, "\(reported)")
        #expect(reported.last?.hasPrefix("line 2: could not be opened: m.room.key: ") == true, "\(reported)")
    }
}
