import Foundation
import ParleyCore
import ParleyTesting
import Testing

/// The command line itself: global options wherever they stand, unknown names, the version, counts.
@Suite struct CommandLineCLITests {
    @Test func `--home is taken before, between and after the names of nested commands`() throws {
        let directory = TemporaryDirectory()
        let home = directory.file("n")
        let bucket = "file://\(directory.file("bucket"))"
        try #require(try ParleyCommand.run(["init", "--home", home, "--user", "alice"]).status == 0)
        try #require(try ParleyCommand.run(["--home", home, "room", "create", "r", "--bucket", bucket]).status == 0)
        for arguments in [
            ["--home", home, "room", "list"], ["room", "--home", home, "list"], ["room", "list", "--home", home], ["room", "list", "--home=\(home)"],
            ["--home", home, "bucket", "verify", bucket], ["bucket", "--home", home, "verify", bucket], ["bucket", "verify", bucket, "--home", home],
            ["--home", home, "dm", "list"], ["dm", "--home", home, "list"], ["--home", home, "device", "list"], ["device", "list", "--home", home],
        ] {
            let result = try ParleyCommand.run(arguments, environment: ["PARLEY_HOME": directory.file("elsewhere")])
            #expect(result.status == 0, "\(arguments.joined(separator: " ")): \(result.stderr)")
            if arguments.contains("room") { #expect(result.stdout == "r\n", "\(arguments.joined(separator: " ")) used another home") }
        }
    }

    @Test func `an unknown command is named, with the nearest ones, and --home before it is not blamed`() throws {
        let home = TemporaryDirectory().file("n")
        let gossip = try ParleyCommand.run(["--home", home, "gossip"])
        #expect(gossip.status == 64)
        #expect(gossip.stderr.contains("Unknown command 'gossip' for 'parley'. The commands are: init, whoami,"), "\(gossip.stderr)")
        #expect(!gossip.stderr.contains("Unknown option"))
        let typo = try ParleyCommand.run(["--home", home, "sned", "r", "hi"])
        #expect(typo.status == 64 && typo.stderr.contains("Unknown command 'sned' for 'parley'. Did you mean 'send'?"), "\(typo.stderr)")
        let nested = try ParleyCommand.run(["room", "craete", "r", "--home", home])
        #expect(nested.status == 64 && nested.stderr.contains("Unknown command 'craete' for 'parley room'. Did you mean 'create'? See 'parley room --help'."))
    }

    @Test func `an unknown option gets the nearest one`() throws {
        let result = try ParleyCommand.run(["log", "r", "--limt", "5", "--home", TemporaryDirectory().file("n")])
        #expect(result.status == 64)
        #expect(result.stderr.contains("Unknown option '--limt'. Did you mean '--limit'?"), "\(result.stderr)")
    }

    @Test func `--version prints the release and the protocol version`() throws {
        let result = try ParleyCommand.run(["--version"])
        #expect(result.status == 0)
        #expect(result.stdout.hasPrefix("parley ") && result.stdout.hasSuffix(" (protocol version 1)\n"), "\(result.stdout)")
    }

    @Test func `a zero or negative count or interval gets a clear error`() throws {
        let home = TemporaryDirectory().file("n")
        for (arguments, message) in [
            (["log", "r", "--limit", "-1"], "--limit must be at least 1; it was -1."), (["log", "r", "--limit", "0"], "--limit must be at least 1; it was 0."),
            (["search", "x", "--limit", "-5"], "--limit must be at least 1; it was -5."),
            (["rejected", "--limit", "0"], "--limit must be at least 1; it was 0."),
            (["sync", "--watch", "--interval", "-1"], "--interval must be above 0 seconds; it was -1.0."),
            (["sync", "--watch", "--flush-interval", "-2"], "--flush-interval must be at least 0 seconds; it was -2.0."),
        ] {
            let result = try ParleyCommand.run(arguments + ["--home", home])
            #expect(result.status == 64, "\(arguments)")
            #expect(result.stderr.contains("error: \(message)"), "\(arguments): \(result.stderr)")
        }
    }
}
