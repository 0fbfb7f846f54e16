import Foundation
import ParleyBucket
import ParleyClient
import ParleyTesting
import Testing

@Suite struct ConfigurationTests {
    let directory = TemporaryDirectory()

    /// A home in this test's directory, with `config` as its config.toml when given.
    func home(_ name: String = "home", config: String? = nil) throws -> ParleyHome {
        let home = ParleyHome(path: directory.file(name))
        try home.create()
        if let config { try Data(config.utf8).write(to: URL(fileURLWithPath: home.configPath)) }
        return home
    }

    /// The error resolving `home` with `environment` gives.
    func failure(_ home: ParleyHome, environment: [String: String] = [:]) throws -> ClientError {
        let configuration: Configuration
        do throws(ClientError) {
            configuration = try Configuration.resolve(home: home, environment: environment)
        } catch {
            return error
        }
        Issue.record("resolved without an error: \(configuration.origins)")
        throw CancellationError()
    }

    // MARK: Precedence

    @Test func `a flag wins over the environment, the environment over config.toml, config.toml over the default`() throws {
        let home = try home(config: "[sync]\ninterval = 3\n")
        let environment = ["PARLEY_SYNC_INTERVAL": "2"]

        let flagged = try Configuration.resolve(home: home, flags: [.syncInterval: .seconds(1.5)], environment: environment)
        #expect(flagged.syncInterval == 1.5)
        #expect(flagged.origin(of: .syncInterval) == .flag("--interval"))

        let fromEnvironment = try Configuration.resolve(home: home, environment: environment)
        #expect(fromEnvironment.syncInterval == 2)
        #expect(fromEnvironment.origin(of: .syncInterval) == .environment("PARLEY_SYNC_INTERVAL"))

        let fromFile = try Configuration.resolve(home: home, environment: [:])
        #expect(fromFile.syncInterval == 3)
        #expect(fromFile.origin(of: .syncInterval) == .file(home.configPath))
        #expect(fromFile.fileExists)

        try FileManager.default.removeItem(atPath: home.configPath)
        let byDefault = try Configuration.resolve(home: home, environment: [:])
        #expect(byDefault.syncInterval == 1)
        #expect(byDefault.origin(of: .syncInterval) == .builtIn)
        #expect(!byDefault.fileExists)
    }

    @Test func `an empty environment variable counts as unset`() throws {
        let home = try home(config: "[bucket]\ngzip = true\n")
        let configuration = try Configuration.resolve(home: home, environment: ["PARLEY_BUCKET_GZIP": ""])
        #expect(configuration[.bucketGzip] == .boolean(true))
        #expect(configuration.origin(of: .bucketGzip) == .file(home.configPath))
    }

    @Test func `the home comes from --home, else PARLEY_HOME, else .parley in the account's home`() {
        #expect(Configuration.home(flag: "/a", environment: ["PARLEY_HOME": "/b", "HOME": "/c"]).home.path == "/a")
        #expect(Configuration.home(flag: "/a", environment: [:]).origin == .flag("--home"))
        #expect(Configuration.home(flag: nil, environment: ["PARLEY_HOME": "/b", "HOME": "/c"]).home.path == "/b")
        #expect(Configuration.home(flag: nil, environment: ["PARLEY_HOME": "/b"]).origin == .environment("PARLEY_HOME"))
        #expect(Configuration.home(flag: nil, environment: ["HOME": "/c"]).home.path == "/c/.parley")
        #expect(Configuration.home(flag: nil, environment: ["HOME": "/c"]).origin == .builtIn)
    }

    /// Each setting, as config.toml writes it, as its environment variable writes it, and the value both mean.
    static let everySetting: [(key: String, toml: String, variable: String, text: String, value: SettingValue)] = [
        ("bucket.gzip", "[bucket]\ngzip = true", "PARLEY_BUCKET_GZIP", "yes", .boolean(true)),
        ("bucket.retention", "[bucket]\nretention = \"governance:30\"", "PARLEY_BUCKET_RETENTION", "GOVERNANCE:30", .retention(.governance, days: 30)),
        ("sync.interval", "[sync]\ninterval = 0.25", "PARLEY_SYNC_INTERVAL", "0.25", .seconds(0.25)),
        ("sync.flush_interval", "[sync]\nflush_interval = 0", "PARLEY_SYNC_FLUSH_INTERVAL", "0", .seconds(0)),
        ("node.api_host", "[node]\napi_host = \"::1\"", "PARLEY_NODE_API_HOST", "::1", .text("::1")),
        ("node.api_port", "[node]\napi_port = 8080", "PARLEY_NODE_API_PORT", "8080", .integer(8080)),
        ("node.log_level", "[node]\nlog_level = \"debug\"", "PARLEY_NODE_LOG_LEVEL", "debug", .text("debug")),
    ]

