import Foundation
import ParleyCore
import ParleyStore

/// Whose device a key typed into a command should belong to: decides where the message says the right key comes from.
public enum KeyOwner: Sendable, Equatable {
    /// A device of this user (other than this one), as `parley device list` shows them.
    case ownDevice
    /// A device of another user (or of this user, when linking by hand), whose `parley whoami` shows its key.
    case user(String)
}

extension Node {
    /// The shortest start of an event id's last part (its UUID) that ``resolveEventID(_:in:)`` takes.
    public static let minimumEventReference = 4
    /// How many of the events an ambiguous reference matches are listed.
    static let listedCandidates = 10

    /// The id of the one accepted event of `roomID` that `reference` names: a whole event id, the start of one
    /// (`ROOM::20251009T0853…`), or the start of its last part, the UUID (`c0520cea`, at least
    /// ``minimumEventReference`` characters), which is what a person copies from `parley log`.
    ///
    /// A whole, well-formed id of the room is returned as it is, held or not: the command that uses it says so.
    /// - Throws: ``ClientError``: `.unknownEvent` when no event matches, `.ambiguousEvent` when several do (its
    ///   `details` list them), `.invalidArgument` for a reference that cannot be the start of an id of this room.
    public func resolveEventID(_ reference: String, in roomID: String) throws -> String {
        try validateRoomID(roomID)
        if EventID.problem(with: reference, roomID: roomID) == nil { return reference }
        let uuidOnly = !reference.contains(":")
        let prefix = uuidOnly ? reference.lowercased() : reference
        let hint =
            "Give the whole event id, or the start of its last part (at least \(Node.minimumEventReference) characters), as `parley log \(roomID)` shows."
        if uuidOnly {
            guard prefix.utf8.count >= Node.minimumEventReference, prefix.utf8.count <= 36,
                prefix.utf8.allSatisfy({ Node.isHexDigit($0) || $0 == UInt8(ascii: "-") })
            else {
                throw ClientError(.invalidArgument, "\"\(TerminalText.shortened(reference))\" is not an event id, nor the start of one.", remedy: hint)
            }
        } else {
            guard prefix.hasPrefix(roomID + "::") else {
                throw ClientError(
                    .invalidArgument, "\"\(TerminalText.shortened(reference))\" is not an id of an event in room \(roomID), nor the start of one.", remedy: hint
                )
            }
        }
        let matches = try store.acceptedEventIDs(roomID: roomID, startingWith: prefix, uuidOnly: uuidOnly, limit: Node.listedCandidates + 1)
        switch matches.count {
        case 0:
            throw ClientError(
                .unknownEvent, "No event of room \(roomID) that this node holds has an id starting with \(reference).",
                remedy: "`parley log \(roomID)` shows the ids of its events.")
        case 1:
            return matches[0]
        default:
            let count = matches.count > Node.listedCandidates ? "more than \(Node.listedCandidates)" : "\(matches.count)"
            var candidates = try matches.prefix(Node.listedCandidates).map(candidateLine)
            if matches.count > Node.listedCandidates { candidates.append("…") }
            throw ClientError(
                .ambiguousEvent, "\(reference) is the start of \(count) event ids in room \(roomID):", details: candidates,
                remedy: "Give more of the id.")
        }
    }

    /// An event as an ambiguous reference lists it: its id, sender and what it is.
    func candidateLine(_ eventID: String) throws -> String {
        guard let stored = try store.event(eventID: eventID) else { return eventID }
        let sender = stored.event.event.senderID
        let item = try store.item(eventID: eventID)
        // Edits, reactions and receipts (sealed ones once opened) are no timeline items: named by their type.
        guard let item, Timeline.itemTypes.contains(item.type) else { return "\(eventID)  \(sender): \(item?.type ?? stored.event.event.type)" }
        if let summary = item.summary { return "\(eventID)  \(summary)" }
        if item.redacted { return "\(eventID)  \(sender): [deleted]" }
        guard let body = item.body else { return "\(eventID)  \(sender): [encrypted]" }
        return "\(eventID)  \(sender): \(TerminalText.shortened(body.prefix { !$0.isNewline }))"
    }

