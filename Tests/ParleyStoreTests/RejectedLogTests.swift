import Foundation
import ParleyCore
import ParleyTesting
import Testing

@testable import ParleyStore

@Suite struct RejectedLogTests {
    let directory = TemporaryDirectory()

    func makeStore() throws -> EventStore { try EventStore(path: directory.file("parley.sqlite")) }

    @Test func `the rejected-events log keeps its newest entries and drops the oldest first`() throws {
        let store = try makeStore()
        // 105 inputs of 100 lines that are not events, each input at its own time.
        for input in 0..<105 {
            _ = try store.ingest(lines: (0..<100).map { Array("not an event \(input).\($0)".utf8) }, receivedMs: Int64(input))
        }
        let log = try store.rejectedEvents(limit: 20_000)
        #expect((EventStore.rejectedLogLimit...EventStore.rejectedLogLimit + 100).contains(log.count), "\(log.count) entries")
        #expect(log.first?.receivedMs == 104)
        #expect(log.last.map { $0.receivedMs >= 4 } == true, "the oldest entries are gone")
    }

    @Test func `one ingest logs at most 100 rejections of one device, and still refuses every one`() throws {
        let store = try makeStore()
        var alice = TestDevice("alice")
        var events = alice.create("r", at: 1_000)
        let join = events[1]
        // A second event at the join's seq: a fork. Every later event of the device is refused.
        alice.rewind("r", to: 1, hash: events[0].hash)
        events.append(alice.message("r", "twin", at: 1_001))
        alice.rewind("r", to: 2, hash: join.hash)
        for index in 0..<300 { events.append(alice.message("r", "after the fork \(index)", at: 1_002 + Int64(index))) }
        let report = try store.ingest(lines: events.map(\.wire), receivedMs: 0)
        #expect(report.outcomes.dropFirst(2).allSatisfy { if case .rejected = $0 { true } else { false } })
        #expect(try store.rejectedEvents(limit: 1000).count == EventStore.rejectedPerSenderPerBatch)
    }

    @Test func `clearing the rejected-events log empties it and says how much it held`() throws {
        let store = try makeStore()
        _ = try store.ingest(lines: [Array("one".utf8), Array("two".utf8)], receivedMs: 0)
        #expect(try store.clearRejectedEvents() == 2)
        #expect(try store.rejectedEvents().isEmpty)
        #expect(try store.clearRejectedEvents() == 0)
    }
}
