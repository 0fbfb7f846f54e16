import Foundation
import ParleyCore
import ParleyTesting
import Testing

/// An error reaches the CLI with the code it had where it arose (the store, a bucket, the node): on standard error
/// as text, and with `--json` as `{"error": {"code", …}}` on standard output.
@Suite struct ErrorCodeCLITests {
    let directory = TemporaryDirectory()

    /// alice's node, with a room `general`.
    func alice() throws -> ParleyCommand {
        let alice = ParleyCommand(home: directory.file("alice"))
        try #require(try alice.run(["init", "--user", "alice"]).status == 0)
        try #require(try alice.run(["room", "create", "general"]).status == 0)
        return alice
    }

    /// The `error` object of a failed command's JSON output, after checking its exit status.
    func error(of result: ParleyCommand.Output) throws -> JSONValue {
        #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
        return try #require(try JSONParser().parse(Array(result.stdout.utf8))["error"], "\(result.stdout)")
    }

    @Test func `a refusal by the room arrives as not_allowed`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("general")
        let result = try nodes.bob.run(["room", "name", "general", "Mine now", "--json"])
        let error = try error(of: result)
        #expect(error["code"] == "not_allowed")
        #expect(error["message"] == "The room would refuse this: sending m.room.name needs power level 50; bob has 0.")
        #expect(result.stderr == "error: The room would refuse this: sending m.room.name needs power level 50; bob has 0.\n")
    }

    @Test func `a room this node does not hold arrives as unknown_room, an event as unknown_event`() throws {
        let alice = try alice()
        #expect(try error(of: alice.run(["send", "elsewhere", "hello", "--json"]))["code"] == "unknown_room")
        let unknown = EventID.make(roomID: "general", timestampMs: 1, randomBytes: Array(repeating: 1, count: 16))
        #expect(try error(of: alice.run(["react", "general", unknown, "👍", "--json"]))["code"] == "unknown_event")
    }

    @Test func `a bucket failure arrives as bucket, with the bucket's kind of failure`() throws {
        let alice = try alice()
        let missing = "file://\(directory.file("no/such/folder"))"
        let created = try error(of: alice.run(["room", "create", "team", "--bucket", missing, "--json"]))
        #expect(created["code"] == "bucket")
        #expect(created["bucket_failure"] == "no_such_bucket")
        #expect(created["remedy"] == "Check the path, or add --create-bucket to create the missing folders too.")

        // A room whose bucket went away: `sync --json` names the failure in the room's item.
        let bucket = directory.file("bucket")
        try #require(try alice.run(["room", "create", "team", "--bucket", "file://\(bucket)"]).status == 0)
        try FileManager.default.removeItem(atPath: bucket)
        let synced = try alice.run(["sync", "--json"])
        #expect(synced.status == 1)
        let items = try JSONParser().parse(Array(synced.stdout.utf8)).array
        #expect(items.count == 1)
        #expect(items.first?["room_id"] == "team" && items.first?["code"] == "bucket" && items.first?["bucket_failure"] == "no_such_bucket", "\(synced.stdout)")
    }

    @Test func `a sync while another holds the home arrives as busy`() throws {
        let alice = try alice()
        let lock = open("\(alice.home)/sync.lock", O_RDWR | O_CREAT, 0o600)
        try #require(lock >= 0 && flock(lock, LOCK_EX | LOCK_NB) == 0)
        defer { close(lock) }
        #expect(try error(of: alice.run(["sync", "--json"]))["code"] == "busy")
    }

    @Test func `a damaged store arrives as store_damaged, with the way back`() throws {
        let alice = try alice()
        let store = "\(alice.home)/parley.sqlite"
        let file = try FileHandle(forUpdating: URL(fileURLWithPath: store))
        try file.write(contentsOf: Data(repeating: 0xA5, count: 16384))
        try file.close()
        let error = try error(of: alice.run(["room", "list", "--json"]))
        #expect(error["code"] == "store_damaged")
        #expect(error["remedy"]?.stringValue?.contains("parley sync --new-store") == true)
    }

    @Test func `a bad config.toml arrives as invalid_configuration`() throws {
        let alice = try alice()
        try Data("[sync]\ninterval = 0\n".utf8).write(to: URL(fileURLWithPath: "\(alice.home)/config.toml"))
        let error = try error(of: alice.run(["room", "list", "--json"]))
        #expect(error["code"] == "invalid_configuration")
        #expect(error["message"] == .string("\(alice.home)/config.toml, line 2: sync.interval must be above 0 seconds; it is the integer 0."))
    }

    /// Runs `script` with bash in a mount namespace of its own, so what it mounts goes away with it.
    func inOwnMounts(_ script: String) throws -> (status: Int32, stdout: String, stderr: String) {
        let child = try Subprocess.spawn("/usr/bin/unshare", ["--mount", "/bin/bash", "-c", script])
        let (status, out, err) = child.communicate()
        return (status, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
    }

    @Test func `a write to a full disk arrives as io, saying the disk is full, and stores nothing`() throws {
        let alice = try alice()
        let mount = directory.file("small-disk")
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: false)
        let parley = ParleyCommand.executable.path
        // A 4 MiB tmpfs, with the home copied in and the rest filled.
        let result = try inOwnMounts(
            """
            set -e
            mount -t tmpfs -o size=4m tmpfs '\(mount)'
            cp -a '\(alice.home)' '\(mount)/home'
            dd if=/dev/zero of='\(mount)/filler' bs=4k 2>/dev/null || true
            set +e
            '\(parley)' --home '\(mount)/home' send general 'into a full disk' --json
            echo "status $?" >&2
            rm '\(mount)/filler'
            '\(parley)' --home '\(mount)/home' log general --json
            """)
        #expect(result.stderr.contains("status 1\n"), "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        try #require(lines.count == 2, "\(result.stdout)\(result.stderr)")
        let error = try JSONParser().parse(Array(lines[0].utf8))["error"]
        #expect(error?["code"] == "io")
        #expect(
            error?["message"]?.stringValue?.hasPrefix("The disk holding the store \(mount)/home/parley.sqlite is full: nothing of this was stored") == true,
            "\(lines[0])")
        #expect(error?["remedy"] == "Free some space on it, then run the command again.")
        // Once there is room again, the store is whole and holds no trace of the message.
        #expect(!lines[1].contains("into a full disk"))
    }

    @Test func `a store on a read-only disk arrives as io, saying so`() throws {
        let alice = try alice()
        let home = alice.home
        let result = try inOwnMounts(
            """
            set -e
            mount --bind '\(home)' '\(home)'
            mount -o remount,bind,ro '\(home)'
            set +e
            '\(ParleyCommand.executable.path)' --home '\(home)' send general 'onto a read-only disk' --json
            """)
        #expect(result.status == 1, "\(result.stderr)")
        let error = try JSONParser().parse(Array(result.stdout.utf8))["error"]
        #expect(error?["code"] == "io")
        #expect(
            error?["message"]?.stringValue?.hasPrefix("The store \(home)/parley.sqlite cannot be written: the disk holding it is mounted read-only") == true,
            "\(result.stdout)\(result.stderr)")
    }
}
