import Foundation
import ParleyCore

/// Loads the protocol test vectors in docs/vectors/, found relative to this source file.
public enum Vectors {
    public static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/vectors")

    /// The parsed vector file `name` (for example `"events.json"`).
    public static func load(_ name: String) throws -> JSONValue {
        let data = try Data(contentsOf: directory.appendingPathComponent(name))
        return try JSONParser(maxDepth: 64, maxBytes: 1 << 24).parse(Array(data))
    }

    public static func hex(_ text: String) -> [UInt8] {
        guard let bytes = Hex.decode(text.lowercased()) else { preconditionFailure("bad hex in a vector: \(text)") }
        return bytes
    }
}

extension JSONValue {
    public var array: [JSONValue] { arrayValue ?? [] }
    public var text: String { stringValue ?? "" }
}

/// One state-resolution scenario of docs/vectors/state.json.
public struct StateVector: CustomStringConvertible, Sendable {
    public let name: String
    public let roomID: String
    public let events: [VerifiedEvent]
    /// `accepted` or `rejected`, one per event.
    public let verdicts: [String]
    /// The expected state: creator, name, topic, members, power_levels.
    public let expected: JSONValue
    /// Hashes of the events whose timeline items are redacted, when the scenario says (its `redacted`).
    public let redacted: Set<String>?
    public var description: String { name }

    public static func all() throws -> [StateVector] {
        try Vectors.load("state.json")["scenarios"]!.array.map { item in
            let events = try item["events"]!.array.map { try VerifiedEvent(parsing: Array($0.text.utf8)) }
            let redacted = try item["redacted"].map { try Set($0.array.map { try VerifiedEvent(parsing: Array($0.text.utf8)).hash }) }
            return StateVector(
                name: item["name"]!.text, roomID: events[0].event.roomID, events: events, verdicts: item["verdicts"]!.array.map(\.text),
                expected: item["state"]!, redacted: redacted)
        }
    }

    /// The timeline the reference replay gives: the accepted events resolved by §9.
    public func timeline() -> [TimelineItem] {
        let replay = RoomReplay(roomID: roomID, events: events)
        let accepted = events.filter { replay.verdicts[$0.hash] == .accepted }.map(\.event)
        return Timeline.resolve(
            items: accepted.filter { Timeline.itemTypes.contains($0.type) }, relations: accepted.filter { !Timeline.itemTypes.contains($0.type) },
            targets: replay.relations)
    }
}
