import Foundation
import ParleyBucket
import ParleyCore
import ParleyTesting
import Testing

/// Failures a user meets through the `parley` executable: a bucket that cannot be written, reached or trusted with
/// credentials, one failing room among several, two syncs of one home, signals, a damaged or lost store.
@Suite(.serialized) struct FailureCLITests {
    /// One node with an identity, in a fresh directory.
    struct OneNode {
        let directory = TemporaryDirectory()
        let node: ParleyCommand

        init(_ user: String = "alice") throws {
            node = ParleyCommand(home: directory.file(user))
            try #require(try node.run(["init", "--user", user]).status == 0)
        }

        var bucketPath: String { directory.file("bucket") }
        var bucketURL: String { "file://\(bucketPath)" }
        var storePath: String { "\(node.home)/parley.sqlite" }

        func rooms() throws -> [String] {
            let listed = try node.run(["room", "list"])
            try #require(listed.status == 0, "\(listed.stderr)")
            return listed.stdout.split(separator: "\n").map(String.init)
        }

        func bucketRooms() throws -> [JSONValue] {
            let status = try node.run(["status", "--json"])
            try #require(status.status == 0, "\(status.stderr)")
            return try JSONParser().parse(Array(status.stdout.utf8))["bucket_rooms"]!.array
        }

        /// Every line of every log file of `room` in the folder bucket.
        func linesInBucket(_ room: String) async throws -> [String] {
            let store = FolderStore(root: bucketPath)
            var lines: [String] = []
            for object in try await store.listAll(prefix: BucketLayout.logsPrefix(room)) {
                lines += String(decoding: try await store.get(key: object.key, maxBytes: 1 << 24), as: UTF8.self).split(separator: "\n").map(String.init)
            }
            return lines
        }
    }

    /// Reads a running command's standard error until `done` holds for what it has written (or 60 s pass).
    func readError(of process: Subprocess, until done: (String) -> Bool) -> String {
        var text = ""
        let deadline = Date().addingTimeInterval(60)
        while !done(text) && Date() < deadline { text += String(decoding: process.readError(timeout: 1), as: UTF8.self) }
        return text
    }

    /// Starts `parley sync --watch` and waits until it holds the home's sync lock (it handles signals by then).
    func startWatching(_ node: ParleyCommand, _ extra: [String] = [], environment: [String: String] = [:]) throws -> Subprocess {
        try startHoldingHome(node, ["sync", "--watch", "--interval", "0.1"] + extra, environment: environment)
    }

    /// Starts a long-running command and waits until it holds the home's sync lock (it handles signals by then).
    func startHoldingHome(_ node: ParleyCommand, _ arguments: [String], environment: [String: String] = [:]) throws -> Subprocess {
        let watcher = try Subprocess.spawn(
            ParleyCommand.executable.path, ["--home", node.home] + arguments,
            environment: ProcessInfo.processInfo.environment.merging(environment) { $1 })
        let lockFile = "\(node.home)/sync.lock"
        let deadline = Date().addingTimeInterval(30)
        while (try? String(contentsOfFile: lockFile, encoding: .utf8))?.hasPrefix("\(watcher.pid) ") != true && Date() < deadline {
            usleep(20_000)
        }
        return watcher
    }

    // MARK: A create that fails

    @Test(arguments: ["file:///proc/parley-room-bucket", "under-a-file"])
    func `a room create whose folder bucket cannot be written leaves nothing behind, and the same create works once the bucket is fixed`(
        bucket: String
    ) throws {
        let alice = try OneNode()
        // A path through a regular file can be written by nobody, root included.
        try Data("a file".utf8).write(to: URL(fileURLWithPath: alice.directory.file("file")))
        let url = bucket == "under-a-file" ? "file://\(alice.directory.file("file"))/bucket" : bucket
        let failed = try alice.node.run(["room", "create", "team", "--bucket", url])
        #expect(failed.status == 1)
        #expect(failed.stderr.contains("error: Cannot"), "\(failed.stderr)")
        #expect(try alice.rooms().isEmpty)
        #expect(try alice.bucketRooms().isEmpty)
        let send = try alice.node.run(["send", "team", "hello"])
        #expect(send.status == 1 && send.stdout.isEmpty, "no event id is printed for a room that does not exist")

        let created = try alice.node.run(["room", "create", "team", "--bucket", alice.bucketURL])
        #expect(created.status == 0, "\(created.stderr)")
        let synced = try alice.node.run(["sync"])
        #expect(synced.status == 0, "\(synced.stderr)")
    }

