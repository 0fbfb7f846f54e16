import ArgumentParser
import Foundation
import Logging
import ParleyClient
import ParleyRelay
import ServiceLifecycle

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a relay: accounts, WebSocket push and history for the rooms its users bring.",
        discussion: """
            The relay keeps its accounts and its events in --data DIR (SQLite files, readable by their owner only). It \
            judges every event as a node does and refuses what a node would refuse; it is a cache: clients hold every \
            event, and refill a relay that lost its data. It listens on 127.0.0.1 unless --listen says otherwise. \
            With --database postgres://…, accounts and events live in PostgreSQL, shared by every relay started on it: \
            a client of one relay gets what is published at another. Settings come from flags, then PARLEY_RELAY_LISTEN, \
            PARLEY_RELAY_DATA, PARLEY_RELAY_DATABASE, PARLEY_RELAY_PUBLIC_URL and PARLEY_RELAY_REGISTRATION, then relay.toml (--config). SIGTERM or SIGINT closes the connections and exits. Logs go to standard error, \
            never with message text, passwords or tokens.
            """)
    @Option(help: "HOST:PORT to listen on (default 127.0.0.1:8470; port 0 takes a free one).") var listen: String?
    @Option(help: "The folder of the relay's data (default ./relay-data).") var data: String?
    @Option(
        help:
            "A PostgreSQL database to share with the deployment's other relays (postgres://USER:PASSWORD@HOST:PORT/DATABASE): accounts and events live there, --data keeps a cache."
    )
    var database: String?
    @Option(name: .customLong("public-url"), help: "The relay's URL as clients reach it, e.g. https://relay.example.net (default http://LISTEN).")
    var publicURL: String?
    @Option(help: "Who may register: open, invite (with a token from `parley relay admin invite`) or closed (default open).")
    var registration: String?
    @Option(name: .customLong("tls-cert"), help: "A PEM certificate chain: with --tls-key, the relay speaks HTTPS and WSS only.") var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: "The PEM private key of --tls-cert.") var tlsKey: String?
    @Option(name: .customLong("allow-origin"), help: "A web page origin allowed to open WebSockets (repeatable).") var allowOrigins: [String] = []
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (default: the file's log_level, info).")
    var logLevel: String?
    @Option(help: "The relay's configuration file (default $PARLEY_RELAY_CONFIG, else relay.toml in this folder when there is one).")
    var config: String?
    @Option(
        name: .customLong("import"),
        help: "Before serving, fill the relay from this bucket's rooms (file:///path or s3://BUCKET/PREFIX): every room, or --import-room's.")
    var importBucket: String?
    @Option(name: .customLong("import-room"), help: "With --import: only this room.") var importRoom: String?
    @Option(name: .customLong("block-quota-mb"), help: "MiB of file blocks one account may keep on the relay (default: the file's block_quota_mb, 4096).")
    var blockQuotaMB: Int?

    /// The relay's settings and the log level, from flags, then variables, then the file.
    func settings() throws -> (RelaySettings, String) {
        let environment = ProcessInfo.processInfo.environment
        let configPath = config ?? environment["PARLEY_RELAY_CONFIG"] ?? "relay.toml"
        let file: RelayConfigurationFile.Values
        do { file = try RelayConfigurationFile.read(configPath) ?? .init() } catch { throw reportError(error) }
        var settings = RelaySettings(dataDirectory: data ?? environment["PARLEY_RELAY_DATA"] ?? file.strings["data"] ?? "relay-data")
        if let value = file.integers["max_connections_per_address"] { settings.maxConnectionsPerAddress = value }
        if let value = file.integers["max_connections_per_account"] { settings.maxConnectionsPerAccount = value }
        if let value = file.integers["max_queued_bytes"] { settings.maxQueuedBytes = value }
        if let value = blockQuotaMB ?? file.integers["block_quota_mb"] {
            guard value > 0 else { throw ValidationError("--block-quota-mb must be a positive number of MiB; it was \(value).") }
            settings.blockQuotaBytes = Int64(value) << 20
        }
        if let value = file.integers["ping_interval_seconds"] { settings.pingIntervalSeconds = Int64(value) }
        if let value = file.numbers["publish_events_per_second"] { settings.publishEventsPerSecond = value }
        if let value = file.numbers["publish_bytes_per_second"] { settings.publishBytesPerSecond = value }
        if let value = file.numbers["reads_per_second"] { settings.readsPerSecond = value }
        if let value = file.numbers["logins_per_address_per_minute"] { settings.loginsPerAddressPerMinute = value }
        if let listen = listen ?? environment["PARLEY_RELAY_LISTEN"] ?? file.strings["listen"] {
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
                throw ValidationError("--listen must be HOST:PORT, e.g. 127.0.0.1:8470; it was \(TerminalText.escape(listen)).")
            }
            settings.host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            settings.port = port
        }
        settings.publicURL = publicURL ?? environment["PARLEY_RELAY_PUBLIC_URL"] ?? file.strings["public_url"]
        settings.databaseURL = database ?? environment["PARLEY_RELAY_DATABASE"] ?? file.strings["database"]
        if let text = registration ?? environment["PARLEY_RELAY_REGISTRATION"] ?? file.strings["registration"] {
            guard let mode = RelaySettings.Registration(rawValue: text) else {
                throw ValidationError("--registration must be open, invite or closed; it was \(TerminalText.escape(text)).")
            }
            settings.registration = mode
        }
        settings.allowedOrigins = Set(allowOrigins.isEmpty ? file.origins ?? [] : allowOrigins)
        settings.tlsCertificatePath = tlsCert ?? environment["PARLEY_RELAY_TLS_CERT"] ?? file.strings["tls_cert"]
        settings.tlsKeyPath = tlsKey ?? environment["PARLEY_RELAY_TLS_KEY"] ?? file.strings["tls_key"]
        return (settings, logLevel ?? file.strings["log_level"] ?? "info")
    }

    func validate() throws {
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical.")
        }
    }

    func run() async throws {
        let (settings, levelName) = try settings()
        guard let level = Logger.Level(rawValue: levelName) else {
            throw reportError(ClientError(.invalidConfiguration, "log_level must be one of trace, debug, info, notice, warning, error, critical."))
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "parley.relay")
        let server: RelayServer
        do {
            server = try RelayServer(settings: settings, logger: logger)
            _ = try server.tlsConfiguration()
        } catch let error as RelayError {
            throw reportError(ClientError(.invalidConfiguration, error.message, remedy: error.remedy))
        } catch {
            throw reportError(
                ClientError(.io, "Cannot open the relay's data in \(settings.dataDirectory): \(error).", remedy: "Check that the folder is yours and writable.")
            )
        }
        if let importBucket {
            do {
                let report = try await server.events.importBucket(importBucket, roomID: importRoom) { room in
                    printError("Importing room \(room) from \(importBucket)…")
                }
                printError("Imported \(report.accepted) event(s) of \(report.rooms) room(s) from \(report.files) file(s).")
                for problem in report.problems.prefix(20) { printError("  problem: \(problem)") }
                if report.problems.count > 20 { printError("  … and \(report.problems.count - 20) more problems") }
            } catch {
                throw reportError(
                    ClientError(
                        .invalidArgument, "Cannot import from \(importBucket): \(error)",
                        remedy: "Check the bucket URL and its credentials; the relay starts without importing when --import is left out."))
            }
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            tasks.addTask {
                guard let port = await server.port() else { return }
                printError("Relay running (pid \(getpid())) at \(server.accounts.origin) (port \(port)), data in \(settings.dataDirectory).")
            }
            do { try await tasks.waitForAll() } catch let error as RelayError {
                throw reportError(ClientError(.io, error.message, remedy: error.remedy))
            }
        }
    }
}

