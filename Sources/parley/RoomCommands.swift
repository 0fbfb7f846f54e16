import ArgumentParser
import Foundation
import ParleyClient

struct Room: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, join and manage rooms.",
        subcommands: [
            RoomCreate.self, RoomInvite.self, RoomJoin.self, RoomLeave.self, RoomKick.self, RoomBan.self, RoomUnban.self,
            RoomPower.self, RoomName.self, RoomTopic.self, RoomInfo.self, RoomList.self, RoomForget.self, RoomRelay.self,
            RoomReadReceipts.self, RoomWhitening.self,
        ])
}

/// Prints the id of an event just published, or the event as JSON.
func report(_ event: VerifiedEvent, json: Bool) {
    if json {
        printJSON(["event_id": .string(event.event.eventID), "event_hash": .string(event.hash), "seq": .integer(event.event.seq)])
    } else {
        output(event.event.eventID)
    }
}

struct RoomCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a room: m.room.create, then this device joins.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The room id: a-z 0-9 . _ = - , up to 64 characters.") var roomID: String
    @Option(help: "The room's name.") var name: String?
    @Option(help: "The bucket the room lives in: file:///absolute/path or s3://BUCKET/PREFIX.") var bucket: String?
    @Option(help: "A relay the room lives at too (or only): https://HOST[:PORT]; log in there first (parley account login).") var relay: String?
    @Flag(name: .customLong("create-bucket"), help: "With a folder --bucket: create every missing folder of its path (without it, only the last).")
    var createBucket = false
    @Flag(help: "Encrypt the room end to end: messages are sealed with epoch keys only member devices receive.") var encrypted = false
    @Option(help: "With --encrypted: whether new members may read earlier messages (shared) or only from their join on (joined).")
    var history: HistoryVisibility = .shared
    @Flag(help: "Encrypt with one pre-shared key instead: a random secret that every invite code of the room carries.") var psk = false
    @Flag(help: "Encrypt with one pre-shared key derived from a passphrase (Argon2id) that members are told out of band.")
    var pskPassphrase = false
    @OptionGroup var secret: PassphraseOptions
    @Flag(help: "Print the created events as JSON.") var json = false

    func validate() throws {
        if [encrypted, psk, pskPassphrase].filter({ $0 }).count > 1 {
            throw ValidationError("Choose one of --encrypted, --psk and --psk-passphrase.")
        }
        if createBucket && !(bucket?.hasPrefix("file://") ?? false) {
            throw ValidationError("--create-bucket creates folder buckets (--bucket file:///absolute/path); create an S3 bucket with your provider's tools.")
        }
    }

    func run() async throws {
        let node = try global.node()
        var encryption: RoomEncryptionOption? = encrypted ? .epochs(history: history) : nil
        if psk { encryption = .preShared(secret: RoomEncryptionOption.randomPreSharedSecret(), fromPassphrase: false) }
        if pskPassphrase {
            let passphrase = try secret.passphrase(confirming: true)
            encryption = .preShared(
                secret: try failing { try RoomEncryptionOption.preSharedSecret(passphrase: passphrase, roomID: roomID) }, fromPassphrase: true)
        }
        let events = try await failingAsync {
            if let bucket {
                let events = try await bucketClient(node).createRoom(
                    roomID, bucket: try BucketURL(bucket), name: name, encryption: encryption, createBucket: createBucket)
                if let relay { _ = try await RelayClient(node: node).addRelay(roomID, relay: relay) }
                return events
            }
            if let relay { return try await RelayClient(node: node).createRoom(roomID, relay: relay, name: name, encryption: encryption) }
            return try node.createRoom(roomID, name: name, encryption: encryption)
        }
        if json {
            printJSON(.array(events.map { ["event_id": .string($0.event.eventID), "type": .string($0.event.type)] }))
        } else {
            output(
                "Created room \(roomID)"
                    + ([bucket, relay].compactMap { $0 }.isEmpty ? "" : " in " + [bucket, relay].compactMap { $0 }.joined(separator: " and ")))
        }
        noteCleartextState(node, roomID: roomID, "name", name)
    }
}