    @Test func `a room create at an endpoint where nothing listens fails at once, says what to check and leaves nothing behind`() throws {
        let alice = try OneNode()
        let endpoint = S3TestServer.closedEndpoint()
        let started = Date()
        let failed = try alice.node.run(
            ["room", "create", "team", "--bucket", "s3://parley-test/p?endpoint=\(endpoint)"],
            environment: ["AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"])
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(failed.status == 1)
        #expect(failed.stderr.contains("Cannot connect to \(endpoint) (connection refused"), "\(failed.stderr)")
        #expect(try alice.rooms().isEmpty)
    }

    @Test(.enabled(if: S3TestServer.isAvailable))
    func `a room create in an S3 bucket that does not exist says so and leaves nothing behind`() throws {
        let alice = try OneNode()
        let failed = try alice.node.run(
            [
                "room", "create", "team", "--bucket",
                S3TestServer.url(prefix: S3TestServer.freshPrefix()).replacingOccurrences(of: "parley-test", with: "parley-no-such-bucket"),
            ],
            environment: S3TestServer.awsEnvironment)
        #expect(failed.status == 1)
        #expect(failed.stderr.contains("the bucket parley-no-such-bucket does not exist"), "\(failed.stderr)")
        #expect(try alice.rooms().isEmpty)
        let created = try alice.node.run(
            ["room", "create", "team", "--bucket", S3TestServer.url(prefix: S3TestServer.freshPrefix())], environment: S3TestServer.awsEnvironment)
        #expect(created.status == 0, "\(created.stderr)")
    }

    @Test(.enabled(if: S3TestServer.isAvailable))
    func `a room create with a wrong secret says to check AWS_SECRET_ACCESS_KEY, not a bare 403`() throws {
        let alice = try OneNode()
        var environment = S3TestServer.awsEnvironment
        environment["AWS_SECRET_ACCESS_KEY"] = "wrong-secret"
        let endpoint = try #require(ProcessInfo.processInfo.environment["PARLEY_TEST_S3_AUTH_ENDPOINT"])
        let failed = try alice.node.run(
            ["room", "create", "team", "--bucket", "s3://\(S3TestServer.authBucket)/?endpoint=\(endpoint)"], environment: environment)
        #expect(failed.status == 1)
        #expect(failed.stderr.contains("SignatureDoesNotMatch") && failed.stderr.contains("Check AWS_SECRET_ACCESS_KEY"), "\(failed.stderr)")
        #expect(try alice.rooms().isEmpty)
    }

    @Test(.enabled(if: S3TestServer.isAvailable))
    func `a room create whose metadata is written but not its first log file keeps the room, says so, and the next sync writes the file`() async throws {
        let alice = try OneNode()
        let prefix = S3TestServer.freshPrefix()
        let aws = S3TestServer.awsEnvironment
        try await S3TestServer.inject([.init("PUT", path: String(prefix.dropLast()) + "/rooms/team/logs/", "status:503:SlowDown", count: 6)])
        let created = try alice.node.run(["room", "create", "team", "--bucket", S3TestServer.url(prefix: prefix, throughProxy: true)], environment: aws)
        #expect(created.status == 1)
        #expect(created.stderr.contains("Room team was created in s3://parley-test/\(prefix)"), "\(created.stderr)")
        #expect(created.stderr.contains("`parley sync` writes them"), "\(created.stderr)")
        #expect(try alice.rooms() == ["team"])
        let synced = try alice.node.run(["sync"], environment: aws)
        #expect(synced.status == 0, "\(synced.stderr)")
        #expect(synced.stdout.contains("team: wrote 1 file(s) with 2 event(s)"), "\(synced.stdout)")
    }

