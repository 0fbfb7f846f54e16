import Foundation
import ParleyCore
import ParleyTesting
import Testing

/// `parley config show`, and config.toml and `PARLEY_*` variables as commands meet them.
@Suite struct ConfigCLITests {
    let directory = TemporaryDirectory()

    /// A node's home in this test's directory, with `config` as its config.toml.
    func node(config: String?, initialized: Bool = false) throws -> ParleyCommand {
        let node = ParleyCommand(home: directory.file("home"))
        try FileManager.default.createDirectory(atPath: node.home, withIntermediateDirectories: true)
        if let config { try Data(config.utf8).write(to: URL(fileURLWithPath: "\(node.home)/config.toml")) }
        if initialized { try #require(try node.run(["init", "--user", "alice"]).status == 0) }
        return node
    }

    @Test func `config show prints each value and where it came from`() throws {
        let node = try node(config: "[sync]\ninterval = 2.5\n\n[node]\nlog_level = \"debug\"\n")
        let shown = try node.run(["config", "show"], environment: ["PARLEY_BUCKET_GZIP": "1", "PARLEY_NODE_LOG_LEVEL": "error"])
        #expect(shown.status == 0, "\(shown.stderr)")
        #expect(shown.stderr.isEmpty)
        let lines = shown.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
        #expect(
            lines == [
                "home: \(node.home) (flag --home; config.toml cannot set it)",
                "config file: \(node.home)/config.toml",
                "bucket.gzip true environment PARLEY_BUCKET_GZIP",
                "bucket.retention none default",
                "bucket.write_archives true default",
                "sync.interval 2.5 config.toml",
                "sync.flush_interval 2.0 default",
                "node.api_host 127.0.0.1 default",
                "node.api_port 0 default",
                "node.log_level error environment PARLEY_NODE_LOG_LEVEL",
                "peers.listen none default",
                "peers.sync reconcile default",
                "peers.interval 2.0 default",
                "peers.discover none default",
                "peers.fetch_files true default",
            ])
    }

