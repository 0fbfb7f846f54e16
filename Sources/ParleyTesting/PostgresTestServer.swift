import Foundation

/// The PostgreSQL server `scripts/postgres-test-server` starts for the tests, found through the
/// `PARLEY_TEST_POSTGRES_*` environment variables the test script exports.
public enum PostgresTestServer {
    static let environment = ProcessInfo.processInfo.environment

    /// Whether the server is running. `scripts/test` always starts it, and fails if any test was skipped.
    public static var isAvailable: Bool {
        let running = environment["PARLEY_TEST_POSTGRES_URL"] != nil
        precondition(running || environment["PARLEY_REQUIRE_POSTGRES"] == nil, "PARLEY_REQUIRE_POSTGRES is set but no PostgreSQL test server is running")
        return running
    }

    /// A database of its own for one test, made now: its URL.
    public static func newDatabase() throws -> String {
        let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try run(["-c", "CREATE DATABASE \(name)"])
        return environment["PARLEY_TEST_POSTGRES_URL"]! + name
    }

    /// Stops the server, starts it, or restarts it (`pg_ctl`'s fast mode: connections are cut).
    public static func control(_ action: String) throws {
        let status = try Subprocess.spawn(environment["PARLEY_TEST_POSTGRES_CTL"]!, [action], stdout: .null, stderr: .null).wait()
        guard status == 0 else { throw PostgresTestError("pg_ctl \(action) exited with status \(status).") }
    }

    /// Runs psql on the server's maintenance database.
    static func run(_ arguments: [String]) throws {
        let status = try Subprocess.spawn(
            "/usr/bin/psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", environment["PARLEY_TEST_POSTGRES_URL"]! + "postgres"] + arguments, stdout: .null,
            stderr: .null
        ).wait()
        guard status == 0 else { throw PostgresTestError("psql \(arguments) exited with status \(status).") }
    }
}

struct PostgresTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
