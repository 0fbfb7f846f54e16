import ParleyCore

/// What a transport may ask of the node it serves: its own rooms and progress, this device's events it has not
/// confirmed yet, and a place to hand over what it received. A host is made for one transport, so every call is
/// about that transport's rows; the node's store keeps them, in tables no transport names.
///
/// A transport never signs, never judges an event against room state, and never reads the store: it moves events
/// and says where they came from. Verifying a line is Core's (``VerifiedEvent/verifyInParallel(_:)``), so a transport
/// may verify what it received on its own threads before handing it over; the node judges it again as it stores it.
public protocol TransportHost: Sendable {
    /// The transport this host serves.
    var transport: TransportName { get }
    /// This device's user id.
    var userID: String { get }
    /// This device's signing key, as events carry it (base64).
    var deviceKey: String { get }
    /// The node's clock, in Unix milliseconds.
    func now() -> Int64

    // MARK: The transport's rooms and progress

    /// The room as this transport reaches it, with its cursor; `nil` when the transport does not carry the room.
    func room(_ roomID: String) throws -> TransportRoom?
    /// Changes the room's cursor atomically: `update` gets the stored cursor and returns the new one.
    func updateCursor(roomID: String, _ update: ([UInt8]) -> [UInt8]) throws
    /// Which of `names` (objects, files, batches) the transport has recorded as received in the room.
    func receivedNames(roomID: String, among names: [String]) throws -> Set<String>
    /// Records objects as received, once the events they brought are stored.
    func recordReceived(roomID: String, _ objects: [ReceivedObject], seenMs: Int64) throws
    /// Objects whose reading failed for a reason that may pass, by name.
    func readFailures(roomID: String) throws -> [String: ReadFailureRecord]
    func saveReadFailure(roomID: String, name: String, _ failure: ReadFailureRecord) throws
    /// Every object recorded as received in the room whose name begins with `prefix`, by name (bytewise).
    func receivedObjects(roomID: String, prefix: String) throws -> [ReceivedObject]

    // MARK: The outbox: this device's events the transport has not confirmed

    func outboxStatus(roomID: String) throws -> OutboxStatus
    /// Units claimed earlier but not confirmed (a failed attempt, a killed process), oldest first: sent again as they are.
    func unconfirmedOutbox(roomID: String) throws -> [OutboxFile]
    /// Claims the next unit: `assemble` gets this device's events after the outbox watermark (at most `limit`, in seq
    /// order) and whether a name is taken, and returns the unit's name, how many events it holds and its bytes; the
    /// claim is recorded in the same transaction, so nothing else claims those events.
    /// - Returns: the claimed unit, or `nil` when nothing is pending.
    func claimOutbox(
        roomID: String, limit: Int, assemble: ([PendingEvent], (String) throws -> Bool) throws -> (name: String, events: Int, content: [UInt8])?
    ) throws -> OutboxFile?
    /// Renames an unconfirmed unit (another writer took its name).
    /// - Returns: `false` when the name is taken here too.
    func renameOutbox(id: Int64, roomID: String, name: String) throws -> Bool
    /// Confirms a unit, received by the transport as `object`: its events are in transit. The node announces them as
    /// sent.
    func confirmOutbox(_ file: OutboxFile, object: ReceivedObject) throws
    /// Counts this device's events in the room as sent, without a unit: the transport read them back from elsewhere.
    func markAllSent(roomID: String) throws

    // MARK: Blocks

    /// The blocks of the files that this device's events with seqs `seqs` in the room share, each file's manifests
    /// before its data: what a transport puts where readers find them before it sends the events.
    /// - Returns: the blocks, and how many of them this node does not hold (they cannot be sent; readers will find
    ///   the file incomplete).
    func fileBlocks(roomID: String, seqs: ClosedRange<Int64>) throws -> (blocks: [BlockRef], missing: Int)
    /// A block this node holds, checked against its id; `nil` when it holds none.
    func block(_ id: BlockID) throws -> [UInt8]?
    /// The blocks this node can list (from the manifests it holds) of every file that an accepted, unredacted message
    /// of the room shares: those it gives a peer of the room that asks (docs/PROTOCOL.md §17.6).
    func roomBlocks(roomID: String) throws -> Set<BlockID>
    /// The file holding a block this node holds (synced, never changed), for a store that can link it; `nil` when it
    /// holds none.
    func blockFile(_ id: BlockID) -> String?
    /// Blocks of redacted files that this transport should delete in the room, where it can.
    func blockDeletions(roomID: String) throws -> [BlockRef]
    /// Notes that the transport deleted `ids` in the room, or cannot and will not try again.
    func blockDeletionsDone(roomID: String, ids: [BlockID]) throws

    // MARK: Events

