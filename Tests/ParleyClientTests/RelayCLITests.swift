import Foundation
import ParleyCore
import ParleyTesting
import Testing

/// `parley serve` started as a user would, on 127.0.0.1, and homes that chat through it with the CLI.
@Suite struct RelayCLITests {
    /// A relay process on a free port, stopped by PID.
    final class RelayProcess {
        let process: Subprocess
        let url: String
        let data: String
        /// What it printed before it was running.
        let startup: String

        init(directory: TemporaryDirectory, port: Int = 0, extra: [String] = []) throws {
            data = directory.file("relay-data")
            process = try Subprocess.spawn(
                ParleyCommand.executable.path, ["serve", "--listen", "127.0.0.1:\(port)", "--data", data, "--log-level", "warning"] + extra, stdout: .null)
            var said = ""
            let deadline = Date().addingTimeInterval(20)
            while !said.contains("Relay running") && Date() < deadline { said += String(decoding: process.readError(timeout: 1), as: UTF8.self) }
            guard let range = said.range(of: #"at (https?://127\.0\.0\.1:[0-9]+)"#, options: .regularExpression) else {
                process.kill(SIGKILL)
                _ = process.wait()
                throw RelayStartError(description: "The relay did not start: \(said)")
            }
            url = String(said[range].dropFirst(3))
            startup = said
        }

        var port: Int { Int(url.split(separator: ":").last!)! }

        private var isStopped = false

        /// Stops the relay with `signal` and reaps it, once: its pipes are closed with it, and a second close would
        /// close whatever descriptor took their numbers since.
        func stop(_ signal: Int32 = SIGTERM) {
            guard !isStopped else { return }
            isStopped = true
            process.kill(signal)
            _ = process.wait()
        }
    }

    static let password = ["PARLEY_PASSWORD": "correct horse battery staple"]

    /// A home with an account at the relay.
    func home(_ name: String, _ directory: TemporaryDirectory, relay: RelayProcess) throws -> ParleyCommand {
        let node = ParleyCommand(home: directory.file(name))
        try #require(try node.run(["init", "--user", name]).status == 0)
        let registered = try node.run(["account", "register", "--relay", relay.url], environment: Self.password)
        try #require(registered.status == 0, "\(registered.stderr)")
        return node
    }

    func key(of node: ParleyCommand) throws -> String {
        let whoami = try JSONParser().parse(Array(try node.run(["whoami", "--json"]).stdout.utf8))
        return try #require(whoami["signing_key"]?.stringValue)
    }

    @Test func `three people chat through one relay with the CLI: create, invite, join, send, sync`() throws {
        let directory = TemporaryDirectory()
        let relay = try RelayProcess(directory: directory)
        defer { relay.stop() }
        let alice = try home("alice", directory, relay: relay)
        let bob = try home("bob", directory, relay: relay)
        let carol = try home("carol", directory, relay: relay)
        let created = try alice.run(["room", "create", "team", "--relay", relay.url])
        try #require(created.status == 0, "\(created.stderr)")
        for invitee in [bob, carol] {
            let invite = try alice.run(["room", "invite", "team", invitee == bob ? "bob" : "carol", "--key", try key(of: invitee)])
            try #require(invite.status == 0, "\(invite.stderr)")
            let code = try #require(invite.stdout.split(separator: "\n").first { $0.hasPrefix("invite code: ") }).dropFirst("invite code: ".count)
            let joined = try invitee.run(["room", "join", String(code)])
            try #require(joined.status == 0, "\(joined.stderr)")
        }
        // A send returns after the relay's acknowledgement: the others read it at their next sync.
        let sent = try alice.run(["send", "team", "hello from alice"])
        #expect(sent.status == 0)
        #expect(try bob.run(["send", "team", "hello from bob"]).status == 0)
        let synced = try carol.run(["sync"])
        #expect(synced.status == 0, "\(synced.stderr)")
        #expect(synced.stdout.contains("team: relay \(relay.url)"), "\(synced.stdout)")
        let log = try carol.run(["log", "team"]).stdout
        #expect(log.contains("alice: hello from alice") && log.contains("bob: hello from bob"), "\(log)")
        let status = try alice.run(["status", "--json"])
        #expect(status.status == 0)
        // Bob's send (which syncs the room with the relay) and Carol's sync each answered with a delivered receipt.
        #expect(try alice.run(["sync"]).status == 0)
        let delivery = try JSONParser().parse(
            Array(try alice.run(["status", sent.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "--json"]).stdout.utf8))
        let states = Dictionary(uniqueKeysWithValues: (delivery["recipients"]?.arrayValue ?? []).map { ($0["user_id"]?.text ?? "", $0["state"]?.text ?? "") })
        #expect(states == ["bob": "delivered", "carol": "delivered"], "\(delivery)")
    }

