import ArgumentParser
import CProcessTuning
import Foundation
import ParleyClient
import Synchronization

@main
struct Parley: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley",
        abstract: "Secure, decentralized chat: every message a signed, hash-chained event.",
        discussion: """
            The node lives in --home DIR, else $PARLEY_HOME, else ~/.parley. --home may stand anywhere on the command line. \
            Settings come from flags, then PARLEY_* environment variables, then the home's config.toml (`parley config show`).
            """,
        version: ParleyVersion.description,
        subcommands: [
            Init.self, WhoAmI.self, Status.self, Room.self, Send.self, Forward.self, Download.self, Edit.self, React.self, Redact.self, Read.self, Log.self,
            Events.self, Import.self, Verify.self, Receipts.self, Search.self, Query.self, Rejected.self, Sync.self, NodeCommand.self, Bucket.self,
            DirectMessages.self, Backup.self, Device.self, Account.self, Serve.self, RelayCommand.self, PeerCommand.self, SimCommand.self, Web.self, Chat.self,
            ConfigCommand.self,
        ])

    /// Declared here as well as in every command that uses it: the root command parses `--home` wherever it stands
    /// (before, between or after subcommand names), and each command's group takes the value parsed here.
    @OptionGroup var global: GlobalOptions

    static func main() {
        // A parent may have started us with termination signals blocked (they are inherited); a command that runs
        // until stopped must stop when told to.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
        // Files move as blocks of up to 16 MiB, each a few buffers allocated and freed in turn. By default glibc hands
        // every such buffer back once freed and faults the next one in page by page: sealing a GiB cost 2 s more.
        _ = parley_keep_freed_buffers()
        let arguments = Array(CommandLine.arguments.dropFirst())
        do {
            if let unknown = unknownSubcommand(in: arguments) { throw unknown }
            var command = try parseAsRoot(arguments)
            // Parsing accepted it, so `--json` (before any `--`) is this command's flag.
            errorsAsJSON.withLock { $0 = arguments.prefix { $0 != "--" }.contains("--json") }
            if let asynchronous = command as? AsyncParsableCommand {
                try runBlocking(asynchronous)
            } else {
                try command.run()
            }
        } catch {
            // A command's own failure is told with its code. Argument parsing words its own errors (usage errors, and
            // help, which it throws from the command it stands in for); their types are internal to it but for a few.
            if !String(reflecting: type(of: error)).hasPrefix("ArgumentParser.") { Foundation.exit(reportError(error).rawValue) }
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                print(message)
            } else if !message.isEmpty {
                // Usage errors quote what was typed: escaped like everything else that reaches the terminal, and
                // begun like every other error of ours.
                let text = message.hasPrefix("Error: ") ? "error: " + message.dropFirst("Error: ".count) : message
                for line in text.split(separator: "\n", omittingEmptySubsequences: false) { printError(String(line)) }
            }
            Foundation.exit(code.rawValue)
        }
    }

    /// Runs an async command on the concurrency pool while the main thread waits. (An `async` main would park the
    /// main thread with `pthread_exit`, whose unwinding reads the executable's whole unwind table: ~8 MB of memory
    /// in the static build.)
    static func runBlocking(_ command: AsyncParsableCommand) throws {
        final class Outcome: @unchecked Sendable {
            var command: AsyncParsableCommand
            var error: Error?
            init(_ command: AsyncParsableCommand) { self.command = command }
        }
        let outcome = Outcome(command)
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            do { try await outcome.command.run() } catch { outcome.error = error }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw error }
    }

    /// A subcommand name that is none of its group's, as a usage error naming the closest ones. Argument parsing
    /// alone would call it an unexpected argument, or blame an option that stands before it.
    static func unknownSubcommand(in arguments: [String]) -> ValidationError? {
        var command: ParsableCommand.Type = Parley.self
        var path = ["parley"]
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if argument == "--" { return nil }
            if argument == "--home" {
                index += 1
                continue
            }
            // Another option of the group (`--help`, `--version`, `--home=DIR`): parsing judges it.
            if argument.hasPrefix("-") { continue }
            let configuration = command.configuration
            guard !configuration.subcommands.isEmpty, configuration.defaultSubcommand == nil, argument != "help" else { return nil }
            var names: [String] = []
            var next: ParsableCommand.Type?
            for subcommand in configuration.subcommands {
                let name = subcommand._commandName
                names.append(name)
                if name == argument || subcommand.configuration.aliases.contains(argument) { next = subcommand }
            }
            guard let next else {
                let near = names.filter { NearNames.isNear(argument, $0) }
                let advice =
                    near.isEmpty ? "The commands are: \(names.joined(separator: ", "))." : "Did you mean \(near.map { "'\($0)'" }.joined(separator: " or "))?"
                return ValidationError(
                    "Unknown command '\(argument)' for '\(path.joined(separator: " "))'. \(advice) See '\(path.joined(separator: " ")) --help'.")
            }
            command = next
            path.append(argument)
        }
        return nil
    }
}

struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "The node's directory (default: $PARLEY_HOME, else ~/.parley).")
    var home: String?

    var parleyHome: ParleyHome { Configuration.home(flag: home).home }

    /// This command's settings: its flags, then `PARLEY_*` variables, then the home's config.toml, then defaults.
    func configuration(flags: [Setting: SettingValue] = [:]) throws -> Configuration {
        try failing { try Configuration.resolve(home: parleyHome, flags: flags) }
    }

    func node() throws -> Node {
        // Every command that opens the node reads config.toml, so a mistake there is told at once, not only by the
        // command whose setting it breaks.
        _ = try configuration()
        openedHome.withLock { $0 = parleyHome }
        return try failing { try Node(home: parleyHome) }
    }
}

/// The home whose store this process opened: an error that turns out to be the store's damage is told with what to do.
let openedHome = Mutex<ParleyHome?>(nil)

/// Whether the command was given `--json`: its error is then one JSON document on standard output as well.
let errorsAsJSON = Mutex(false)

/// Runs `body`, turning an error into its message on standard error and exit status 1.
func failing<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch {
        throw reportError(error)
    }
}

/// ``failing(_:)`` for work that waits on a bucket; on a terminal, a slow bucket is told about as it happens.
func failingAsync<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await withBucketNotes(body)
    } catch {
        throw reportError(error)
    }
}

/// Prints an error for the user on standard error (message, details, what to do) and, when the command was given
/// `--json`, as `{"error": {"code", …}}` on standard output; gives the exit status 1. The error keeps the code it
/// had in the store or the bucket (``ClientError/init(describing:home:)``). An ``ExitCode`` is only passed on.
func reportError(_ error: Error) -> ExitCode {
    if let error = error as? ExitCode { return error }
    let error = ClientError(describing: error, home: openedHome.withLock { $0 })
    printError("error: \(error.message)")
    for detail in error.details { printError("  \(detail)") }
    if let remedy = error.remedy { printError(remedy) }
    if errorsAsJSON.withLock({ $0 }) { printJSON(JSONOutput.error(error)) }
    return ExitCode(1)
}

/// Prints one line for a person on standard output. The whole line is escaped (``TerminalText``): names, ids, text
/// and errors from outside reach the terminal as visible escapes, never as control characters, so nothing in them
/// can start a line that looks like ours, restyle the terminal or reorder the text. Only `--json` output, whose own
/// escaping keeps text exact, and `parley events`, which prints data, bypass it.
func output(_ line: String) {
    print(TerminalText.escape(line))
}

/// ``output(_:)`` for standard error; without `newline`, the line is left open (a note a later write may extend).
func printError(_ line: String, newline: Bool = true) {
    FileHandle.standardError.write(Data((TerminalText.escape(line) + (newline ? "\n" : "")).utf8))
}

func printJSON(_ value: JSONValue) {
    print(CanonicalJSON.string(value))
}

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create this device's identity (Ed25519 signing key and X25519 key), or, on a new device of yours, join your rooms with a link code.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "The user id this device speaks for: a-z 0-9 . _ = - , up to 64 characters.") var user: String?
    @Option(
        help:
            "A link code from `parley device link` on your other device (after `parley init --user` and `parley device request` here): this device joins your bucket rooms as you."
    )
    var link: String?
    @Flag(help: "Print the identity as JSON.") var json = false

    func validate() throws {
        guard (user == nil) != (link == nil) else { throw ValidationError("Give either --user USER_ID or --link CODE.") }
    }

    func run() async throws {
        var joined: [String] = []
        var unusable: [ClientError] = []
        let identity: Identity
        if let link {
            let node = try failing {
                guard FileManager.default.fileExists(atPath: global.parleyHome.secretKeyPath) else {
                    throw ClientError(
                        .notInitialized, "No identity in \(global.parleyHome.path) to link.",
                        remedy:
                            "Run `parley init --user USER_ID` and `parley device request` here first, then `parley device link REQUEST` on your other device.")
                }
                let node = try Node(home: global.parleyHome)
                unusable = try node.acceptLink(try LinkCode(opening: link, identity: node.identity, nowMs: Node.systemClock()))
                return node
            }
            identity = node.identity
            joined = try await failingAsync { try await bucketClient(node).joinLinkedRooms() }
            for problem in unusable {
                printError("note: \(problem.message)")
                for detail in problem.details { printError("  \(detail)") }
                printError(["It was not joined.", problem.remedy].compactMap { $0 }.joined(separator: " "))
            }
        } else {
            identity = try failing { try Identity.create(userID: user ?? "", home: global.parleyHome) }
        }
        if json {
            var object = identity.publicJSON.objectValue ?? JSONObject()
            if link != nil { object["joined_rooms"] = .array(joined.map(JSONValue.string)) }
            printJSON(.object(object))
        } else if link != nil {
            output("joined: \(joined.isEmpty ? "no bucket rooms" : joined.joined(separator: ", "))")
        } else {
            output("Created identity \(identity.userID) in \(global.parleyHome.path)")
            output("signing key:  \(identity.signingKeyBase64)")
            output("exchange key: \(identity.exchangeKeyBase64)")
        }
    }
}