    /// The room's founding events (its create and the creator's join) when this device created the room; empty
    /// otherwise.
    func foundingEvents(roomID: String) throws -> [VerifiedEvent]
    /// Whether the node holds the room's create event (a room it joined is pinned to it).
    func holdsCreate(roomID: String) throws -> Bool
    /// Whether this device has events of its own in the room.
    func holdsOwnEvents(roomID: String) throws -> Bool
    /// Whether some chain of the room has a gap: events wait for a predecessor.
    func hasGap(roomID: String) throws -> Bool
    /// Stores verified events received from elsewhere, in one transaction: `chunks` hands them over a batch at a time
    /// (nil at the end), with the lines they were read from.
    /// - Returns: an outcome per event, in order.
    func ingest(roomID: String, chunks: () throws -> ([Result<VerifiedEvent, EventError>], [[UInt8]])?, receivedMs: Int64) throws -> IngestReport
    /// Stores the room's founding events from where the transport found them; they pin the room's create.
    func pin(roomID: String, founding: [VerifiedEvent]) throws -> IngestReport
    /// Keeps a refusal the transport made on its own (an object that is not events) in the node's log of refused input.
    func logRejection(roomID: String, reason: String, receivedMs: Int64) throws
    /// Why events just stored could not be opened, for those that never will be (by event id).
    func openingFailures(eventIDs: [String]) throws -> [String: String]
    /// The room's chained events dated `fromMs` … `throughMs` (accepted or not: every link of every chain), in the
    /// room's order, as the node holds them (stripped where redacted).
    func events(roomID: String, fromMs: Int64, throughMs: Int64) throws -> [VerifiedEvent]
    /// The newest seq the node holds of each device chain of the room (chained events, accepted or not), by signing key.
    func chainHeads(roomID: String) throws -> [String: Int64]
    /// The room's chained events after `heads` (per signing key, the newest seq the other side holds; chains it does not
    /// name from their start), in the room's order, at most `limit`; and the heads to continue from (`nil`: no more).
    func chainEvents(roomID: String, after heads: [String: Int64], limit: Int) throws -> (events: [ChainedWire], next: [String: Int64]?)
    /// The room's chained events (accepted or not) as set reconciliation sees them (docs/PROTOCOL.md §17.3), stored
    /// after the store's row `afterRow`; and the last row read, to continue from.
    func reconciliationItems(roomID: String, afterRow: Int64) throws -> (items: [ReconciliationItem], lastRow: Int64)
    /// The hash of the room's create event, as events carry it; `nil` when the node does not hold it. Only holders of the
    /// room know it: LAN announcements' tags are keyed by it (docs/PROTOCOL.md §17.9).
    func createEventHash(roomID: String) throws -> String?
    /// The key of a pre-shared-key room (docs/PROTOCOL.md §14.6), its 32 bytes; `nil` for a room of another kind.
    func preSharedRoomKey(roomID: String) throws -> [UInt8]?
    /// The room's events held back for a predecessor, as reconciliation items: held, though not stored yet.
    func heldBackItems(roomID: String) throws -> [ReconciliationItem]
    /// The wire bytes of the room's chained events among `items`, in the order given; those the node does not hold are
    /// left out.
    func eventWires(roomID: String, items: [ReconciliationItem]) throws -> [[UInt8]]
    /// Whether the room's state binds `signingKey` to a user: the key of a device that joined the room, now or before
    /// (a key owner, docs/PROTOCOL.md §8).
    func isKeyOwner(roomID: String, signingKey: String) throws -> Bool
    /// Whether `signingKey` is a device of a member who joined the room, or a device an invite of it names, now: who
    /// may sync the room with this node directly (docs/PROTOCOL.md §17.1).
    func isMemberDevice(roomID: String, signingKey: String) throws -> Bool
    /// Signs `input` with this device's key, when it is an input a transport may have signed: one that begins with a
    /// transport's own prefix (an archive manifest's `parley.archive.v1` and LF, docs/PROTOCOL.md §13.9.3; a peer
    /// datagram's `parley.peer.v1` and LF, §17.2). Anything
    /// else, an event above all, is refused: the device key signs events only through the node.
    /// - Returns: the Ed25519 signature (64 bytes).
    /// - Throws: ``TransportError`` `invalid_argument` for an input of no transport's.
    func sign(_ input: [UInt8]) throws -> [UInt8]
    /// Tells the node's listeners that a sync of the room accepted `accepted` events and found `problems`.
    func synced(roomID: String, accepted: Int, problems: Int)

    /// Waits for the node's publishing lock: while it is held, nothing is signed on this home. A transport takes it to
    /// read this device's own events back (a restored store), so no seq is signed twice.
    /// - Returns: the lock, released when the value is dropped.
    func lockForPublishing() async throws -> any Sendable
}

extension TransportHost {
    /// Stores one batch of verified events with the lines they were read from, in one transaction.
    public func ingest(roomID: String, verified: [Result<VerifiedEvent, EventError>], lines: [[UInt8]], receivedMs: Int64) throws -> IngestReport {
        var handedOver = false
        return try ingest(
            roomID: roomID,
            chunks: {
                defer { handedOver = true }
                return handedOver ? nil : (verified, lines)
            }, receivedMs: receivedMs)
    }
}

/// A transport's failure that is not its medium's: a room it does not carry, a request that cannot be met. `code` is
/// one of the node's error codes (`unknown_room`, `invalid_argument`), so it reaches a user unchanged.
public struct TransportError: Error, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String
    public var remedy: String?

    public init(code: String, _ message: String, remedy: String? = nil) {
        self.code = code
        self.message = message
        self.remedy = remedy
    }

    public static let unknownRoom = "unknown_room"
    public static let invalidArgument = "invalid_argument"

    public var description: String { message }
}
