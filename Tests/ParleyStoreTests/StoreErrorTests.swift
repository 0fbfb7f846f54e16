import Foundation
import GRDB
import ParleyCore
import ParleyStore
import ParleyTesting
import Testing

/// The store's errors say what kind of failure they are: the room's refusal, a room it does not hold, SQLite's
/// failures by their kind.
@Suite struct StoreErrorTests {
    let directory = TemporaryDirectory()

    func makeStore() throws -> EventStore { try EventStore(path: directory.file("parley.sqlite")) }

    @Test func `previewing an event of a room the store does not hold fails as unknown_room`() throws {
        let store = try makeStore()
        var alice = TestDevice("alice")
        let message = alice.message("nowhere", "hello", at: 1_000)
        #expect(throws: StoreError(.unknownRoom, "This node holds no room nowhere.", remedy: "Create it, or import its events first.")) {
            try store.preview(message)
        }
    }

    @Test func `an own event the room refuses fails as not_allowed and stores nothing`() throws {
        let store = try makeStore()
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        _ = try store.ingest(lines: alice.create("r", at: 1_000).map(\.wire), receivedMs: 1_000)
        let uninvited = bob.join("r", at: 2_000)
        let error = try #require(throws: StoreError.self) { try store.ingest(events: [uninvited], receivedMs: 2_000, requireAccepted: true) }
        #expect(error.code == .notAllowed)
        #expect(error.message.hasPrefix("The room refuses this: "), "\(error.message)")
        #expect(try store.chainHead(roomID: "r", senderKey: bob.publicKey) == nil)
    }

    /// SQLite's result codes, and the code and the start of the message each becomes.
    static let sqliteFailures: [(code: ResultCode, storeCode: StoreError.Code, message: String)] = [
        (.SQLITE_CORRUPT, .damaged, "The store /s/parley.sqlite is damaged: SQLite says "),
        (.SQLITE_NOTADB, .damaged, "The store /s/parley.sqlite is damaged: SQLite says "),
        (.SQLITE_FULL, .io, "The disk holding the store /s/parley.sqlite is full: nothing of this was stored"),
        (.SQLITE_CANTOPEN, .io, "Cannot open the store /s/parley.sqlite: SQLite says "),
        (.SQLITE_BUSY, .busy, "The store /s/parley.sqlite stayed locked by another process: SQLite says "),
        (.SQLITE_LOCKED, .busy, "The store /s/parley.sqlite stayed locked by another process: SQLite says "),
        (.SQLITE_TOOBIG, .tooLarge, "Too large for the store /s/parley.sqlite: SQLite says "),
        (.SQLITE_MISUSE, .internalError, "The store /s/parley.sqlite failed: SQLite says "),
    ]

    @Test(arguments: sqliteFailures.indices)
    func `SQLite's failures become store errors of their kind`(index: Int) throws {
        let (resultCode, storeCode, message) = Self.sqliteFailures[index]
        let error = try #require(StoreError(DatabaseError(resultCode: resultCode, message: "x"), path: "/s/parley.sqlite"))
        #expect(error.code == storeCode)
        #expect(error.message.hasPrefix(message), "\(error.message)")
        #expect(StoreError(CancellationError(), path: "/s/parley.sqlite") == nil)
    }
}