struct RelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay", abstract: "Look after a relay's data.", subcommands: [RelayAdmin.self])
}

struct RelayAdmin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin", abstract: "List, disable, enable and delete a relay's accounts, and issue invite tokens (on its data folder).",
        subcommands: [RelayAdminAccounts.self, RelayAdminDisable.self, RelayAdminEnable.self, RelayAdminDelete.self, RelayAdminInvite.self])
}

struct RelayDataOption: ParsableArguments {
    @Option(help: "The relay's data folder (default $PARLEY_RELAY_DATA, else ./relay-data).") var data: String?
    @Option(help: "The relay's PostgreSQL database, when it has one (postgres://…; default $PARLEY_RELAY_DATABASE).") var database: String?

    var dataDirectory: String { data ?? ProcessInfo.processInfo.environment["PARLEY_RELAY_DATA"] ?? "relay-data" }

    /// Runs `body` on the relay's accounts: in its database, or in its data folder.
    func withAccounts<T: Sendable>(_ body: @Sendable (any AccountStorage) async throws -> T) async throws -> T {
        let databaseURL = database ?? ProcessInfo.processInfo.environment["PARLEY_RELAY_DATABASE"]
        let path = dataDirectory + "/accounts.sqlite"
        if databaseURL == nil, !FileManager.default.fileExists(atPath: path) {
            throw reportError(
                ClientError(
                    .invalidArgument, "\(dataDirectory) holds no relay data (no accounts.sqlite).",
                    remedy: "Give the folder `parley serve --data` uses, or its --database."))
        }
        do {
            return try await RelayDatabase.withAccounts(databaseURL: databaseURL, accountsPath: path, logger: Logger(label: "parley.relay.admin"), body)
        } catch let error as RelayError {
            throw reportError(ClientError(.invalidConfiguration, error.message, remedy: error.remedy))
        } catch {
            throw reportError(error)
        }
    }
}