    // MARK: Forgetting a room

    @Test func `room forget removes the room's events, keys, bucket record and outbox from the node, once confirmed`() throws {
        let alice = try OneNode()
        try #require(try alice.node.run(["room", "create", "team", "--bucket", alice.bucketURL, "--encrypted"]).status == 0)
        try #require(try alice.node.run(["send", "team", "a message only this node holds unsent"]).status == 0)

        let unconfirmed = try alice.node.run(["room", "forget", "team"])
        #expect(unconfirmed.status == 1)
        // Unsent: the message, and the room key it is sealed with.
        #expect(unconfirmed.stderr.contains("2 event(s) of yours never sent") && unconfirmed.stderr.contains("Give --yes"), "\(unconfirmed.stderr)")
        #expect(try alice.rooms() == ["team"])

        let forgotten = try alice.node.run(["room", "forget", "team", "--yes"])
        #expect(forgotten.status == 0, "\(forgotten.stderr)")
        #expect(try alice.rooms().isEmpty)
        #expect(try alice.bucketRooms().isEmpty)
        #expect(try alice.node.run(["log", "team"]).stderr.contains("holds no room team"))
        #expect(try alice.node.run(["sync"]).stderr.contains("no bucket or relay rooms"))
        // Gone from the files too, keys and text alike.
        var files = try Data(contentsOf: URL(fileURLWithPath: alice.storePath))
        files += (try? Data(contentsOf: URL(fileURLWithPath: alice.storePath + "-wal"))) ?? Data()
        #expect(files.range(of: Data("team".utf8)) == nil)
        #expect(files.range(of: Data("only this node holds".utf8)) == nil)
        #expect(!(try String(contentsOfFile: "\(alice.node.home)/bucket-rooms.json", encoding: .utf8)).contains("team"))
    }

    @Test func `room forget says it publishes no leave, and suggests leaving first`() throws {
        let help = try ParleyCommand.run(["room", "forget", "--help"])
        #expect(help.stdout.contains("Nothing is published"))
        #expect(help.stdout.contains("parley room leave ROOM_ID"))
    }

    @Test func `a room forgotten can be created again in another bucket`() throws {
        let alice = try OneNode()
        try #require(try alice.node.run(["room", "create", "team", "--bucket", alice.bucketURL, "--name", "Old"]).status == 0)
        try #require(try alice.node.run(["room", "forget", "team", "--yes"]).status == 0)
        let again = try alice.node.run(["room", "create", "team", "--bucket", "file://\(alice.directory.file("other"))"])
        #expect(again.status == 0, "\(again.stderr)")
        let info = try alice.node.run(["room", "info", "team"])
        #expect(!info.stdout.contains("Old"))
    }

    // MARK: One failing room among several

    @Test(.enabled(if: S3TestServer.isAvailable))
    func `a failing bucket stops neither the sync of the other rooms nor goes unnamed`() async throws {
        let alice = try OneNode()
        let prefix = S3TestServer.freshPrefix()
        let failingURL = S3TestServer.url(prefix: prefix, throughProxy: true)
        let aws = S3TestServer.awsEnvironment
        try #require(try alice.node.run(["room", "create", "a-failing", "--bucket", failingURL], environment: aws).status == 0)
        try #require(try alice.node.run(["room", "create", "b-working", "--bucket", alice.bucketURL]).status == 0)
        try #require(try alice.node.run(["send", "b-working", "still delivered"]).status == 0)
        try await S3TestServer.inject([.init("GET", path: String(prefix.dropLast()), "status:503:SlowDown", count: 1000)])

        let synced = try alice.node.run(["sync"], environment: aws)
        #expect(synced.status == 1)
        #expect(synced.stderr.contains("error: room a-failing, bucket \(failingURL): "), "\(synced.stderr)")
        #expect(synced.stdout.contains("b-working: wrote 1 file(s) with 1 event(s)"), "\(synced.stdout)")
        #expect(try await alice.linesInBucket("b-working").contains { $0.contains("still delivered") })
    }

