import ArgumentParser
import Foundation
import ParleyClient
import ParleyCore
import ParleyStore
import Synchronization

@main
struct Parley: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley",
        abstract: "Secure, decentralized chat: every message a signed, hash-chained event.",
        discussion: "The node lives in --home DIR, else $PARLEY_HOME, else ~/.parley.",
        subcommands: [
            Init.self, WhoAmI.self, Status.self, Room.self, Send.self, Edit.self, React.self, Redact.self, Read.self, Log.self,
            Events.self, Import.self, Verify.self, Search.self, Rejected.self, Sync.self, Bucket.self, DirectMessages.self, Backup.self, Device.self,
        ])

    /// `--home DIR` may come before the subcommand (`parley --home DIR init`); argument parsing wants options after
    /// it, so move it to the end.
    static func main() {
        // A parent may have started us with termination signals blocked (they are inherited); a command that runs
        // until stopped must stop when told to.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "--home", arguments.count >= 2 {
            let home = Array(arguments[0...1])
            arguments.removeFirst(2)
            if let terminator = arguments.firstIndex(of: "--") {
                arguments.insert(contentsOf: home, at: terminator)
            } else {
                arguments += home
            }
        } else if let first = arguments.first, first.hasPrefix("--home=") {
            arguments.append(arguments.removeFirst())
        }
        do {
            var command = try parseAsRoot(arguments)
            if let asynchronous = command as? AsyncParsableCommand {
                try runBlocking(asynchronous)
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
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
}

struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "The node's directory (default: $PARLEY_HOME, else ~/.parley).")
    var home: String?

    var parleyHome: ParleyHome { ParleyHome(path: home) }

    func node() throws -> Node {
        openedHome.withLock { $0 = parleyHome }
        return try failing { try Node(home: parleyHome) }
    }
}

/// The home whose store this process opened: an error that turns out to be the store's damage is told with what to do.
let openedHome = Mutex<ParleyHome?>(nil)

/// Runs `body`, turning a ``ClientError`` into its message on standard error and exit status 1.
func failing<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch {
        throw exitCode(for: error)
    }
}

/// ``failing(_:)`` for work that waits on a bucket; on a terminal, a slow bucket is told about as it happens.
func failingAsync<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await withBucketNotes(body)
    } catch {
        throw exitCode(for: error)
    }
}

/// Prints an error for the user and gives the exit status 1.
func exitCode(for error: Error) -> ExitCode {
    if let home = openedHome.withLock({ $0 }), let damage = StoreError(damageIn: error, path: home.storePath) {
        return exitCode(for: ClientError.damagedStore(home: home, detail: damage.message))
    }
    switch error {
    case let error as ClientError: printError("error: \(error.message)" + (error.remedy.map { "\n\($0)" } ?? ""))
    case let error as ExitCode: return error
    default: printError("error: \(error)")
    }
    return ExitCode(1)
}

func printError(_ text: String, newline: Bool = true) {
    FileHandle.standardError.write(Data((text + (newline ? "\n" : "")).utf8))
}

func printJSON(_ value: JSONValue) {
    print(CanonicalJSON.string(value))
}

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create this device's identity (Ed25519 signing key and X25519 key), or, on a new device of yours, join your rooms with a link code.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "The user id this device speaks for: a-z 0-9 . _ = - , up to 64 characters.") var user: String?
    @Option(help: "A link code from `parley device link` on your other device (after `parley init --user` and `parley device request` here): this device joins your bucket rooms as you.")
    var link: String?
    @Flag(help: "Print the identity as JSON.") var json = false

    func validate() throws {
        guard (user == nil) != (link == nil) else { throw ValidationError("Give either --user USER_ID or --link CODE.") }
    }

    func run() async throws {
        var joined: [String] = []
        let identity: Identity
        if let link {
            let node = try failing {
                guard FileManager.default.fileExists(atPath: global.parleyHome.secretKeyPath) else {
                    throw ClientError(
                        .notInitialized, "No identity in \(global.parleyHome.path) to link.",
                        remedy: "Run `parley init --user USER_ID` and `parley device request` here first, then `parley device link REQUEST` on your other device.")
                }
                let node = try Node(home: global.parleyHome)
                try node.acceptLink(try LinkCode(opening: link, identity: node.identity, nowMs: Node.systemClock()))
                return node
            }
            identity = node.identity
            joined = try await failingAsync { try await bucketClient(node).joinLinkedRooms() }
        } else {
            identity = try failing { try Identity.create(userID: user ?? "", home: global.parleyHome) }
        }
        if json {
            var object = identity.publicJSON.objectValue ?? JSONObject()
            if link != nil { object["joined_rooms"] = .array(joined.map(JSONValue.string)) }
            printJSON(.object(object))
        } else if link != nil {
            print("joined: \(joined.isEmpty ? "no bucket rooms" : joined.joined(separator: ", "))")
        } else {
            print("Created identity \(identity.userID) in \(global.parleyHome.path)")
            print("signing key:  \(identity.signingKeyBase64)")
            print("exchange key: \(identity.exchangeKeyBase64)")
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
            print("user id:      \(identity.userID)")
            print("signing key:  \(identity.signingKeyBase64)")
            print("exchange key: \(identity.exchangeKeyBase64)")
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the node: identity, store and rooms.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print as JSON.") var json = false

    func run() throws {
        let node = try global.node()
        let rooms = try failing { try node.store.roomIDs() }
        let buckets = try failing {
            try node.store.bucketRooms().map { room in
                (room, try node.store.outboxStatus(roomID: room.roomID, senderKey: node.identity.signingKeyBase64),
                 try node.store.bucketFileProblems(roomID: room.roomID, limit: 1000).count)
            }
        }
        if json {
            printJSON([
                "home": .string(node.home.path), "identity": node.identity.publicJSON, "store": .string(node.home.storePath),
                "rooms": .array(rooms.map(JSONValue.string)),
                "bucket_rooms": .array(buckets.map { room, outbox, faulty in
                    ["room_id": .string(room.roomID), "bucket": .string(room.bucketURL), "pending": .integer(Int64(outbox.pending)),
                     "in_transit": .integer(Int64(outbox.inTransit)), "faulty_files": .integer(Int64(faulty))]
                }),
            ])
            return
        }
        print("Parley node in \(node.home.path)")
        print("user id:     \(node.identity.userID)")
        print("signing key: \(node.identity.signingKeyBase64)")
        print("store:       \(node.home.storePath)")
        print("rooms:       \(rooms.isEmpty ? "none yet (parley room create ROOM_ID)" : rooms.joined(separator: ", "))")
        for (room, outbox, faulty) in buckets {
            print("bucket room \(room.roomID) in \(room.bucketURL): \(outbox.pending) pending, \(outbox.inTransit) in transit\(faulty > 0 ? ", \(faulty) faulty file(s) seen" : "")")
        }
    }
}