    @Test(arguments: everySetting.indices)
    func `every setting is read from config.toml and from its environment variable`(index: Int) throws {
        let example = Self.everySetting[index]
        let setting = try #require(Setting.all.first { $0.key == example.key })
        #expect(setting.environmentVariable == example.variable)
        let fromFile = try Configuration.resolve(home: try home("file", config: example.toml + "\n"), environment: [:])
        #expect(fromFile[setting] == example.value)
        let fromEnvironment = try Configuration.resolve(home: try home("environment"), environment: [example.variable: example.text])
        #expect(fromEnvironment[setting] == example.value)
        #expect(fromEnvironment.origin(of: setting) == .environment(example.variable))
    }

    @Test func `the settings' defaults are the documented ones`() throws {
        let configuration = try Configuration.resolve(home: try home(), environment: [:])
        #expect(configuration[.bucketGzip] == .boolean(false))
        #expect(configuration[.bucketRetention] == .unset)
        #expect(configuration.syncInterval == 1)
        #expect(configuration.syncFlushInterval == 2)
        #expect(configuration[.nodeAPIHost] == .text("127.0.0.1"))
        #expect(configuration[.nodeAPIPort] == .integer(0))
        #expect(configuration[.nodeLogLevel] == .text("info"))
        #expect(configuration.bucketSettings.retention == nil && !configuration.bucketSettings.gzip)
    }

    @Test func `bucket settings reach the bucket transport's settings`() throws {
        let home = try home(config: "[bucket]\ngzip = true\nretention = \"compliance:7\"\n")
        let settings = try Configuration.resolve(home: home, environment: [:]).bucketSettings
        #expect(settings.gzip)
        #expect(settings.retention == Retention(mode: .compliance, days: 7))
    }

    // MARK: Bad values

    /// config.toml texts that are refused, with what the error must say after the file's path.
    static let badFiles: [(config: String, message: String)] = [
        ("[sync\ninterval = 1\n", ", line 1: is not valid TOML: "),
        ("[bucket]\ngzipp = true\n", ", line 2: unknown key bucket.gzipp; did you mean bucket.gzip?"),
        ("[bukket]\ngzip = true\n", ", line 1: unknown key bukket; did you mean bucket?"),
        ("gzip = true\n", ", line 1: unknown key gzip; did you mean bucket.gzip?"),
        ("[sync]\nspeed = 3\n", ", line 2: unknown key sync.speed; the keys of [sync] are interval, flush_interval"),
        ("[mail]\nfrom = \"x\"\n", ", line 1: unknown key mail; the sections are [bucket], [sync], [node]"),
        ("[sync]\ninterval = \"5s\"\n", ", line 2: sync.interval must be a number of seconds above 0, at most 86400; it is the string \"5s\""),
        ("[sync]\ninterval = 0\n", ", line 2: sync.interval must be above 0 seconds; it is the integer 0"),
        ("[sync]\nflush_interval = 1e9\n", ", line 2: sync.flush_interval must be at most 86400 seconds (a day); it is the number 1000000000.0"),
        ("[node]\napi_port = 70000\n", ", line 2: node.api_port must be a port number from 0 to 65535; it is the integer 70000"),
        ("[node]\napi_port = 80.0\n", ", line 2: node.api_port must be a port number from 0 to 65535 (0: any free port); it is the number 80.0"),
        (
            "[node]\nlog_level = \"loud\"\n",
            ", line 2: node.log_level must be one of trace, debug, info, notice, warning, error, critical; it is the string \"loud\""
        ),
        ("[node]\napi_host = \"a b\"\n", ", line 2: node.api_host must be an IP address or a host name; it is the string \"a b\""),
        ("[bucket]\ngzip = \"yes\"\n", ", line 2: bucket.gzip must be true or false; it is the string \"yes\""),
        (
            "[bucket]\nretention = \"forever\"\n",
            ", line 2: bucket.retention must be governance:DAYS or compliance:DAYS (DAYS a whole number above 0), or none; it is the string \"forever\""
        ),
        ("sync = 5\n", ", line 1: sync must be a table (a [sync] section), not the integer 5"),
        ("bucket = { gzip = true, gzp = 1 }\n", ", line 1: unknown key bucket.gzp; did you mean bucket.gzip?"),
        ("home = \"/elsewhere\"\n", ", line 1: home: the home cannot be set in config.toml, which is found in it; use --home or PARLEY_HOME"),
        ("[bucket]\naws_secret_access_key = \"x\"\n", ", line 2: bucket.aws_secret_access_key looks like a secret, and config.toml holds none"),
        ("x = " + String(repeating: "[", count: 60_000) + "\n", ", line 1: is not valid TOML: "),
    ]