    @Test(.enabled(if: S3TestServer.isAvailable))
    func `sync --watch waits longer after each failure, tells repeats as a count and tells the recovery`() async throws {
        let alice = try OneNode()
        let prefix = S3TestServer.freshPrefix()
        let url = S3TestServer.url(prefix: prefix, throughProxy: true)
        let aws = S3TestServer.awsEnvironment
        try #require(try alice.node.run(["room", "create", "team", "--bucket", url], environment: aws).status == 0)
        // Four syncs in a row fail: each lists once, and a listing gives up after 6 attempts.
        try await S3TestServer.inject([.init("GET", path: String(prefix.dropLast()), "status:503:SlowDown", count: 24)])
        let watcher = try startWatching(alice.node, environment: aws)
        defer {
            watcher.kill(SIGKILL)
            watcher.wait()
        }
        let text = readError(of: watcher) { $0.contains("works again") }
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.count == 5, "one line per failed attempt and one for the recovery, not one per poll: \(lines)")
        #expect(lines.first?.hasPrefix("room team: bucket \(url): ") == true && lines.first?.contains("503 SlowDown") == true, "\(lines)")
        #expect(lines.first?.hasSuffix("(retrying in 0.2 s)") == true, "\(lines)")
        #expect(
            lines.dropFirst().first?.contains("unreachable (2 times since ") == true && lines.dropFirst().first?.hasSuffix("; retrying in 0.4 s") == true,
            "\(lines)")
        #expect(
            lines.dropFirst(3).first?.contains("unreachable (4 times since ") == true && lines.dropFirst(3).first?.hasSuffix("; retrying in 1.6 s") == true,
            "\(lines)")
        #expect(lines.last?.hasPrefix("room team: bucket \(url) works again (after failing 4 times since ") == true, "\(lines)")
        #expect(try await S3TestServer.pendingFaults(path: String(prefix.dropLast())) == 0)
    }

    // MARK: One sync per home, and signals

    @Test func `a second sync of a home that sync --watch is syncing names the first one's pid and exits non-zero`() throws {
        let alice = try OneNode()
        try #require(try alice.node.run(["room", "create", "team", "--bucket", alice.bucketURL]).status == 0)
        let watcher = try startWatching(alice.node)
        for arguments in [["sync", "--watch"], ["sync"], ["room", "forget", "team", "--yes"]] {
            let second = try alice.node.run(arguments)
            #expect(second.status == 1, "\(arguments)")
            #expect(
                second.stderr.contains("Another parley process is syncing \(alice.node.home): pid \(watcher.pid) (`parley sync --watch`)"), "\(second.stderr)")
        }
        // The lock goes with the process, however it ends.
        watcher.kill(SIGKILL)
        watcher.wait()
        let after = try alice.node.run(["sync"])
        #expect(after.status == 0, "\(after.stderr)")
    }

    @Test(arguments: [SIGTERM, SIGINT])
    func `a signal to sync --watch writes the outbox before it exits`(signal: Int32) async throws {
        let alice = try OneNode()
        try #require(try alice.node.run(["room", "create", "team", "--bucket", alice.bucketURL]).status == 0)
        let watcher = try startWatching(alice.node, ["--flush-interval", "3600"])
        try #require(try alice.node.run(["send", "team", "written on the way out"]).status == 0)
        watcher.kill(signal)
        let (status, _, error) = watcher.communicate()
        let said = String(decoding: error, as: UTF8.self)
        #expect(status == 0, "\(said)")
        #expect(said.contains("Writing the outbox before exiting (1 event(s) in 1 room(s))"), "\(said)")
        #expect(try await alice.linesInBucket("team").contains { $0.contains("written on the way out") })
    }

    @Test(.enabled(if: S3TestServer.isAvailable))
    func `a signal to sync --watch while the bucket fails says what stays unsent`() async throws {
        let alice = try OneNode()
        let prefix = S3TestServer.freshPrefix()
        let aws = S3TestServer.awsEnvironment
        try #require(
            try alice.node.run(["room", "create", "team", "--bucket", S3TestServer.url(prefix: prefix, throughProxy: true)], environment: aws).status == 0)
        let watcher = try startWatching(alice.node, ["--flush-interval", "3600"], environment: aws)
        try #require(try alice.node.run(["send", "team", "not written"]).status == 0)
        try await S3TestServer.inject([.init("PUT", path: String(prefix.dropLast()), "status:503:SlowDown", count: 1000)])
        watcher.kill(SIGINT)
        let (status, _, error) = watcher.communicate()
        let said = String(decoding: error, as: UTF8.self)
        #expect(status == 1, "\(said)")
        #expect(said.contains("room team: 1 event(s) stay unsent ("), "\(said)")
        #expect(said.contains("the next `parley sync` writes them"), "\(said)")
        let node = try JSONParser().parse(Array(try alice.node.run(["status", "--json"]).stdout.utf8))
        #expect(node["bucket_rooms"]!.array[0]["pending"] == .integer(1))
    }

    // MARK: parley node

    @Test func `a running node writes an event sent from another shell at once, long before its next poll, and logs no message text`() async throws {
        let alice = try OneNode()
        try #require(try alice.node.run(["room", "create", "team", "--bucket", alice.bucketURL]).status == 0)
        let runner = try startHoldingHome(alice.node, ["node", "--interval", "3600"])
        defer {
            runner.kill(SIGKILL)
            runner.wait()
        }
        try #require(try alice.node.run(["send", "team", "secret words from another shell"]).status == 0)
        let deadline = Date().addingTimeInterval(30)
        while try await !alice.linesInBucket("team").contains(where: { $0.contains("secret words") }) && Date() < deadline { usleep(50_000) }
        #expect(try await alice.linesInBucket("team").contains { $0.contains("secret words from another shell") })
        runner.kill(SIGTERM)
        let (status, _, error) = runner.communicate()
        let said = String(decoding: error, as: UTF8.self)
        #expect(status == 0, "\(said)")
        #expect(said.contains("Node started") && said.contains("Node stopped"), "\(said)")
        #expect(!said.contains("secret words"), "\(said)")
    }

    @Test(arguments: [SIGTERM, SIGINT])
    func `a signal to a running node writes the outbox before it exits 0`(signal: Int32) async throws {
        let alice = try OneNode()
        try #require(try alice.node.run(["room", "create", "team", "--bucket", alice.bucketURL]).status == 0)
        let runner = try startHoldingHome(alice.node, ["node", "--flush-after", "3600"])
        try #require(try alice.node.run(["send", "team", "written on the way out"]).status == 0)
        runner.kill(signal)
        let (status, _, error) = runner.communicate()
        let said = String(decoding: error, as: UTF8.self)
        #expect(status == 0, "\(said)")
        #expect(said.contains("Writing the outbox before exiting"), "\(said)")
        #expect(try await alice.linesInBucket("team").contains { $0.contains("written on the way out") })
    }

    @Test func `a second node on the same home says which process holds it and exits 1`() throws {
        let alice = try OneNode()
        let runner = try startHoldingHome(alice.node, ["node"])
        defer {
            runner.kill(SIGKILL)
            runner.wait()
        }
        let second = try alice.node.run(["node"])
        #expect(second.status == 1)
        #expect(second.stderr.contains("Another parley process is syncing \(alice.node.home): pid \(runner.pid) (`parley node`)"), "\(second.stderr)")
    }

    // MARK: Slow buckets on a terminal

    @Test(.enabled(if: S3TestServer.isAvailable))
    func `a slow bucket is told about on a terminal after 2 s, and not when standard error is no terminal`() async throws {
        let alice = try OneNode()
        let prefix = S3TestServer.freshPrefix()
        let url = S3TestServer.url(prefix: prefix, throughProxy: true)
        let aws = S3TestServer.awsEnvironment
        try #require(try alice.node.run(["room", "create", "team", "--bucket", url], environment: aws).status == 0)
        for terminal in [true, false] {
            try await S3TestServer.inject([.init("GET", path: String(prefix.dropLast()), "delay:3.5")])
            let synced = try alice.node.run(["sync", "team"], environment: aws, errorToTerminal: terminal)
            #expect(synced.status == 0, "\(synced.stderr)")
            #expect(synced.stderr.contains("note: Waiting for s3://parley-test/\(prefix) to answer…") == terminal, "\(synced.stderr)")
        }
    }

    // MARK: A damaged or missing store

    @Test(arguments: [0, 3])
    func `a damaged store is called damaged, with the bucket rooms its events can be fetched from and how`(damagedPage: Int) throws {
        let alice = try OneNode()
        try #require(try alice.node.run(["room", "create", "team", "--bucket", alice.bucketURL]).status == 0)
        for index in 0..<20 { try #require(try alice.node.run(["send", "team", "message \(index)"]).status == 0) }
        let file = try FileHandle(forUpdating: URL(fileURLWithPath: alice.storePath))
        try file.seek(toOffset: UInt64(damagedPage * 16384))
        try file.write(contentsOf: Data(repeating: 0xA5, count: 16384))
        try file.close()
        let log = try alice.node.run(["log", "team"])
        #expect(log.status == 1)
        #expect(log.stderr.hasPrefix("error: The store \(alice.storePath) is damaged: SQLite says "), "\(log.stderr)")
        #expect(log.stderr.contains("fetched again from this node's bucket rooms: team (\(alice.bucketURL))"), "\(log.stderr)")
        #expect(log.stderr.contains("mv \(alice.storePath) \(alice.storePath).damaged") && log.stderr.contains("parley sync --new-store"), "\(log.stderr)")
        #expect(!log.stderr.contains("permission"), "\(log.stderr)")
    }

    @Test func `a deleted store is refused while the device key is there, and sync --new-store fetches this device's events before it signs again`()
        async throws
    {
        let alice = try OneNode()
        try #require(try alice.node.run(["room", "create", "team", "--bucket", alice.bucketURL]).status == 0)
        try #require(try alice.node.run(["send", "team", "before the loss", "--flush"]).status == 0)
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: alice.storePath + suffix) }

        let refused = try alice.node.run(["send", "team", "into an empty store"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("holds the device key of alice but no store"), "\(refused.stderr)")
        #expect(refused.stderr.contains("could sign an event number it already used"), "\(refused.stderr)")
        #expect(refused.stderr.contains("team (\(alice.bucketURL))") && refused.stderr.contains("parley sync --new-store"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: alice.storePath), "nothing was created")

        let rebuilt = try alice.node.run(["sync", "--new-store"])
        #expect(rebuilt.status == 0, "\(rebuilt.stderr)")
        #expect(try alice.node.run(["log", "team"]).stdout.contains("before the loss"))
        let sent = try alice.node.run(["send", "team", "after the loss", "--flush", "--json"])
        #expect(sent.status == 0, "\(sent.stderr)")
        #expect(try JSONParser().parse(Array(sent.stdout.utf8))["seq"] == .integer(4), "create, join, message, then this")
        let audit = try ParleyCommand.run(["bucket", "verify", alice.bucketURL, "--json"])
        #expect(audit.status == 0, "no seq was signed twice: \(audit.stdout)")
        #expect(try JSONParser().parse(Array(audit.stdout.utf8))["warnings"]?.array.isEmpty == true, "nothing was written twice: \(audit.stdout)")
        #expect(try alice.node.run(["sync", "--new-store"]).stderr.contains("nothing to restore"))
    }
}