struct RoomInvite: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "invite", abstract: "Invite a user, binding their device key.",
        discussion: "In a bucket room the invite is flushed at once, and the invite code the user joins with is printed.")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Argument var userID: String
    // Unconditional: a key pasted in base64url may start with '-', and must reach the key check rather than read as an option.
    @Option(parsing: .unconditional, help: "The invited device's Ed25519 signing key (base64, from their `parley whoami`).") var key: String
    @Option(
        name: .customLong("peer"),
        help: ArgumentHelp(
            "Where the invited device reaches this node directly (HOST:PORT), listed in the code; repeatable. By default peers.listen when it names one address.",
            valueName: "HOST:PORT"))
    var peers: [String] = []
    @Flag var json = false

    func validate() throws {
        for peer in peers where !RoomLocation.isPeerAddress(peer) {
            throw ValidationError("--peer \(TerminalText.escape(peer)) is not HOST:PORT (192.168.1.20:7070, or [fd00::5]:7070).")
        }
    }

    /// The peers the code lists: those given, else this node's listening address when it is not a wildcard.
    func advertisedPeers() throws -> [String] {
        guard peers.isEmpty else { return peers }
        guard let listen = try global.configuration(flags: [:]).peersListen, !["0.0.0.0", "[::]"].contains(where: listen.hasPrefix) else { return [] }
        return [listen]
    }

    func run() async throws {
        let node = try global.node()
        let client = try failing { try bucketClient(node) }
        let advertised = try advertisedPeers()
        let (event, code) = try await failingAsync {
            let event = try node.invite(roomID, userID: userID, key: key)
            let code = try inviteCode(node, roomID, peers: advertised)
            if try client.inviteCode(roomID) != nil { _ = try await client.flush(roomID) }
            try await sendThroughRelay(node, roomID)
            return (event, code)
        }
        if json {
            var object = JSONObject(["event_id": .string(event.event.eventID), "event_hash": .string(event.hash), "seq": .integer(event.event.seq)])
            if let code { object["invite_code"] = .string(code.text) }
            printJSON(.object(object))
        } else {
            output(event.event.eventID)
            if let code { output("invite code: \(code.text)") }
        }
    }
}

