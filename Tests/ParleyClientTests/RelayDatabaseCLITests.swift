import Foundation
import ParleyTesting
import Testing

/// `parley serve --database`: relays of one deployment on the PostgreSQL test server, with homes using the CLI.
@Suite(.enabled(if: PostgresTestServer.isAvailable, "needs the PostgreSQL test server (scripts/postgres-test-server)"))
struct RelayDatabaseCLITests {
    typealias RelayProcess = RelayCLITests.RelayProcess

    @Test func `a relay killed with kill -9 is replaced by another of its deployment, and every acknowledged message arrives`() throws {
        let directory = TemporaryDirectory()
        let database = try PostgresTestServer.newDatabase()
        let (folderA, folderB) = (TemporaryDirectory(), TemporaryDirectory())
        let relayA = try RelayProcess(directory: folderA, extra: ["--database", database])
        defer { relayA.stop() }
        let relayB = try RelayProcess(directory: folderB, extra: ["--database", database])
        defer { relayB.stop() }
        let cli = RelayCLITests()
        // Accounts live in the database: registered at A, Alice logs in at B with the same password; Bob only knows B.
        let alice = try cli.home("alice", directory, relay: relayA)
        let login = try alice.run(["account", "login", "--relay", relayB.url], environment: RelayCLITests.password)
        try #require(login.status == 0, "\(login.stderr)")
        let bob = try cli.home("bob", directory, relay: relayB)
        try #require(try alice.run(["room", "create", "team", "--relay", relayA.url]).status == 0)
        let invite = try alice.run(["room", "invite", "team", "bob", "--key", try cli.key(of: bob)])
        try #require(invite.status == 0, "\(invite.stderr)")
        let code = try #require(invite.stdout.split(separator: "\n").first { $0.hasPrefix("invite code: ") }).dropFirst("invite code: ".count)
        // The code names relay A; Bob reaches the room through B, which holds it too.
        let joined = try bob.run(["room", "join", String(code), "--relay", relayB.url])
        try #require(joined.status == 0, "\(joined.stderr)")

        for index in 1...6 { #expect(try alice.run(["send", "team", "message \(index)"]).status == 0) }
        relayA.stop(SIGKILL)
        // With A gone, a send is kept for later, and says so.
        let queued = try alice.run(["send", "team", "message 7"])
        #expect(queued.status == 0 && queued.stderr.contains("http://127.0.0.1:\(relayA.port)"), "\(queued.stderr)")
        let moved = try alice.run(["room", "relay", "team", relayB.url, "--replace"])
        #expect(moved.status == 0, "\(moved.stderr)")
        for index in 8...10 { #expect(try alice.run(["send", "team", "message \(index)"]).status == 0) }

        let synced = try bob.run(["sync"])
        #expect(synced.status == 0, "\(synced.stderr)")
        let log = try bob.run(["log", "team"]).stdout
        for index in 1...10 { #expect(log.contains("alice: message \(index)  "), "message \(index) is missing from \(log)") }
    }
}