    @Test func `a file shared in a relay room is uploaded once, downloaded whole by a member, and held to the account's quota`() throws {
        let directory = TemporaryDirectory()
        let relay = try RelayProcess(directory: directory, extra: ["--block-quota-mb", "3"])
        defer { relay.stop() }
        let alice = try home("alice", directory, relay: relay)
        let bob = try home("bob", directory, relay: relay)
        _ = try room(alice, bob, relay: relay)
        // About 2.1 MiB of blocks: within the 3 MiB quota once, not twice.
        var bytes = [UInt8](repeating: 0, count: 2_200_000)
        var generator = SystemRandomNumberGenerator()
        for index in bytes.indices { bytes[index] = generator.next() }
        let path = directory.file("video.bin")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let shared = try alice.run(["send", "team", "--file", path, "the recording"])
        try #require(shared.status == 0, "\(shared.stderr)")
        let eventID = shared.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try bob.run(["sync"]).status == 0)
        let copy = directory.file("copy.bin")
        let downloaded = try bob.run(["download", eventID, "-o", copy, "--json"])
        #expect(downloaded.status == 0, "\(downloaded.stderr)")
        #expect(FileManager.default.contents(atPath: copy) == Data(bytes))
        // The same bytes shared again take the same blocks: nothing more is uploaded or counted.
        func storedBlocks() throws -> Int {
            try FileManager.default.subpathsOfDirectory(atPath: relay.data + "/blocks").filter { ($0 as NSString).lastPathComponent.count == 64 }.count
        }
        let once = try storedBlocks()
        #expect(once > 1)
        #expect(try alice.run(["send", "team", "--file", path, "again"]).status == 0)
        #expect(try storedBlocks() == once)
        // Another file would pass the quota: the send says so, and the message waits in the outbox.
        let other = directory.file("other.bin")
        try Data(bytes.reversed()).write(to: URL(fileURLWithPath: other))
        let refused = try alice.run(["send", "team", "--file", other])
        #expect(refused.stderr.contains("quota") && refused.stderr.contains("waits in the outbox"), "\(refused.stderr)")
        // Redacting the message that waits unblocks the outbox (its file is not sent); once no message shares the
        // first file, its blocks leave the relay, and so do the few of the second file's that went before the quota.
        let listed = try alice.run(["query", "--room", "team", "--has-file", "--json"])
        let shares = (try JSONParser().parse(Array(listed.stdout.utf8))["events"]?.arrayValue ?? []).compactMap { $0["event_id"]?.stringValue }
        #expect(shares.count == 3)
        for share in shares.reversed() {
            let redacted = try alice.run(["redact", "team", share])
            #expect(redacted.status == 0 && redacted.stderr.isEmpty, "\(redacted.stderr)")
        }
        let left = try storedBlocks()
        #expect(left == 0, "\(left) blocks left")
    }

    /// Alice's room at the relay with Bob joined; Carol invited when `inviting` says so. Returns the code Carol joins with.
    func room(_ alice: ParleyCommand, _ bob: ParleyCommand, carol: ParleyCommand? = nil, relay: RelayProcess) throws -> String? {
        try #require(try alice.run(["room", "create", "team", "--relay", relay.url]).status == 0)
        var carolCode: String?
        for (invitee, name) in [(bob, "bob"), carol.map { ($0, "carol") }].compactMap({ $0 }) {
            let invite = try alice.run(["room", "invite", "team", name, "--key", try key(of: invitee)])
            try #require(invite.status == 0, "\(invite.stderr)")
            let code = try #require(invite.stdout.split(separator: "\n").first { $0.hasPrefix("invite code: ") }).dropFirst("invite code: ".count)
            if name == "carol" { carolCode = String(code) } else { try #require(try invitee.run(["room", "join", String(code)]).status == 0) }
        }
        return carolCode
    }

    @Test func `running nodes carry a message sent from a shell through the relay at once`() throws {
        let directory = TemporaryDirectory()
        let relay = try RelayProcess(directory: directory)
        defer { relay.stop() }
        let alice = try home("alice", directory, relay: relay)
        let bob = try home("bob", directory, relay: relay)
        _ = try room(alice, bob, relay: relay)
        let runners = try [alice, bob].map { try Subprocess.spawn(ParleyCommand.executable.path, ["--home", $0.home, "node"], stdout: .null, stderr: .null) }
        defer {
            for runner in runners {
                runner.kill(SIGTERM)
                _ = runner.wait()
            }
        }
        #expect(try bob.run(["send", "team", "live through the relay"]).status == 0)
        let log = try alice.waitForLog("team", containing: "live through the relay")
        #expect(log.contains("bob: live through the relay"), "\(log)")
    }

    @Test func `a relay wiped empty is refilled by its clients, and a member who joins later reads everything`() throws {
        let directory = TemporaryDirectory()
        var relay = try RelayProcess(directory: directory, port: try FreePort.belowEphemeral())
        defer { relay.stop() }
        let alice = try home("alice", directory, relay: relay)
        let bob = try home("bob", directory, relay: relay)
        let carol = try home("carol", directory, relay: relay)
        let code = try #require(try room(alice, bob, carol: carol, relay: relay))
        #expect(try alice.run(["send", "team", "before the wipe"]).status == 0)
        #expect(try bob.run(["send", "team", "bob too"]).status == 0)
        #expect(try alice.run(["sync"]).status == 0)
        // The relay loses its events (its accounts stay), and comes back at the same address.
        let port = relay.port
        relay.stop()
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: relay.data + "/events.sqlite" + suffix) }
        relay = try RelayProcess(directory: directory, port: port)
        let refill = try alice.run(["sync"])
        #expect(refill.status == 0, "\(refill.stderr)")
        // Alice holds Bob's events too: she pushes them for him.
        #expect(refill.stdout.contains("pushed"), "\(refill.stdout)")
        let joined = try carol.run(["room", "join", code])
        #expect(joined.status == 0, "\(joined.stderr)")
        let log = try carol.run(["log", "team"]).stdout
        #expect(log.contains("alice: before the wipe") && log.contains("bob: bob too"), "\(log)")
    }

    @Test func `a send to a relay that does not answer waits in the outbox and goes out at the next sync`() throws {
        let directory = TemporaryDirectory()
        var relay = try RelayProcess(directory: directory, port: try FreePort.belowEphemeral())
        defer { relay.stop() }
        let alice = try home("alice", directory, relay: relay)
        let bob = try home("bob", directory, relay: relay)
        _ = try room(alice, bob, relay: relay)
        let port = relay.port
        relay.stop()
        let queued = try alice.run(["send", "team", "while the relay is down"])
        #expect(queued.status == 0)
        #expect(queued.stderr.contains("not sent through the relay") && queued.stderr.contains("waits in the outbox"), "\(queued.stderr)")
        relay = try RelayProcess(directory: directory, port: port)
        let resent = try alice.run(["sync"])
        #expect(resent.stdout.contains("sent 1 event(s)"), "\(resent.stdout) \(resent.stderr)")
        #expect(try bob.run(["sync"]).status == 0)
        #expect(try bob.run(["log", "team"]).stdout.contains("alice: while the relay is down"))
    }

    @Test func `relay.toml configures the relay under its flags, and a wrong key is refused naming it`() throws {
        let directory = TemporaryDirectory()
        let config = directory.file("relay.toml")
        try Data("registration = \"closed\"\nallow_origins = [\"https://chat.example.net\"]\n".utf8).write(to: URL(fileURLWithPath: config))
        let relay = try RelayProcess(directory: directory, extra: ["--config", config])
        defer { relay.stop() }
        let alice = ParleyCommand(home: directory.file("alice"))
        try #require(try alice.run(["init", "--user", "alice"]).status == 0)
        let refused = try alice.run(["account", "register", "--relay", relay.url], environment: Self.password)
        #expect(refused.status != 0 && refused.stderr.contains("does not take new accounts"), "\(refused.stderr)")

        try Data("registraton = \"open\"\n".utf8).write(to: URL(fileURLWithPath: config))
        let wrong = try ParleyCommand.run(["serve", "--config", config, "--data", directory.file("other-data")])
        #expect(wrong.status != 0 && wrong.stderr.contains("unknown key registraton"), "\(wrong.stderr)")
    }

    @Test func `serve --import fills a relay from a bucket room's files before it serves`() throws {
        let directory = TemporaryDirectory()
        let alice = ParleyCommand(home: directory.file("alice"))
        try #require(try alice.run(["init", "--user", "alice"]).status == 0)
        let bucket = "file://\(directory.file("bucket"))"
        try #require(try alice.run(["room", "create", "team", "--bucket", bucket]).status == 0)
        try #require(try alice.run(["send", "team", "kept in the bucket", "--flush"]).status == 0)
        let relay = try RelayProcess(directory: directory, extra: ["--import", bucket])
        defer { relay.stop() }
        // The create, alice's join and her message.
        #expect(relay.startup.contains("Imported 3 event(s) of 1 room(s) from"), "\(relay.startup)")
        // The relay holds them: alice reaching the room there too pushes nothing, and bob joins through the relay alone.
        try #require(try alice.run(["account", "register", "--relay", relay.url], environment: Self.password).status == 0)
        let added = try alice.run(["room", "relay", "team", relay.url])
        #expect(added.status == 0 && added.stdout.contains("pushed 0 the relay lacked"), "\(added.stdout)\(added.stderr)")
        let bob = try home("bob", directory, relay: relay)
        let invite = try alice.run(["room", "invite", "team", "bob", "--key", try key(of: bob)])
        let code = try #require(invite.stdout.split(separator: "\n").first { $0.hasPrefix("invite code: ") }).dropFirst("invite code: ".count)
        let joined = try bob.run(["room", "join", String(code), "--relay", relay.url])
        #expect(joined.status == 0, "\(joined.stderr)")
        #expect(try bob.run(["log", "team"]).stdout.contains("alice: kept in the bucket"))
    }

    @Test func `with a certificate and key the relay speaks HTTPS only`() throws {
        let directory = TemporaryDirectory()
        let (certificate, key) = (directory.file("relay.pem"), directory.file("relay.key"))
        let made = try Subprocess.spawn(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", certificate,
            ], stdout: .null, stderr: .null)
        try #require(made.wait() == 0)
        let relay = try RelayProcess(directory: directory, extra: ["--tls-cert", certificate, "--tls-key", key])
        defer { relay.stop() }
        #expect(relay.url.hasPrefix("https://127.0.0.1:"))
        let health = try Subprocess.spawn("/usr/bin/curl", ["-sS", "--cacert", certificate, relay.url + "/health"], stderr: .null).communicate()
        #expect(String(decoding: health.stdout, as: UTF8.self).contains("\"status\":\"ok\""))
        let plain = try Subprocess.spawn("/usr/bin/curl", ["-sS", "--max-time", "5", "http://127.0.0.1:\(relay.port)/health"], stderr: .null).communicate()
        #expect(plain.status != 0 || !String(decoding: plain.stdout, as: UTF8.self).contains("ok"), "plain HTTP is not served")
        let missingKey = try ParleyCommand.run(["serve", "--tls-cert", certificate, "--data", directory.file("other")])
        #expect(missingKey.status != 0 && missingKey.stderr.contains("--tls-cert and --tls-key together"), "\(missingKey.stderr)")
    }

    @Test func `account commands say what went wrong and what to do`() throws {
        let directory = TemporaryDirectory()
        let relay = try RelayProcess(directory: directory)
        defer { relay.stop() }
        let alice = try home("alice", directory, relay: relay)
        let again = try alice.run(["account", "register", "--relay", relay.url], environment: Self.password)
        #expect(again.status != 0 && again.stderr.contains("already has an account alice"), "\(again.stderr)")
        let wrong = try alice.run(["account", "login", "--relay", relay.url], environment: ["PARLEY_PASSWORD": "not the password"])
        #expect(wrong.status != 0 && wrong.stderr.contains("wrong"), "\(wrong.stderr)")
        #expect(try alice.run(["account", "logout", "--relay", relay.url]).status == 0)
        let unlogged = try alice.run(["room", "create", "team", "--relay", relay.url])
        #expect(unlogged.status != 0 && unlogged.stderr.contains("parley account login --relay"), "\(unlogged.stderr)")
        let accounts = try ParleyCommand.run(["relay", "admin", "accounts", "--data", relay.data])
        #expect(accounts.stdout.contains("alice  1 device(s)  0 session(s)"), "\(accounts.stdout)")
    }
}

extension ParleyCommand: Equatable {
    public static func == (lhs: ParleyCommand, rhs: ParleyCommand) -> Bool { lhs.home == rhs.home }
}

struct RelayStartError: Error, CustomStringConvertible {
    var description: String
}
