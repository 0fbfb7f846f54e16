import ArgumentParser
import ParleyClient

struct DirectMessages: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dm", abstract: "Direct messages: encrypted rooms of two.",
        subcommands: [DirectMessageStart.self, DirectMessageList.self], defaultSubcommand: DirectMessageStart.self)
}

struct DirectMessageStart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Open the direct message with a user, or start one with their device; prints the room id and, in a bucket, the invite code.",
        discussion: """
            A direct message with the user that this node holds is opened rather than a second one started (--new starts \
            another). A new one is encrypted with epoch keys, and the other person reads from their join on. \
            `parley dm USER` is short for this.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The user to write to.") var userID: String
    // Unconditional: a key pasted in base64url may start with '-', and must reach the key check rather than read as an option.
    @Option(parsing: .unconditional, help: "Their device's Ed25519 signing key (base64, from their `parley whoami`); needed to start one.") var key: String?
    @Option(help: "A bucket to keep a new conversation in: file:///absolute/path or s3://BUCKET/PREFIX.") var bucket: String?
    @Flag(help: "Start a new direct message even if there is one with this user.") var new = false
    @Flag(help: "Print room_id, user_id, invite_code and existing as JSON.") var json = false

    func run() async throws {
        let node = try global.node()
        let started = try await failingAsync {
            try await bucketClient(node).startDirectMessage(with: userID, key: key, bucket: try bucket.map { try BucketURL($0) }, new: new)
        }
        let (roomID, code, existing) = (started.roomID, started.inviteCode, started.existing)
        if existing {
            printError("note: you already have this direct message with \(userID); `parley dm \(userID) --new` starts another.")
        }
        if json {
            var object = JSONObject(["room_id": .string(roomID), "user_id": .string(userID), "existing": .bool(existing)])
            object["invite_code"] = code.map { .string($0.text) } ?? .null
            printJSON(.object(object))
        } else {
            output(roomID)
            if let code { output("invite code: \(code.text)") }
        }
    }
}

struct DirectMessageList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List direct messages, the most recent first, with the other person and the last message.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var time: TimeOptions
    @Flag(help: "Print room_id, user_id and last (a log item, or null) as JSON.") var json = false

    func run() throws {
        let node = try global.node()
        try failing {
            let conversations = try node.directMessages()
            if json {
                printJSON(
                    .array(
                        conversations.map { dm in
                            var object = JSONObject(["room_id": .string(dm.roomID)])
                            object["user_id"] = dm.peer.map(JSONValue.string) ?? .null
                            object["last"] = dm.last.map(JSONOutput.item) ?? .null
                            return .object(object)
                        }))
            } else {
                let text = TimelineText(node: node, time: time)
                for dm in conversations {
                    let last = try dm.last.map { try text.lines($0, firstLineOnly: true)[0] } ?? "no messages yet"
                    output("\(dm.roomID)  \(dm.peer ?? "(nobody else)")  \(last)")
                }
            }
        }
    }
}