struct WhoAmI: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "whoami", abstract: "Show this device's user id and public keys.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print as JSON.") var json = false

    func run() throws {
        let identity = try failing { try Identity.load(home: global.parleyHome) }
        if json {
            printJSON(identity.publicJSON)
        } else {
            output("user id:      \(identity.userID)")
            output("signing key:  \(identity.signingKeyBase64)")
            output("exchange key: \(identity.exchangeKeyBase64)")
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the node (identity, store, rooms); or, given a message, where it stands with each recipient device.",
        discussion: """
            parley status EVENT_ID (or ROOM SHORT_ID, as `parley log` shows it) lists every other device of the room: \
            PENDING (stored here only), FAILED (a transport failed to take it three times in a row; still tried), \
            IN_TRANSIT (a bucket or relay holds it), DELIVERED or READ (the device's signed receipt says so), with times.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "A message's id; or the room, then the start of the id's last part.") var references: [String] = []
    @OptionGroup var time: TimeOptions
    @Flag(help: "Print as JSON.") var json = false

    func validate() throws {
        guard references.count <= 2 else { throw ValidationError("Give the message's whole id, or ROOM and the start of the id.") }
    }

    func run() throws {
        let node = try global.node()
        if !references.isEmpty { return try showDelivery(node) }
        let rooms = try failing { try node.roomIDs() }
        let buckets = try failing {
            try node.bucketRooms().map { room in
                (
                    room, try node.outboxStatus(room.roomID),
                    try node.bucketFileProblems(room.roomID, limit: 1000).count
                )
            }
        }
        if json {
            printJSON([
                "home": .string(node.home.path), "identity": node.identity.publicJSON, "store": .string(node.home.storePath),
                "rooms": .array(rooms.map(JSONValue.string)),
                "bucket_rooms": .array(
                    buckets.map { room, outbox, faulty in
                        [
                            "room_id": .string(room.roomID), "bucket": .string(room.bucketURL), "pending": .integer(Int64(outbox.pending)),
                            "in_transit": .integer(Int64(outbox.inTransit)), "faulty_files": .integer(Int64(faulty)),
                        ]
                    }),
            ])
            return
        }
        output("Parley node in \(node.home.path)")
        output("user id:     \(node.identity.userID)")
        output("signing key: \(node.identity.signingKeyBase64)")
        output("store:       \(node.home.storePath)")
        output("rooms:       \(rooms.isEmpty ? "none yet (parley room create ROOM_ID)" : rooms.joined(separator: ", "))")
        for (room, outbox, faulty) in buckets {
            output(
                "bucket room \(room.roomID) in \(room.bucketURL): \(outbox.pending) pending, \(outbox.inTransit) in transit\(faulty > 0 ? ", \(faulty) faulty file(s) seen" : "")"
            )
        }
    }

    func showDelivery(_ node: Node) throws {
        let (roomID, eventID) = try failing { try resolveMessageReference(references, node: node, command: "status") }
        let report = try failing { try node.deliveryStatus(roomID, eventID: eventID) }
        if json { return printJSON(JSONOutput.delivery(report)) }
        let who = report.isOwn ? "this device" : report.senderID
        output("\(report.eventID) by \(who) at \(time.format(report.timestampMs)): \(report.overall.label)")
        for (transport, at) in report.confirmations { output("sent: \(transport) at \(time.format(at))") }
        for failure in report.failures {
            output(
                "failing: \(failure.transport): \(failure.reason) (\(failure.attempts) attempt(s) since \(time.format(failure.firstMs)); still trying)"
            )
        }
        if report.recipients.isEmpty { output("no other device in the room") }
        for recipient in report.recipients {
            var line = "\(recipient.userID) device \(recipient.deviceKey.prefix(12))…: \(recipient.state.label)"
            if let delivered = recipient.deliveredMs { line += ", delivered \(time.format(delivered))" }
            if let read = recipient.readMs { line += ", read \(time.format(read))" }
            if !recipient.isJoined { line += " (left the room)" }
            output(line)
        }
    }
}