    @Test(arguments: badFiles.indices)
    func `a bad config.toml is refused naming the file, the line and the key`(index: Int) throws {
        let example = Self.badFiles[index]
        let home = try home(config: example.config)
        let error = try failure(home)
        #expect(error.code == .invalidConfiguration)
        #expect(error.message.hasPrefix(home.configPath + example.message), "\(error.message)")
        #expect(error.remedy == "Correct or remove what is named; `parley config show --help` lists every setting.")
    }

    @Test func `every problem of a file is named at once`() throws {
        let home = try home(config: "[sync]\ninterval = -1\nflush = 3\n")
        let error = try failure(home)
        #expect(error.message == "\(home.configPath) has 2 problems:")
        #expect(
            error.details == [
                "line 3: unknown key sync.flush; did you mean sync.flush_interval?", "line 2: sync.interval must be above 0 seconds; it is the integer -1",
            ])
    }

    @Test func `a config.toml that is too large, not UTF-8, holds a NUL or is no regular file is refused without being read`() throws {
        let home = try home()
        let cases: [(bytes: [UInt8]?, message: String)] = [
            (Array(repeating: UInt8(ascii: "#"), count: 100_000), " holds 100000 bytes; a configuration file is at most 64 KiB."),
            ([0x5B, 0xFF, 0x5D], " is not UTF-8 text."),
            (Array("[sync]\ninterval = 1\0\n".utf8), ", line 2: holds a NUL character."),
            (nil, " is not a regular file."),
        ]
        for (bytes, message) in cases {
            try? FileManager.default.removeItem(atPath: home.configPath)
            if let bytes {
                try Data(bytes).write(to: URL(fileURLWithPath: home.configPath))
            } else {
                try FileManager.default.createDirectory(atPath: home.configPath, withIntermediateDirectories: false)
            }
            let error = try failure(home)
            #expect(error.message == home.configPath + message)
        }
        // A FIFO in its place would block a plain read until someone wrote to it.
        try FileManager.default.removeItem(atPath: home.configPath)
        #expect(mkfifo(home.configPath, 0o600) == 0)
        #expect(try failure(home).message == home.configPath + " is not a regular file.")
    }

    @Test func `a wrong environment value is refused naming the variable`() throws {
        let home = try home(config: "[bucket]\ngzip = true\n")
        let cases: [(variable: String, value: String, message: String)] = [
            ("PARLEY_BUCKET_GZIP", "maybe", "PARLEY_BUCKET_GZIP must be true or false; it is \"maybe\"."),
            ("PARLEY_BUCKET_RETENTION", "governance:0", "PARLEY_BUCKET_RETENTION must keep files for at least 1 day; it is \"governance:0\"."),
            ("PARLEY_SYNC_INTERVAL", "nan", "PARLEY_SYNC_INTERVAL must be above 0 seconds; it is \"nan\"."),
            ("PARLEY_NODE_API_PORT", "-1", "PARLEY_NODE_API_PORT must be a port number from 0 to 65535; it is \"-1\"."),
        ]
        for (variable, value, message) in cases {
            let error = try failure(home, environment: [variable: value])
            #expect(error.code == .invalidConfiguration)
            #expect(error.message == message)
            #expect(error.remedy?.hasSuffix("or unset it (`unset \(variable)`).") == true, "\(error.remedy ?? "")")
        }
    }

    @Test func `a PARLEY_ variable one slip from a setting's is pointed out, other variables are not`() throws {
        let configuration = try Configuration.resolve(
            home: try home(), environment: ["PARLEY_BUCKET_GZP": "1", "PARLEY_TEST_S3_ENDPOINT": "http://x", "PARLEY_HOME": "/h"])
        #expect(configuration.misspelledVariables.map(\.variable) == ["PARLEY_BUCKET_GZP"])
        #expect(configuration.misspelledVariables.first?.near == ["PARLEY_BUCKET_GZIP"])
    }
}