struct RelayAdminAccounts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "accounts", abstract: "List the relay's accounts.")
    @OptionGroup var options: RelayDataOption
    @Flag var json = false

    func run() async throws {
        let accounts = try await options.withAccounts { try await $0.accounts() }
        if json {
            printJSON(
                .array(
                    accounts.map {
                        [
                            "user_id": .string($0.userID), "created_ms": .integer($0.createdMs), "disabled": .bool($0.isDisabled),
                            "devices": .integer(Int64($0.devices)), "sessions": .integer(Int64($0.sessions)),
                        ]
                    }))
            return
        }
        if accounts.isEmpty { output("No accounts.") }
        for account in accounts {
            output("\(account.userID)  \(account.devices) device(s)  \(account.sessions) session(s)" + (account.isDisabled ? "  disabled" : ""))
        }
    }
}

struct RelayAdminDisable: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "disable", abstract: "Disable an account: its sessions end and it cannot log in.")
    @OptionGroup var options: RelayDataOption
    @Argument var userID: String

    func run() async throws {
        let userID = userID
        guard try await options.withAccounts({ try await $0.setDisabled(true, userID: userID) }) else {
            throw reportError(ClientError(.invalidArgument, "The relay has no account \(userID)."))
        }
        output("Disabled \(userID).")
    }
}

struct RelayAdminEnable: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "enable", abstract: "Enable a disabled account again.")
    @OptionGroup var options: RelayDataOption
    @Argument var userID: String

    func run() async throws {
        let userID = userID
        guard try await options.withAccounts({ try await $0.setDisabled(false, userID: userID) }) else {
            throw reportError(ClientError(.invalidArgument, "The relay has no account \(userID)."))
        }
        output("Enabled \(userID).")
    }
}

struct RelayAdminDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete an account with its sessions and devices (the events its devices signed stay).")
    @OptionGroup var options: RelayDataOption
    @Argument var userID: String

    func run() async throws {
        let userID = userID
        guard try await options.withAccounts({ try await $0.deleteAccount(userID: userID) }) else {
            throw reportError(ClientError(.invalidArgument, "The relay has no account \(userID)."))
        }
        output("Deleted \(userID).")
    }
}

