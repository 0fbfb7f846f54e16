import Crypto
import ParleyCore
import Testing

@Suite struct PeerAnnouncementTests {
    let nonce = Array(1...12).map(UInt8.init)
    let team = PeerAnnouncement.roomKey(createHash: "create-hash-of-team", preSharedRoomKey: nil, roomID: "team")

    @Test func `an announcement reads back as written and names the rooms whose keys made its tags`() throws {
        let other = PeerAnnouncement.roomKey(createHash: "create-hash-of-other", preSharedRoomKey: nil, roomID: "other")
        let announcement = PeerAnnouncement(port: 7701, sentMs: 1_760_000_000_000, nonce: nonce, roomKeys: [team])
        let read = try PeerAnnouncement(parsing: announcement.encoded)
        #expect(read == announcement)
        #expect(read.names(roomKey: team))
        #expect(!read.names(roomKey: other))
    }

    @Test func `a room's tag changes with the nonce, the port and the secret, so an observer cannot link announcements`() {
        let first = PeerAnnouncement.tag(key: team, port: 7701, sentMs: 1, nonce: nonce)
        #expect(first != PeerAnnouncement.tag(key: team, port: 7701, sentMs: 1, nonce: nonce.reversed()))
        #expect(first != PeerAnnouncement.tag(key: team, port: 7702, sentMs: 1, nonce: nonce))
        let sealed = PeerAnnouncement.roomKey(createHash: "create-hash-of-team", preSharedRoomKey: Array(repeating: 9, count: 32), roomID: "team")
        #expect(first != PeerAnnouncement.tag(key: sealed, port: 7701, sentMs: 1, nonce: nonce))
        // A replayed announcement with another port does not carry the room's tag for that port.
        var moved = PeerAnnouncement(port: 7701, sentMs: 1, nonce: nonce, roomKeys: [team])
        moved.port = 9999
        #expect(!moved.names(roomKey: team))
    }

    @Test func `anything but an announcement's exact form is refused`() {
        let valid = PeerAnnouncement(port: 7701, sentMs: 1, nonce: nonce, roomKeys: [team]).encoded
        for bytes in [
            [], Array(valid.prefix(20)), valid + [0], Array("PRLB".utf8) + valid.dropFirst(4), valid.prefix(27) + [0],
            valid.prefix(27) + [2] + valid.dropFirst(28),
        ] {
            #expect(throws: PeerDatagramError.self) { try PeerAnnouncement(parsing: Array(bytes)) }
        }
    }
}
