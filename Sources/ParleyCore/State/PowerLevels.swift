/// The content of `m.room.power_levels` and the rules it sets (docs/PROTOCOL.md §8.3).
public struct PowerLevels: Sendable, Equatable {
    public static let maxLevel: Int64 = 1_000_000
    public static let creatorLevel: Int64 = 100

    public var users: [String: Int64]
    public var usersDefault: Int64 = 0
    /// Level needed to send an event of a given type; overrides the defaults below.
    public var events: [String: Int64] = [:]
    public var eventsDefault: Int64 = 0
    public var stateDefault: Int64 = 50
    public var invite: Int64 = 0
    public var kick: Int64 = 50
    public var ban: Int64 = 50
    /// Level needed to redact another user's event.
    public var redact: Int64 = 50

    /// The levels in force before any `m.room.power_levels` event: the creator at 100, everyone else at 0.
    public static func initial(creator: String) -> PowerLevels {
        PowerLevels(users: [creator: creatorLevel])
    }

    public init(users: [String: Int64]) {
        self.users = users
    }

    static let thresholdNames = ["users_default", "events_default", "state_default", "invite", "kick", "ban", "redact"]

    var thresholds: [String: Int64] {
        [
            "users_default": usersDefault, "events_default": eventsDefault, "state_default": stateDefault,
            "invite": invite, "kick": kick, "ban": ban, "redact": redact,
        ]
    }

    public init(content: JSONObject) throws(ContentError) {
        users = [:]
        func level(_ value: JSONValue, _ name: String) throws(ContentError) -> Int64 {
            guard case .integer(let number) = value, number >= 0, number <= PowerLevels.maxLevel else {
                throw ContentError("m.room.power_levels: \(name) must be an integer from 0 to \(PowerLevels.maxLevel)")
            }
            return number
        }
        for member in content.members {
            switch member.key {
            case "users", "events":
                guard case .object(let map) = member.value else {
                    throw ContentError("m.room.power_levels: \(member.key) must be an object")
                }
                guard map.count <= 10_000 else { throw ContentError("m.room.power_levels: \(member.key) has too many entries") }
                var levels: [String: Int64] = [:]
                for entry in map.members {
                    if member.key == "users", let problem = Identifier.problem(with: entry.key, kind: .user) {
                        throw ContentError("m.room.power_levels: \(problem)")
                    }
                    if member.key == "events", let problem = EventTypeName.problem(with: entry.key) {
                        throw ContentError("m.room.power_levels: \(problem)")
                    }
                    levels[entry.key] = try level(entry.value, "\(member.key).\(entry.key)")
                }
                if member.key == "users" { users = levels } else { events = levels }
            case "users_default": usersDefault = try level(member.value, member.key)
            case "events_default": eventsDefault = try level(member.value, member.key)
            case "state_default": stateDefault = try level(member.value, member.key)
            case "invite": invite = try level(member.value, member.key)
            case "kick": kick = try level(member.value, member.key)
            case "ban": ban = try level(member.value, member.key)
            case "redact": redact = try level(member.value, member.key)
            default: throw ContentError("m.room.power_levels: unknown field \"\(Identifier.printable(member.key))\"")
            }
        }
    }

    /// The content that represents these levels, every field spelled out.
    public var jsonObject: JSONObject {
        var object = JSONObject()
        var usersObject = JSONObject()
        for (user, level) in users { usersObject[user] = .integer(level) }
        var eventsObject = JSONObject()
        for (type, level) in events { eventsObject[type] = .integer(level) }
        object["users"] = .object(usersObject)
        object["events"] = .object(eventsObject)
        for (name, value) in thresholds { object[name] = .integer(value) }
        return object
    }

    public func level(of user: String) -> Int64 { users[user] ?? usersDefault }

    /// Level needed to send an event of `type` (member events follow membership rules instead).
    public func required(for type: String) -> Int64 {
        events[type] ?? (EventType.isState(type) ? stateDefault : eventsDefault)
    }

    /// Why `sender` may not replace these levels with `proposed`, or `nil` if it may.
    ///
    /// Nobody can grant a level above their own, nor change the level of someone at or above their own (except
    /// lowering their own), nor move a threshold that is, or would be, above their own level.
    public func problemReplacing(with proposed: PowerLevels, by sender: String) -> String? {
        let own = level(of: sender)
        let needed = required(for: EventType.powerLevels)
        if own < needed { return "changing power levels needs level \(needed); \(sender) has \(own)" }
        for user in Set(users.keys).union(proposed.users.keys) {
            let before = level(of: user)
            let after = proposed.level(of: user)
            guard before != after else { continue }
            if after > own { return "cannot set \(user) to level \(after), above the sender's own \(own)" }
            if user != sender && before >= own { return "cannot change the level of \(user) (\(before)), not below the sender's own \(own)" }
        }
        let before = thresholds
        let after = proposed.thresholds
        for name in PowerLevels.thresholdNames where before[name] != after[name] {
            if before[name]! > own || after[name]! > own { return "cannot change \(name) beyond the sender's own level \(own)" }
        }
        // users_default is the level of everyone not listed: moving it from or to the sender's own level would
        // change the level of unlisted peers.
        if usersDefault != proposed.usersDefault && (usersDefault >= own || proposed.usersDefault >= own) {
            return "cannot change users_default from or to a level not below the sender's own \(own)"
        }
        // Compare the levels in force, so an entry added or removed counts with the default it replaces.
        for type in Set(events.keys).union(proposed.events.keys) {
            let was = required(for: type)
            let will = proposed.required(for: type)
            if was != will && (was > own || will > own) {
                return "cannot change the level of \(type) beyond the sender's own level \(own)"
            }
        }
        return nil
    }
}