struct RelayAdminInvite: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "invite", abstract: "Issue a token for one registration (with `parley serve --registration invite`).")
    @OptionGroup var options: RelayDataOption
    @Option(help: "Days the token stays valid.") var days = 7

    func run() async throws {
        let (days, directory) = (days, options.dataDirectory)
        let token = try await options.withAccounts { store in
            try await RelayAccounts(store: store, settings: RelaySettings(dataDirectory: directory)).issueInvite(days: days)
        }
        output(token)
    }
}

// MARK: Accounts

struct PasswordOptions: ParsableArguments {
    @Option(name: .customLong("password-file"), help: "Read the password from the first line of this file (else $PARLEY_PASSWORD, else a prompt).")
    var passwordFile: String?

    func password(prompt: String = "Password: ", confirming: Bool = false) throws -> String {
        try failing {
            let bytes: [UInt8]
            if let passwordFile {
                bytes = try Passphrase.read(fromFile: passwordFile)
            } else if let environment = ProcessInfo.processInfo.environment["PARLEY_PASSWORD"] {
                bytes = Array(environment.utf8)
            } else {
                bytes = try Passphrase.prompt(prompt)
                if confirming, try Passphrase.prompt("Again: ") != bytes { throw ClientError(.invalidArgument, "The passwords differ.") }
            }
            return String(decoding: bytes, as: UTF8.self)
        }
    }
}

struct Account: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "This home's account at a relay: register, log in (which adds this device), log out, change the password, delete.",
        subcommands: [AccountRegister.self, AccountLogin.self, AccountLogout.self, AccountPassword.self, AccountDelete.self])
}

struct RelayOption: ParsableArguments {
    @Option(help: "The relay's URL: https://HOST[:PORT] (http:// on this machine).") var relay: String
}

struct AccountRegister: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "register", abstract: "Make an account for this home's user at a relay, log in, and add this device.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var relay: RelayOption
    @OptionGroup var secret: PasswordOptions
    @Option(help: "An invite token, for a relay that takes new accounts by invitation.") var invite: String?

    func run() async throws {
        let node = try global.node()
        let password = try secret.password(confirming: true)
        try await failingAsync { try await RelayClient(node: node).register(relay: relay.relay, password: password, invite: invite) }
        output("Registered \(node.identity.userID) at \(relay.relay), logged in, with this device added.")
    }
}

struct AccountLogin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "login", abstract: "Log in to this home's account at a relay and add this device.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var relay: RelayOption
    @OptionGroup var secret: PasswordOptions

    func run() async throws {
        let node = try global.node()
        let password = try secret.password()
        try await failingAsync { try await RelayClient(node: node).login(relay: relay.relay, password: password) }
        output("Logged in to \(relay.relay) as \(node.identity.userID).")
    }
}

struct AccountLogout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logout", abstract: "End this node's session at a relay.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var relay: RelayOption
    @Flag(help: "End every session of the account, on every device.") var everywhere = false

    func run() async throws {
        let node = try global.node()
        try await failingAsync { try await RelayClient(node: node).logout(relay: relay.relay, everywhere: everywhere) }
        output(everywhere ? "Logged out of \(relay.relay) everywhere." : "Logged out of \(relay.relay).")
    }
}

struct AccountPassword: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "password", abstract: "Change the account's password; every other session ends.",
        discussion: "The current password comes from --password-file or $PARLEY_PASSWORD or a prompt; the new one from --new-password-file or a prompt.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var relay: RelayOption
    @OptionGroup var secret: PasswordOptions
    @Option(name: .customLong("new-password-file"), help: "Read the new password from the first line of this file.") var newPasswordFile: String?

    func run() async throws {
        let node = try global.node()
        let old = try secret.password(prompt: "Current password: ")
        let new = try PasswordOptions(passwordFile: newPasswordFile).passwordIgnoringEnvironment()
        try await failingAsync { try await RelayClient(node: node).changePassword(relay: relay.relay, old: old, new: new) }
        output("Changed the password at \(relay.relay); other sessions ended.")
    }
}

extension PasswordOptions {
    init(passwordFile: String?) {
        self.init()
        self.passwordFile = passwordFile
    }