struct RoomJoin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join", abstract: "Join a room: from an invite code (fetching it from its bucket), or one this node holds.",
        discussion: """
            An invite code may list several locations; this node uses the first bucket among them whose URL it can \
            use, else its relay, else its first peer (a node holding the room, reached over UDP; --peer names another), \
            and says so when there is none. With --bucket, it reaches \
            the room's bucket at URL instead of where the invite code says: a shared folder mounted at another path on \
            this machine, or an S3 endpoint reached another way. The code's creator fingerprint still decides which \
            room is accepted.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An invite code (parley-invite:…), or the id of a room this node holds.") var room: String
    @Option(help: "Where this node reaches the invite's bucket, if not where the code says: file:///absolute/path or s3://BUCKET/PREFIX.")
    var bucket: String?
    @Option(help: "Join through this relay (of the same deployment as the code's), logged in there: https://HOST[:PORT].") var relay: String?
    @Option(help: ArgumentHelp("Join through the peer at this address (a node that holds the room), not where the code says.", valueName: "HOST:PORT"))
    var peer: String?
    @Option(name: .customLong("peer-timeout"), help: "Seconds to wait for the peer's events when joining through a peer.") var peerTimeout = 15.0
    @OptionGroup var secret: PassphraseOptions
    @Flag var json = false

    func validate() throws {
        if (bucket != nil || relay != nil || peer != nil) && !InviteCode.looksLikeCode(room) {
            throw ValidationError(
                "--bucket, --relay and --peer go with an invite code (parley-invite:…); a room this node holds already has its locations.")
        }
        if [bucket, relay, peer].compactMap({ $0 }).count > 1 { throw ValidationError("Give one of --bucket, --relay and --peer.") }
        guard peerTimeout > 0 && peerTimeout <= 3_600 else { throw ValidationError("--peer-timeout must be above 0 and at most 3600 seconds.") }
        if let peer, !RoomLocation.isPeerAddress(peer) {
            throw ValidationError("--peer \(TerminalText.escape(peer)) is not HOST:PORT (192.168.1.20:7070, or [fd00::5]:7070).")
        }
    }

    func run() async throws {
        let node = try global.node()
        let code = InviteCode.looksLikeCode(room) ? try failing { try InviteCode(pasted: room) } : nil
        // Through a peer when told to, or when the code lists peers and neither a bucket this node can use nor a relay.
        if let code,
            peer != nil
                || (bucket == nil && relay == nil && (try? code.bucket()) == nil && !code.locations.contains { $0.kind == "relay" }
                    && code.locations.contains { $0.kind == "peer" })
        {
            let passphrase = code.needsPassphrase ? try secret.passphrase(confirming: false) : nil
            let event = try await failingAsync {
                try await node.joinThroughPeer(code, at: peer, passphrase: passphrase, timeoutMs: Int64(peerTimeout * 1000))
            }
            report(event, json: json)
            return
        }
        // A code whose buckets this node cannot use is joined through its relay, when it lists one.
        if let code, relay != nil || (bucket == nil && (try? code.bucket()) == nil && code.locations.contains { $0.kind == "relay" }) {
            let event = try await failingAsync { try await RelayClient(node: node).join(code, at: relay) }
            report(event, json: json)
            return
        }
        // Where to reach the room is settled before a passphrase is asked for, so a code this node cannot use says so first.
        let location = try code.map { code in try failing { try bucket.map { try BucketURL($0) } ?? code.bucket() } }
        let passphrase = code?.needsPassphrase == true ? try secret.passphrase(confirming: false) : nil
        let event = try await failingAsync {
            if let code {
                do {
                    return try await bucketClient(node).join(code, at: location, passphrase: passphrase)
                } catch var error as ClientError where bucket != nil && error.code == .unknownRoom {
                    error.remedy = "Check that --bucket names the folder or S3 location the room's creator shares."
                    throw error
                }
            }
            let event = try node.join(room)
            try await flushIfBucket(node, room)
            try await sendThroughRelay(node, room)
            return event
        }
        report(event, json: json)
    }
}

struct RoomLeave: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "leave", abstract: "Leave a room.")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Flag var json = false

    func run() throws {
        let node = try global.node()
        report(try failing { try node.leave(roomID) }, json: json)
    }
}

/// Kick, ban and unban: one member's membership changed by a moderator, with an optional reason.
protocol MembershipCommand: ParsableCommand {
    var global: GlobalOptions { get }
    var arguments: MembershipArguments { get }
    /// The membership the event sets.
    static var membership: Membership { get }
    /// Refuses a change that makes no sense before anything is signed.
    func check(_ state: RoomState) throws
}

struct RoomForget: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget", abstract: "Remove a room from this node: its events, state, keys, bucket record and outbox.",
        discussion: """
            Only this node forgets the room. Nothing is published: the other members still count this device as a \
            member, and events still in its outbox are never sent. To leave the room, run `parley room leave ROOM_ID` \
            (and `parley sync` for a bucket room) first. Asks for confirmation on a terminal; --yes skips the question.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Flag(help: "Forget without asking.") var yes = false

    func run() throws {
        let node = try global.node()
        // A sync running meanwhile would store the room's events again as it reads them.
        let lock = try failing { try node.home.lockForSyncing("room forget \(roomID)") }
        defer { withExtendedLifetime(lock) {} }
        let (known, unsent) = try failing {
            let known = try node.roomIDs().contains(roomID) || node.bucketRoom(roomID) != nil
            let unsent =
                try node.bucketRoom(roomID) == nil
                ? 0 : try node.outboxStatus(roomID).pending
            return (known, unsent)
        }
        guard known else {
            printError("error: This node holds no room \(roomID).")
            printError("`parley room list` shows the rooms it holds.")
            throw ExitCode(1)
        }
        if !yes {
            let what = "its events, keys and bucket record" + (unsent > 0 ? ", and \(unsent) event(s) of yours never sent" : "")
            guard isatty(STDIN_FILENO) == 1 else {
                printError("error: Forgetting room \(roomID) removes \(what) from this node.")
                printError("Give --yes to confirm.")
                throw ExitCode(1)
            }
            printError(
                "Forget room \(roomID)? This removes \(what) from this node, and publishes nothing: run `parley room leave \(roomID)` first to leave it. [y/N] ",
                newline: false)
            guard let answer = readLine()?.lowercased(), answer == "y" || answer == "yes" else {
                printError("Nothing was removed.")
                throw ExitCode(1)
            }
        }
        let removed = try failing { try node.forgetRoom(roomID) }
        output("Forgot room \(roomID): \(removed) event(s) removed from this node.")
    }
}