    /// Checks a device signing key that someone typed or pasted (standard base64 of 32 bytes, a usable Ed25519 key)
    /// and returns it without surrounding white space. When it is something else (hex, an exchange key, the wrong
    /// length, a code), the error says what it is and where the right key comes from.
    /// - Throws: ``ClientError`` `.invalidArgument`.
    public func checkSigningKey(_ text: String, of owner: KeyOwner) throws -> String {
        let key = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let shown = "\"\(TerminalText.shortened(key, limit: 24))\""
        let remedy: String
        switch owner {
        case .ownDevice: remedy = "`parley device list` shows the signing keys of your devices."
        case .user(let userID):
            remedy = "Ask \(userID) for the `signing key:` line of `parley whoami` on their device (`signing_key` in `parley whoami --json`)."
        }
        func refuse(_ message: String) -> ClientError { ClientError(.invalidArgument, message, remedy: remedy) }

        guard !key.isEmpty else { throw refuse("No key was given.") }
        for (prefix, what) in [(InviteCode.prefix, "an invite code"), (LinkRequest.prefix, "a device request"), (LinkCode.prefix, "a link code")]
        where key.hasPrefix(prefix) {
            throw refuse("The key \(shown) is \(what), not a device's signing key.")
        }
        if key.lowercased().hasPrefix("exchange key:") || key.lowercased().hasPrefix("exchange_key") {
            throw refuse("The key \(shown) is an exchange key: the signing key is needed.")
        }
        if key.contains(where: \.isWhitespace) {
            throw refuse("The key \(shown) has spaces in it: a signing key is 44 base64 characters ending in '=', and nothing else.")
        }
        if key.utf8.allSatisfy(Node.isHexDigit) {
            throw refuse("The key \(shown) is \(key.utf8.count) hex digits: Parley writes keys in base64, 44 characters ending in '='.")
        }
        if key.contains("-") || key.contains("_") {
            throw refuse("The key \(shown) is in base64url ('-' and '_'): Parley writes keys in standard base64 ('+' and '/'), 44 characters ending in '='.")
        }
        guard let bytes = Base64.decode(key) else {
            if key.utf8.count % 4 != 0, Base64.decode(key + String(repeating: "=", count: 4 - key.utf8.count % 4)) != nil {
                throw refuse("The key \(shown) lacks its final '=': a signing key is 44 base64 characters ending in '='.")
            }
            throw refuse("The key \(shown) is not base64: a signing key is 44 base64 characters ending in '='.")
        }
        guard bytes.count == 32 else {
            throw refuse(
                "The key \(shown) is \(key.utf8.count) characters, \(bytes.count) bytes: a signing key is 32 bytes, 44 base64 characters ending in '='.")
        }
        if let holder = try exchangeKeyHolder(key) {
            throw refuse(
                "The key \(shown) is the exchange key of \(holder): the signing key is needed, the `signing key:` line of `parley whoami`, not `exchange key:`."
            )
        }
        if key == identity.signingKeyBase64, owner != .user(identity.userID) {
            throw refuse("The key \(shown) is this device's own signing key.")
        }
        do { try StrictEd25519.checkPublicKey(bytes) } catch {
            throw refuse("The key \(shown) is not a usable signing key (\(error)); an exchange key looks the same: make sure it is the `signing key:` line.")
        }
        return key
    }

    static func isHexDigit(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"), UInt8(ascii: "A")...UInt8(ascii: "F"): true
        default: false
        }
    }

    /// Whose device `key` is the exchange key of, among this device and the devices that the rooms this node holds bind.
    func exchangeKeyHolder(_ key: String) throws -> String? {
        if key == identity.exchangeKeyBase64 { return "this device" }
        for roomID in try store.roomIDs() {
            guard let state = try store.roomState(roomID: roomID) else { continue }
            for member in state.members.values {
                for device in Array(member.devices.values) + Array(member.invitedDevices.values) where device.exchangeKey == key {
                    return "a device of \(member.userID)"
                }
            }
        }
        return nil
    }
}
