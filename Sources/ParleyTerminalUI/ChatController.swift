import Foundation
import ParleyClient

/// What the keys and the commands of the terminal UI do: changes to the model, and requests to the node through the
/// session.
struct ChatController {
    enum Outcome { case going, quit }

    let session: ChatSession?
    /// When this user last told the node it types, per room.
    private var typingSentAt: [String: Date] = [:]
    /// The newest event each room's read receipt covers (sent by this UI).
    private var readUpTo: [String: String] = [:]
    /// The oldest event a page was asked before, so that one scroll asks once.
    private var loadingBefore: Set<String> = []

    init(session: ChatSession?) { self.session = session }

    static let commands: [(name: String, usage: String, help: String)] = [
        ("help", "/help", "this list"),
        ("join", "/join CODE", "join a room with an invite code"),
        ("create", "/create ROOM [NAME]", "create a room on this node (bucket and relay rooms: `parley room create`)"),
        ("invite", "/invite USER KEY", "invite someone to this room (their `parley whoami` signing key); prints the code to give them"),
        ("leave", "/leave", "leave this room"),
        ("dm", "/dm USER [KEY]", "your direct messages with someone; a new one needs their signing key"),
        ("me", "/me TEXT", "an action: * you TEXT"),
        ("edit", "/edit TEXT", "replace the text of your selected (or last) message"),
        ("react", "/react KEY", "react to the selected (or last) message, e.g. /react 👍; again to take it back"),
        ("upload", "/upload PATH", "share a file (up to 4 GiB) in this room"),
        ("reply", "/reply [TEXT]", "reply to the selected (or last) message; without TEXT the next line is the reply"),
        ("redact", "/redact [REASON]", "delete the selected (or your last) message"),
        ("search", "/search WORDS", "find messages in every room"),
        ("members", "/members", "who is in this room"),
        ("rooms", "/rooms", "every room, with its id"),
        ("quit", "/quit", "leave the chat (also Ctrl-C, or Ctrl-D on an empty line)"),
    ]

    static let keysHelp = [
        "Keys: Enter sends · Tab completes a command or room · ↑/↓ history · PgUp/PgDn scroll (older pages load) · End: newest",
        "Ctrl-N/Ctrl-P next/previous room · Shift-↑/↓ or Alt-↑/↓ select a message · Esc clears the selection, a reply or this panel",
        "Ctrl-A/E start/end · Alt-B/F or Ctrl-←/→ word jumps · Ctrl-W/U/K delete word/to start/to end · Ctrl-L redraw",
    ]

    mutating func handle(_ key: Key, model: inout ChatModel) -> Outcome {
        if key != .resize { model.notice = nil }
        if !model.panel.isEmpty, key != .resize {
            model.panel = []
            if key == .escape || key == .enter { return .going }
        }
        switch key {
        case .text(let text):
            model.input.insert(text)
            typing(model: &model)
        case .paste(let text):
            model.input.insert(text)
            typing(model: &model)
        case .enter:
            return submit(model: &model)
        case .tab: complete(model: &model)
        case .backspace: model.input.deleteBackward()
        case .delete: model.input.deleteForward()
        case .escape:
            model.selectedEvent = nil
            model.replyingTo = nil
        case .left: model.input.moveLeft()
        case .right: model.input.moveRight()
        case .home: model.input.moveHome()
        case .end:
            if model.input.isEmpty { model.scroll = 0 } else { model.input.moveEnd() }
        case .up: model.input.historyBack()
        case .down: model.input.historyForward()
        case .wordLeft: model.input.moveWordLeft()
        case .wordRight: model.input.moveWordRight()
        case .pageUp: model.scroll += 10
        case .pageDown: model.scroll = max(0, model.scroll - 10)
        case .selectOlder: model.moveSelection(-1)
        case .selectNewer: model.moveSelection(1)
        case .resize: break
        case .control(let letter):
            switch letter {
            case "c": return .quit
            case "d": if model.input.isEmpty { return .quit } else { model.input.deleteForward() }
            case "a": model.input.moveHome()
            case "e": model.input.moveEnd()
            case "w": model.input.deleteWordBackward()
            case "u": model.input.deleteToStart()
            case "k": model.input.deleteToEnd()
            case "n": openRoom(offset: 1, model: &model)
            case "p": openRoom(offset: -1, model: &model)
            default: break
            }
        }
        return .going
    }

