import ArgumentParser
import ParleyBucket
import ParleyClient
import ParleyCore

struct DirectMessages: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dm", abstract: "Direct messages: encrypted rooms of two.",
        subcommands: [DirectMessageStart.self, DirectMessageList.self], defaultSubcommand: DirectMessageStart.self)
}

struct DirectMessageStart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start", abstract: "Start a direct message with a user's device; prints the room id and, in a bucket, the invite code.",
        discussion: "The room is encrypted with epoch keys, and the other person reads from their join on. `parley dm USER --key KEY` is short for this.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The user to write to.") var userID: String
    @Option(help: "Their device's Ed25519 signing key (base64, from their `parley whoami`).") var key: String
    @Option(help: "A bucket to keep the conversation in: file:///absolute/path or s3://BUCKET/PREFIX.") var bucket: String?
    @Flag var json = false

    func run() async throws {
        let node = try global.node()
        let (roomID, code) = try await failingAsync { () async throws -> (String, InviteCode?) in
            guard let bucket else { return (try node.startDirectMessage(with: userID, key: key), nil) }
            let client = try bucketClient(node)
            let roomID = Node.newDirectMessageRoomID()
            _ = try await client.createRoom(roomID, bucket: try BucketURL(bucket), encryption: Node.directMessageEncryption)
            _ = try node.startDirectMessage(with: userID, key: key, roomID: roomID)
            _ = try await client.flush(roomID)
            return (roomID, try client.inviteCode(roomID))
        }
        if json {
            var object = JSONObject(["room_id": .string(roomID), "user_id": .string(userID)])
            object["invite_code"] = code.map { .string($0.text) } ?? .null
            printJSON(.object(object))
        } else {
            print(roomID)
            if let code { print("invite code: \(code.text)") }
        }
    }
}

struct DirectMessageList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List direct messages, the most recent first.")
    @OptionGroup var global: GlobalOptions
    @Flag var json = false

    func run() throws {
        let node = try global.node()
        let conversations = try failing { try node.directMessages() }
        if json {
            printJSON(.array(conversations.map { dm in
                var object = JSONObject(["room_id": .string(dm.roomID)])
                object["user_id"] = dm.peer.map(JSONValue.string) ?? .null
                object["last"] = dm.last.map(JSONOutput.item) ?? .null
                return .object(object)
            }))
        } else {
            for dm in conversations {
                print("\(dm.roomID)  \(dm.peer ?? "(nobody else)")" + (dm.last.map { "  \(describe($0))" } ?? ""))
            }
        }
    }
}