    @Test func `config show --json gives each value with its source`() throws {
        let node = try node(config: "[bucket]\nretention = \"governance:30\"\n[sync]\nflush_interval = 0.5\n")
        let shown = try ParleyCommand.run(["config", "show", "--json"], environment: ["PARLEY_HOME": node.home, "PARLEY_NODE_API_PORT": "8080"])
        #expect(shown.status == 0, "\(shown.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any]
        let home = try #require(json?["home"] as? [String: String])
        #expect(home == ["value": node.home, "source": "environment", "from": "PARLEY_HOME"])
        let file = try #require(json?["file"] as? [String: Any])
        #expect(file["path"] as? String == "\(node.home)/config.toml" && file["exists"] as? Bool == true)
        let settings = try #require(json?["settings"] as? [String: [String: Any]])
        #expect(
            settings.keys.sorted() == [
                "bucket.gzip", "bucket.retention", "bucket.write_archives", "node.api_host", "node.api_port", "node.log_level", "peers.discover",
                "peers.fetch_files",
                "peers.interval", "peers.listen", "peers.sync", "sync.flush_interval", "sync.interval",
            ])
        #expect(settings["peers.listen"]?["value"] is NSNull)
        #expect(settings["peers.listen"]?["flag"] as? String == "--listen-udp")
        #expect(settings["bucket.gzip"]?["value"] as? Bool == false)
        #expect(settings["bucket.gzip"]?["source"] as? String == "default")
        #expect(settings["bucket.gzip"]?["from"] == nil)
        #expect(settings["bucket.gzip"]?["environment"] as? String == "PARLEY_BUCKET_GZIP")
        #expect(settings["bucket.retention"]?["value"] as? String == "governance:30")
        #expect(settings["bucket.retention"]?["source"] as? String == "file")
        #expect(settings["bucket.retention"]?["from"] as? String == "\(node.home)/config.toml")
        #expect(settings["sync.flush_interval"]?["value"] as? Double == 0.5)
        #expect(settings["sync.flush_interval"]?["flag"] as? String == "--flush-interval")
        #expect(settings["sync.interval"]?["value"] as? Double == 1)
        #expect(settings["node.api_port"]?["value"] as? Int == 8080)
        #expect(settings["node.api_port"]?["source"] as? String == "environment")
        #expect(settings["node.api_port"]?["from"] as? String == "PARLEY_NODE_API_PORT")
        #expect(settings["node.api_host"]?["value"] as? String == "127.0.0.1")
    }

    @Test func `config show points out a PARLEY_ variable that is one slip from a setting's`() throws {
        let node = try node(config: nil)
        let shown = try node.run(["config", "show"], environment: ["PARLEY_SYNC_INTERVALL": "5"])
        #expect(shown.status == 0)
        #expect(shown.stderr == "note: PARLEY_SYNC_INTERVALL is not a setting, and is ignored; did you mean PARLEY_SYNC_INTERVAL?\n")
        #expect(shown.stdout.contains("config file: \(node.home)/config.toml (none)"))
    }

    @Test func `a bad config.toml stops every command that opens the node, naming the file, the line and the key`() throws {
        let node = try node(config: nil, initialized: true)
        try Data("[sync]\nintervall = 5\n".utf8).write(to: URL(fileURLWithPath: "\(node.home)/config.toml"))
        for arguments in [["config", "show"], ["status"], ["room", "create", "general"]] {
            let result = try node.run(arguments)
            #expect(result.status == 1, "\(arguments)")
            #expect(
                result.stderr == """
                    error: \(node.home)/config.toml, line 2: unknown key sync.intervall; did you mean sync.interval?
                    Correct or remove what is named; `parley config show --help` lists every setting.

                    """, "\(arguments)")
        }
    }

    @Test func `a wrong PARLEY_ variable stops the command, naming it`() throws {
        let node = try node(config: nil, initialized: true)
        let result = try node.run(["status"], environment: ["PARLEY_SYNC_FLUSH_INTERVAL": "soon"])
        #expect(result.status == 1)
        #expect(
            result.stderr.hasPrefix("error: PARLEY_SYNC_FLUSH_INTERVAL must be a number of seconds at least 0, at most 86400; it is \"soon\".\n"),
            "\(result.stderr)")
    }

    @Test func `gzip set in config.toml makes the node write compressed log files`() throws {
        let node = try node(config: "[bucket]\ngzip = true\n", initialized: true)
        let bucket = directory.file("bucket")
        let created = try node.run(["room", "create", "team", "--bucket", "file://\(bucket)"])
        try #require(created.status == 0, "\(created.stderr)")
        let files = try #require(FileManager.default.enumerator(atPath: bucket)?.allObjects as? [String]).filter { $0.contains("/messages_") }
        #expect(!files.isEmpty && files.allSatisfy { $0.hasSuffix(".jsonl.gz") }, "\(files)")
    }

    @Test func `config show --help lists every setting with its variable and default`() throws {
        let help = try ParleyCommand.run(["config", "show", "--help"])
        #expect(help.status == 0)
        for line in [
            "bucket.gzip (PARLEY_BUCKET_GZIP): false", "bucket.retention (PARLEY_BUCKET_RETENTION): none",
            "sync.interval (PARLEY_SYNC_INTERVAL, --interval): 1.0", "sync.flush_interval (PARLEY_SYNC_FLUSH_INTERVAL, --flush-interval): 2.0",
            "node.api_host (PARLEY_NODE_API_HOST, --api-host): 127.0.0.1", "node.api_port (PARLEY_NODE_API_PORT, --api-port): 0",
            "node.log_level (PARLEY_NODE_LOG_LEVEL): info",
        ] {
            #expect(help.stdout.contains(line), "\(line)")
        }
    }
}