    /// After a batch of keys and messages: older pages when scrolled to the top, a read receipt when the newest is seen.
    mutating func afterChanges(model: inout ChatModel) {
        guard let room = model.selectedRoom, let items = model.items[room] else { return }
        if model.scroll > 0, !model.reachedStart.contains(room), let oldest = items.first?.eventID, !loadingBefore.contains(oldest) {
            // Loads ahead: scrolling back never waits at the top of what is loaded.
            loadingBefore.insert(oldest)
            session?.loadPage(room: room, before: oldest)
        }
        if model.scroll == 0, let newest = items.last(where: { $0.sender != model.me && $0.isMessage }), readUpTo[room] != newest.eventID {
            readUpTo[room] = newest.eventID
            if let index = model.rooms.firstIndex(where: { $0.id == room }) {
                model.rooms[index].unread = 0
                model.rooms[index].mentions = 0
            }
            let eventID = newest.eventID
            session?.perform { connection in
                _ = try await connection.post("/v1/rooms/\(NodeConnection.segment(room))/read", ["event_id": .string(eventID)])
                return { _ in }
            }
        }
    }

    private mutating func openRoom(offset: Int, model: inout ChatModel) {
        model.selectRoom(offset: offset)
        if let room = model.selectedRoom, model.items[room] == nil { session?.loadPage(room: room, before: nil) }
    }

    private mutating func typing(model: inout ChatModel) {
        guard let room = model.selectedRoom, !model.input.text.hasPrefix("/") else { return }
        if let last = typingSentAt[room], Date().timeIntervalSince(last) < 4 { return }
        typingSentAt[room] = Date()
        session?.perform { connection in
            _ = try await connection.post("/v1/rooms/\(NodeConnection.segment(room))/typing", ["typing": .bool(true)])
            return { _ in }
        }
    }

    private mutating func stoppedTyping(room: String) {
        guard typingSentAt.removeValue(forKey: room) != nil else { return }
        session?.perform { connection in
            _ = try await connection.post("/v1/rooms/\(NodeConnection.segment(room))/typing", ["typing": .bool(false)])
            return { _ in }
        }
    }