    func passwordIgnoringEnvironment() throws -> String {
        try failing {
            if let passwordFile { return String(decoding: try Passphrase.read(fromFile: passwordFile), as: UTF8.self) }
            let first = try Passphrase.prompt("New password: ")
            if try Passphrase.prompt("Again: ") != first { throw ClientError(.invalidArgument, "The passwords differ.") }
            return String(decoding: first, as: UTF8.self)
        }
    }
}

struct AccountDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete the account at a relay, with its sessions and devices.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var relay: RelayOption
    @OptionGroup var secret: PasswordOptions

    func run() async throws {
        let node = try global.node()
        let password = try secret.password()
        try await failingAsync { try await RelayClient(node: node).deleteAccount(relay: relay.relay, password: password) }
        output("Deleted \(node.identity.userID)'s account at \(relay.relay).")
    }
}

// MARK: Relay rooms in other commands

/// In a relay room, publishes this device's outbox to the relay and returns after its acknowledgement; when the relay
/// cannot be reached, says that the events wait in the outbox (the next sync or node sends them) and succeeds: they
/// are stored here either way.
func sendThroughRelay(_ node: Node, _ roomID: String) async throws {
    let client = RelayClient(node: node)
    guard let location = try failing({ try client.location(roomID) }), case .relay(let url) = location else { return }
    do {
        let reports = try await client.sync([roomID])
        for problem in reports.flatMap(\.problems) { printError("warning: relay \(url): \(problem)") }
    } catch {
        let error = ClientError(describing: error, home: node.home)
        if error.code == .notLoggedIn { throw reportError(error) }
        let remedy = error.remedy.map { " \($0)" } ?? ""
        printError(
            "note: not sent through the relay \(url): \(error.message)\(remedy) The event waits in the outbox, and `parley sync` or `parley node` sends it.")
    }
}

/// The room's invite code, listing its bucket and its relay (whichever it has); `nil` for a room of neither.
/// The room's invite code, listing its bucket, its relay and `peers` (where this node is reached directly, §17), in
/// that order; `nil` for a room reached nowhere.
func inviteCode(_ node: Node, _ roomID: String, peers: [String] = []) throws -> InviteCode? {
    var code = try bucketClient(node).inviteCode(roomID)
    var more: [RoomLocation] = []
    if let relay = try RelayClient(node: node).location(roomID) { more.append(relay) }
    more += peers.map { RoomLocation.peer(address: $0) }
    guard !more.isEmpty else { return code }
    if code == nil, let creator = try node.roomState(roomID).creation, let fingerprint = InviteCode.fingerprint(ofKey: creator.creatorKey) {
        code = InviteCode(roomID: roomID, creatorFingerprint: fingerprint, locations: more)
        // A pre-shared-key room's code carries its secret (or says a passphrase is needed), wherever it is reached.
        if let psk = try node.preSharedSecret(roomID) {
            if psk.fromPassphrase { code?.needsPassphrase = true } else { code?.preSharedSecret = psk.secret }
        }
    } else {
        code?.locations += more
    }
    return code
}

struct RoomRelay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay", abstract: "Reach a room this node holds at a relay too: its events are pushed there, and its invite codes list it.",
        discussion: """
            This home must be logged in at the relay (parley account login). A room reaches one relay: --replace moves it \
            from the one it uses to another of the same deployment (relays sharing one database), for instance when its \
            relay is gone; what that one did not acknowledge is sent to the new one. Prints what the first sync did.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Argument(help: "The relay's URL: https://HOST[:PORT] (http:// on this machine).") var relay: String
    @Flag(help: "Move the room from the relay it uses to this one.") var replace = false

    func run() async throws {
        let node = try global.node()
        let reports = try await failingAsync { try await RelayClient(node: node).addRelay(roomID, relay: relay, replacing: replace) }
        for report in reports {
            output("\(report.roomID): relay \(relay): sent \(report.sent) event(s), \(report.accepted) new event(s), pushed \(report.pushed) the relay lacked")
            for problem in report.problems { output("  problem: \(problem)") }
        }
    }
}