struct MembershipArguments: ParsableArguments {
    @Argument var roomID: String
    @Argument var userID: String
    @Option(help: "Why; recorded in the event.") var reason: String?
    @Flag(help: "Print the event id, hash and seq as JSON.") var json = false
}

extension MembershipCommand {
    func check(_ state: RoomState) throws {}

    func run() throws {
        let node = try global.node()
        let event = try failing {
            try check(node.roomState(arguments.roomID))
            return try node.setMembership(arguments.roomID, userID: arguments.userID, Self.membership, reason: arguments.reason)
        }
        report(event, json: arguments.json)
    }
}

struct RoomKick: MembershipCommand {
    static let configuration = CommandConfiguration(commandName: "kick", abstract: "Remove a member (needs the kick level and more power than them).")
    static let membership = Membership.leave
    @OptionGroup var global: GlobalOptions
    @OptionGroup var arguments: MembershipArguments
}

struct RoomBan: MembershipCommand {
    static let configuration = CommandConfiguration(commandName: "ban", abstract: "Ban a user (needs the ban level and more power than them).")
    static let membership = Membership.ban
    @OptionGroup var global: GlobalOptions
    @OptionGroup var arguments: MembershipArguments
}

struct RoomUnban: MembershipCommand {
    static let configuration = CommandConfiguration(commandName: "unban", abstract: "Lift a ban (needs the ban level).")
    static let membership = Membership.leave
    @OptionGroup var global: GlobalOptions
    @OptionGroup var arguments: MembershipArguments

    func check(_ state: RoomState) throws {
        guard state.membership(of: arguments.userID) == .ban else {
            throw ClientError(.invalidArgument, "\(arguments.userID) is not banned from \(arguments.roomID).")
        }
    }
}

struct RoomPower: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "power", abstract: "Set a user's power level (not above your own).")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Argument var userID: String
    @Argument var level: Int64
    @Flag var json = false

    func run() throws {
        let node = try global.node()
        report(try failing { try node.setPower(roomID, userID: userID, level: level) }, json: json)
    }
}

struct RoomName: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "name", abstract: "Set the room's name (empty to remove it).")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Argument var name: String
    @Flag var json = false

    func run() throws {
        let node = try global.node()
        report(
            try failing {
                _ = try node.roomState(roomID)
                return try node.setName(roomID, name)
            }, json: json)
        noteCleartextState(node, roomID: roomID, "name", name)
    }
}

/// State is never sealed: in an encrypted room, say so when the user gives it text of their own.
func noteCleartextState(_ node: Node, roomID: String, _ what: String, _ text: String?) {
    guard let text, !text.isEmpty, (try? node.roomState(roomID).encryption) != nil else { return }
    printError("note: room \(roomID) is encrypted, but its \(what) is not: anyone holding the room's events can read it.")
}

struct RoomTopic: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "topic", abstract: "Set the room's topic (empty to remove it).")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Argument var topic: String
    @Flag var json = false

    func run() throws {
        let node = try global.node()
        report(
            try failing {
                _ = try node.roomState(roomID)
                return try node.setTopic(roomID, topic)
            }, json: json)
        noteCleartextState(node, roomID: roomID, "topic", topic)
    }
}

