import Foundation
@_spi(Tools) import ParleyClient
import ParleyCore
import ParleyStore

// MARK: The query API

/// `Node.query` (what `parley query` and `GET /v1/query` answer with) over the 1,000,000-event room of the log
/// benchmark: each kind of filter, on a warm store, median of 15 runs.
func queryBenchmarks(parley: String, workdir: String, roomEvents: Int) {
    let home = bigRoomHome(parley: parley, workdir: workdir, roomEvents: roomEvents)
    let node = try! Node(home: ParleyHome(path: home))
    let room = RoomFixture.roomID
    let middle = RoomFixture.start + 10 + Int64(roomEvents / 2)
    let deep = try! node.query(EventQuery(parameters: [("room", room), ("since", String(middle)), ("limit", "1")])).hits[0]
    let cursor = QueryCursor(roomID: room, order: EventOrder(deep.event)).text
    // Message i is sent by user(i % 32) and says "message i": one word that only it has.
    let cases: [(String, [(name: String, value: String)], ClosedRange<Int>)] = [
        ("first page of the room", [("room", room)], 50...50),
        ("a page from a cursor half way", [("room", room), ("cursor", cursor)], 50...50),
        ("one member's messages", [("room", room), ("sender", "user7"), ("type", "message")], 50...50),
        ("a time window in the middle", [("room", room), ("since", String(middle)), ("until", String(middle + 999))], 50...50),
        ("a word in one message", [("text", "\(roomEvents / 3)")], 1...1),
        ("a word in every message", [("room", room), ("text", "message")], 50...50),
        ("membership events (63, all at the start)", [("room", room), ("type", "member")], 50...50),
        (
            "membership events after the first minute (none: the worst case, a scan)",
            [("room", room), ("type", "member"), ("since", String(RoomFixture.start + 60_000))], 0...0
        ),
        (
            "a word in every message, among membership events (none: read in order, then gathered)",
            [("room", room), ("type", "member"), ("text", "message")], 0...0
        ),
        ("messages with files (none)", [("room", room), ("has_file", "true")], 0...0),
        ("one member's messages, all rooms", [("sender", "user3")], 50...50),
    ]
    for (name, parameters, expected) in cases {
        let query = try! EventQuery(parameters: parameters)
        var times: [Double] = []
        for _ in 0..<15 {
            times.append(measure { precondition(expected.contains(try! node.query(query).hits.count), "\(name): unexpected count") })
        }
        record("query over \(roomEvents) events: \(name) (median of 15)", median(times) * 1000, "ms", target: "≤ 50 ms", met: median(times) <= 0.050)
    }
    // What reading in order saves: the common word's matches gathered before they are ordered.
    var gathering = try! EventQuery(parameters: [("room", room), ("text", "message")])
    gathering.readsInOrder = false
    var times: [Double] = []
    for _ in 0..<5 { times.append(measure { precondition(try! node.query(gathering).hits.count == 50) }) }
    record("query over \(roomEvents) events: a word in every message, its matches gathered first (median of 5)", median(times) * 1000, "ms")
}