    private mutating func submit(model: inout ChatModel) -> Outcome {
        let line = model.input.take()
        guard !line.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return .going }
        if let room = model.selectedRoom { stoppedTyping(room: room) }
        guard line.hasPrefix("/"), !line.hasPrefix("//") else {
            send(line.hasPrefix("//") ? String(line.dropFirst()) : line, kind: "text", model: &model)
            return .going
        }
        let (name, argument) = Self.split(line)
        return run(command: name, argument, model: &model)
    }

    static func split(_ line: String) -> (String, String) {
        let body = line.dropFirst()
        guard let space = body.firstIndex(where: \.isWhitespace) else { return (String(body), "") }
        return (String(body[..<space]), String(body[space...]).trimmingCharacters(in: .whitespaces))
    }

    private mutating func send(_ text: String, kind: String, model: inout ChatModel) {
        guard let room = model.selectedRoom else { return model.say("No room is open: /create ROOM or /join CODE first.", error: true) }
        let body: JSONValue =
            model.replyingTo.map { ["text": .string(text), "msgtype": .string(kind), "reply_to": .string($0)] } ?? [
                "text": .string(text), "msgtype": .string(kind),
            ]
        model.replyingTo = nil
        model.selectedEvent = nil
        model.scroll = 0
        let line = kind == "emote" ? "/me " + text : text
        session?.perform(
            { connection in
                _ = try await connection.post("/v1/rooms/\(NodeConnection.segment(room))/messages", body)
                return { _ in }
            },
            // Nothing typed is lost: a line the node did not take comes back to the input, unless something new is there.
            failed: { model in if model.input.isEmpty { model.input.set(line) } })
    }

    private mutating func run(command: String, _ argument: String, model: inout ChatModel) -> Outcome {
        let room = model.selectedRoom
        let path = room.map { "/v1/rooms/\(NodeConnection.segment($0))" } ?? ""
        func needRoom() -> Bool {
            if room == nil { model.say("No room is open: /create ROOM or /join CODE first.", error: true) }
            return room != nil
        }
        func needArgument(_ usage: String) -> Bool {
            if argument.isEmpty { model.say("Usage: \(usage)", error: true) }
            return !argument.isEmpty
        }
        switch command {
        case "quit", "exit", "q": return .quit
        case "help", "h", "?":
            model.panel = ["Commands:"] + Self.commands.map { "  \($0.usage) — \($0.help)" } + [""] + Self.keysHelp
        case "me":
            if needArgument("/me TEXT") { send(argument, kind: "emote", model: &model) }
        case "join":
            guard needArgument("/join CODE") else { break }
            let code = argument
            model.say("Joining…")
            session?.perform { connection in
                let joined = try await connection.post("/v1/join", ["code": .string(code)])
                let roomID = joined["room_id"]?.stringValue
                return { model in
                    model.say("Joined \(roomID ?? "the room").")
                    if let roomID { model.rooms.insert(ChatRoom(json: ["room_id": .string(roomID)]), at: 0) }
                    if let roomID { model.select(room: roomID) }
                }
            }
            session?.reloadRooms()
        case "create":
            guard needArgument("/create ROOM [NAME]") else { break }
            let (id, name) = Self.split("/" + argument)
            let body: JSONValue = name.isEmpty ? ["room_id": .string(id)] : ["room_id": .string(id), "name": .string(name)]
            session?.perform { connection in
                let created = try await connection.post("/v1/rooms", body)
                return { model in
                    model.rooms.insert(ChatRoom(json: created), at: 0)
                    model.select(room: id)
                    model.items[id] = []
                    model.say("Created \(id).")
                }
            }
            session?.reloadRooms()
        case "invite":
            guard needRoom(), needArgument("/invite USER KEY") else { break }
            let (user, key) = Self.split("/" + argument)
            guard !key.isEmpty else {
                model.say("Usage: /invite USER KEY (the key is their `parley whoami` signing key).", error: true)
                break
            }
            session?.perform { connection in
                let invited = try await connection.post(path + "/invite", ["user_id": .string(user), "signing_key": .string(key)])
                return { model in
                    if let code = invited["invite_code"]?.stringValue {
                        model.panel = ["Invited \(user). Give them this code (they run /join CODE or `parley room join CODE`):", "", code]
                    } else {
                        model.say("Invited \(user). This room has no bucket or relay, so there is no code: pass them the room's events.")
                    }
                }
            }
        case "edit":
            guard needRoom(), needArgument("/edit TEXT") else { break }
            guard let target = model.target(own: true), target.sender == model.me else {
                model.say("Select one of your messages first (Shift-↑), or send one.", error: true)
                break
            }
            let text = argument
            session?.perform { connection in
                _ = try await connection.post(path + "/events/\(NodeConnection.segment(target.eventID))/edit", ["text": .string(text)])
                return { model in model.selectedEvent = nil }
            }
        case "react":
            guard needRoom(), needArgument("/react KEY") else { break }
            guard let target = model.target(own: false) else {
                model.say("There is no message to react to.", error: true)
                break
            }
            let key = argument
            let taking = target.reactions.contains { $0.key == key && $0.users.contains(model.me) }
            session?.perform { connection in
                let events = path + "/events/\(NodeConnection.segment(target.eventID))"
                _ = try await connection.post(events + (taking ? "/reactions/remove" : "/reactions"), ["key": .string(key)])
                return { model in
                    model.selectedEvent = nil
                    if taking { model.say("Reaction \(key) taken back.") }
                }
            }
        case "upload":
            guard needRoom(), needArgument("/upload PATH") else { break }
            let file = argument.hasPrefix("~/") ? NSHomeDirectory() + argument.dropFirst() : argument
            let name = (file as NSString).lastPathComponent
            model.say("Uploading \(name)…")
            let session = session
            session?.perform { connection in
                _ = try await connection.upload(path + "/files?name=\(NodeConnection.query(name))", file: file) { sent, total in
                    // The node seals the file once it has it all: the last step shows as that.
                    let note =
                        sent < total
                        ? "Uploading \(name): \(sent * 100 / max(total, 1))% of \(TerminalText.byteCount(total))…"
                        : "Uploaded \(name) (\(TerminalText.byteCount(total))); the node is sealing it…"
                    session?.post { model, _ in model.say(note) }
                }
                return { model in model.say("Shared \(name).") }
            }
        case "reply":
            guard needRoom() else { break }
            guard let target = model.target(own: false) else {
                model.say("There is no message to reply to.", error: true)
                break
            }
            model.replyingTo = target.eventID
            if !argument.isEmpty { send(argument, kind: "text", model: &model) }
        case "redact", "delete":
            guard needRoom() else { break }
            guard let target = model.target(own: model.selectedEvent == nil) else {
                model.say("There is no message to delete.", error: true)
                break
            }
            let body: JSONValue = argument.isEmpty ? [:] : ["reason": .string(argument)]
            session?.perform { connection in
                _ = try await connection.post(path + "/events/\(NodeConnection.segment(target.eventID))/redact", body)
                return { model in model.selectedEvent = nil }
            }
        case "search":
            guard needArgument("/search WORDS") else { break }
            let words = argument
            session?.perform { connection in
                let found = try await connection.get("/v1/search?q=\(NodeConnection.query(words))&limit=20").arrayValue ?? []
                return { model in
                    model.panel =
                        ["Search: \(words) — \(found.count) found\(found.count == 20 ? " (the first 20)" : "")"]
                        + found.map { hit in
                            "  #\(hit["room_id"]?.stringValue ?? "?")  \(hit["sender_id"]?.stringValue ?? "?"): \(hit["body"]?.stringValue ?? "")"
                        }
                }
            }
        case "members":
            guard needRoom() else { break }
            session?.perform { connection in
                let state = try await connection.get(path)
                let members = (state["members"]?.arrayValue ?? []).compactMap { $0["user_id"]?.stringValue ?? $0.stringValue }
                return { model in model.panel = ["Members of \(room ?? ""): \(members.count)"] + members.map { "  " + $0 } }
            }
        case "rooms":
            model.panel = ["Rooms (Ctrl-N/Ctrl-P to move between them):"] + model.rooms.map { "  \($0.title)  (\($0.id))\($0.encrypted ? " 🔒" : "")" }
        case "leave":
            guard needRoom() else { break }
            session?.perform { connection in
                _ = try await connection.post(path + "/leave", [:])
                return { model in model.say("You left \(room ?? "the room").") }
            }
            session?.reloadRooms()
        case "dm":
            guard needArgument("/dm USER [KEY]") else { break }
            let (user, key) = Self.split("/" + argument)
            let body: JSONValue = key.isEmpty ? ["user_id": .string(user)] : ["user_id": .string(user), "signing_key": .string(key)]
            session?.perform { connection in
                let started = try await connection.post("/v1/dms", body)
                let roomID = started["room_id"]?.stringValue ?? ""
                return { model in
                    if !model.rooms.contains(where: { $0.id == roomID }) {
                        model.rooms.insert(ChatRoom(json: ["room_id": .string(roomID), "direct_peer": .string(user)]), at: 0)
                    }
                    model.select(room: roomID)
                    model.say(started["existing"]?.boolValue == true ? "Your direct message with \(user)." : "A new direct message with \(user).")
                }
            }
            session?.reloadRooms()
        default:
            model.say("No command /\(command): /help lists them. (Start a message with // to send a line that begins with /.)", error: true)
        }
        return .going
    }

    /// Completes the command, or the room id after /join-less commands, under the cursor.
    private func complete(model: inout ChatModel) {
        let text = model.input.text
        guard text.hasPrefix("/"), !text.contains(" ") else { return }
        let prefix = String(text.dropFirst())
        let matches = Self.commands.map(\.name).filter { $0.hasPrefix(prefix) }
        if matches.count == 1 {
            model.input.set("/" + matches[0] + " ")
        } else if !matches.isEmpty {
            model.say(matches.map { "/" + $0 }.joined(separator: " "))
        }
    }

    /// What the node's stream says, applied to the model.
    static func apply(stream message: JSONValue, to model: inout ChatModel, session: ChatSession?) {
        let room = message["room_id"]?.stringValue ?? ""
        switch message["type"]?.stringValue {
        case "item:new", "item:changed":
            guard let item = message["item"] else { return }
            if !model.rooms.contains(where: { $0.id == room }) { session?.reloadRooms() }
            model.apply(item: ChatItem(json: item), room: room, isNew: message["type"]?.stringValue == "item:new")
        case "room:changed":
            session?.reloadRooms()
        case "typing":
            guard let user = message["user_id"]?.stringValue else { return }
            model.typing[room, default: [:]][user] = message["typing"]?.boolValue == true ? Date().addingTimeInterval(6) : nil
        case "message:sent":
            for id in message["event_ids"]?.arrayValue?.compactMap(\.stringValue) ?? [] {
                model.sent.insert(id)
                model.failed[id] = nil
            }
        case "message:delivered", "message:acknowledged":
            let state = message["type"]?.stringValue == "message:acknowledged" ? "read" : "delivered"
            for id in message["event_ids"]?.arrayValue?.compactMap(\.stringValue) ?? [] where model.receipts[id] != "read" {
                model.receipts[id] = state
                model.sent.insert(id)
            }
        case "message:failed":
            let reason = message["reason"]?.stringValue ?? "a transport refused it"
            for id in message["event_ids"]?.arrayValue?.compactMap(\.stringValue) ?? [] { model.failed[id] = reason }
            model.say("Not sent yet: \(reason) (retried)", error: true)
        case "sync:failed":
            model.say("Sync of \(room) failed: \(message["reason"]?.stringValue ?? "?") (retried)", error: true)
        default: break
        }
    }
}
