import Foundation
import ParleyCore
import ParleyStore
import ParleyTesting
import Testing

/// docs/vectors/receipts.json: which receipts cover which messages (§7.10), from events a store is given; and which
/// receipt contents a reader accepts.
@Suite struct ReceiptVectorTests {
    @Test func `a store finds exactly the receipts the vectors say cover each message`() throws {
        let vectors = try Vectors.load("receipts.json")
        let directory = try TemporaryDirectory()
        let store = try EventStore(path: directory.file("parley.sqlite"))
        let lines = (vectors["events"]?.array ?? []).map { Array($0.text.utf8) }
        let report = try store.ingest(lines: lines, receivedMs: 1_760_000_100_000)
        let accepted = report.outcomes.filter { if case .accepted = $0 { true } else { false } }.count
        #expect(accepted == lines.count - 1, "all but Mallory's receipt are accepted")
        let roomID = vectors["room_id"]?.text ?? ""
        for expected in vectors["coverage"]?.array ?? [] {
            let position = ChainPosition(senderKey: expected["sender_key"]?.text ?? "", seq: expected["seq"]?.integerValue ?? 0)
            let found = try store.receiptsCovering(roomID: roomID, position: position)
            let wanted = (expected["covered_by"]?.array ?? []).map {
                "\($0["reader_id"]?.text ?? "") \($0["reader_key"]?.text ?? "") \($0["kind"]?.text ?? "") \($0["timestamp_ms"]?.integerValue ?? 0)"
            }
            #expect(found.map { "\($0.readerID) \($0.readerKey) \($0.kind.rawValue) \($0.timestampMs)" } == wanted, "\(expected["event_id"]?.text ?? "")")
        }
    }

    @Test func `receipt contents are accepted or refused as the vectors say`() throws {
        let vectors = try Vectors.load("receipts.json")
        for (index, entry) in (vectors["contents"]?.array ?? []).enumerated() {
            let content = try #require(entry["content"]?.objectValue)
            let parsed = Result { try EventContent.parse(type: EventType.receipt, content: content, roomID: vectors["room_id"]?.text ?? "") }
            #expect(((try? parsed.get()) != nil) == (entry["valid"] == .bool(true)), "contents[\(index)]")
        }
    }
}