struct RoomInfo: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Show the resolved state: name, topic, members, devices, power levels.")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Flag var json = false

    func run() throws {
        let node = try global.node()
        let (state, forks, collisions, heldBack) = try failing {
            (
                try node.roomState(roomID), try node.forkProofs(roomID), try node.eventIDCollisions(roomID),
                try node.heldBackCount(roomID)
            )
        }
        if json {
            printJSON(JSONOutput.state(state, forks: forks, collisions: collisions, heldBack: heldBack))
            return
        }
        output("room:    \(state.roomID)")
        if let name = state.name { output("name:    \(name)") }
        if let topic = state.topic { output("topic:   \(topic)") }
        if let creation = state.creation { output("creator: \(creation.creatorID)") }
        if let encryption = state.encryption {
            output("encrypted: yes (history: \(encryption.history.rawValue), \(state.roomKeys.count) epoch(s))")
        }
        output("members:")
        for member in state.members.values.sorted(by: { $0.userID < $1.userID }) {
            let level = state.powerLevels.level(of: member.userID)
            let devices = member.devices.keys.sorted().joined(separator: ", ")
            output("  \(member.userID)  \(member.membership.rawValue)  power \(level)\(devices.isEmpty ? "" : "  devices: \(devices)")")
        }
        if !forks.isEmpty {
            output("warning: \(forks.count) fork(s): a device signed conflicting events; its later events are refused (proofs in --json)")
        }
        if !collisions.isEmpty {
            output("warning: \(collisions.count) event id(s) carried by two different events: a device copied another's id; both are kept (pairs in --json)")
        }
        if heldBack > 0 { output("note: \(heldBack) event(s) held back waiting for missing earlier events") }
    }
}

struct RoomReadReceipts: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read-receipts",
        abstract: "Show, or turn on or off, this device's read receipts in a room.",
        discussion: """
            Off, this device sends no read receipt in the room (the UIs and `parley read` only move the unread count \
            here); delivered receipts still go, so others see that messages reached it, never that they were read.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @OptionGroup var choice: OnOffArgument

    func run() throws {
        let node = try global.node()
        try failing {
            if let on = choice.value { try node.setReadReceipts(roomID, enabled: on) }
            output("read receipts in \(roomID): \(try node.sendsReadReceipts(roomID) ? "on" : "off")")
        }
    }
}

/// A room setting's new value, `on` or `off`; none to show the setting.
struct OnOffArgument: ParsableArguments {
    @Argument(help: "on or off; omitted, the current setting is shown.") var setting: String?

    func validate() throws {
        guard setting == nil || setting == "on" || setting == "off" else { throw ValidationError("Say on or off; it was \(setting ?? "").") }
    }

    /// The value given, if any.
    var value: Bool? { setting.map { $0 == "on" } }
}

struct RoomWhitening: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "whitening",
        abstract: "Show, or turn on or off, whether this node shares files in a room whitened.",
        discussion: """
            On, each data block of a file this node shares in the room is stored as two: its sealed bytes XOR a random \
            block, and the random block (docs/PROTOCOL.md §16.7), so that no stored block is the sealed file's. It \
            stores and moves twice the bytes (docs/BENCHMARKS.md gives the cost). Every member reads whitened files, \
            whatever their own setting.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @OptionGroup var choice: OnOffArgument

    func run() throws {
        let node = try global.node()
        try failing {
            if let on = choice.value { try node.setWhitensFiles(roomID, on) }
            output("whitened files in \(roomID): \(try node.whitensFiles(roomID) ? "on" : "off")")
        }
    }
}

struct RoomList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the rooms this node holds.")
    @OptionGroup var global: GlobalOptions
    @Flag var json = false

    func run() throws {
        let node = try global.node()
        let rooms = try failing { try node.roomIDs() }
        if json {
            printJSON(
                .array(
                    try rooms.map { room in
                        let state = try failing { try node.roomState(room) }
                        return [
                            "room_id": .string(room), "name": state.name.map(JSONValue.string) ?? .null,
                            "joined": .bool(state.isJoinedDevice(user: node.identity.userID, key: node.identity.signingKeyBase64)),
                        ]
                    }))
        } else {
            for room in rooms { output(room) }
        }
    }
}

extension HistoryVisibility: ExpressibleByArgument {}
