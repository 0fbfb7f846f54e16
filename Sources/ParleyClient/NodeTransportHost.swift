import ParleyBucket
import ParleyCore
import ParleyStore
import ParleySync

/// A node as one transport sees it (``TransportHost``): the transport's rows of the store's transport tables, this
/// device's outbox, and the store's ingest, with the node's feed told of what was sent and received.
struct NodeTransportHost: TransportHost {
    let node: Node
    let transport: TransportName

    var userID: String { node.identity.userID }
    var deviceKey: String { node.identity.signingKeyBase64 }
    func now() -> Int64 { node.clock() }

    func room(_ roomID: String) throws -> TransportRoom? { try node.store.transportRoom(transport, roomID: roomID) }

    func updateCursor(roomID: String, _ update: ([UInt8]) -> [UInt8]) throws { try node.store.updateCursor(transport, roomID: roomID, update) }

    func receivedNames(roomID: String, among names: [String]) throws -> Set<String> {
        try node.store.receivedNames(transport, roomID: roomID, among: names)
    }

    func recordReceived(roomID: String, _ objects: [ReceivedObject], seenMs: Int64) throws {
        guard !objects.isEmpty else { return }
        try node.store.recordReceived(transport, roomID: roomID, objects, seenMs: seenMs)
    }

    func readFailures(roomID: String) throws -> [String: ReadFailureRecord] { try node.store.readFailures(transport, roomID: roomID) }

    func saveReadFailure(roomID: String, name: String, _ failure: ReadFailureRecord) throws {
        try node.store.saveReadFailure(transport, roomID: roomID, name: name, failure)
    }

    func receivedObjects(roomID: String, prefix: String) throws -> [ReceivedObject] {
        try node.store.receivedObjects(transport, roomID: roomID, prefix: prefix)
    }

    func outboxStatus(roomID: String) throws -> OutboxStatus { try node.store.outboxStatus(transport, roomID: roomID, senderKey: deviceKey) }

    func unconfirmedOutbox(roomID: String) throws -> [OutboxFile] { try node.store.unconfirmedOutbox(transport, roomID: roomID) }

    func blockDeletions(roomID: String) throws -> [BlockRef] { try node.store.blockDeletions(transport, roomID: roomID) }

    func blockDeletionsDone(roomID: String, ids: [BlockID]) throws { try node.store.blockDeletionsDone(transport, roomID: roomID, ids: ids) }

    func claimOutbox(
        roomID: String, limit: Int, assemble: ([PendingEvent], (String) throws -> Bool) throws -> (name: String, events: Int, content: [UInt8])?
    ) throws -> OutboxFile? {
        try node.store.claimOutbox(transport, roomID: roomID, senderKey: deviceKey, limit: limit, createdMs: now(), assemble: assemble)
    }

    func renameOutbox(id: Int64, roomID: String, name: String) throws -> Bool { try node.store.renameOutbox(transport, id: id, roomID: roomID, name: name) }

    func confirmOutbox(_ file: OutboxFile, object: ReceivedObject) throws {
        try node.store.confirmOutbox(transport, id: file.id, roomID: file.roomID, object: object, confirmedMs: now())
        if node.feed.subscriberCount > 0 {
            let sent = try node.store.eventIDs(roomID: file.roomID, senderKey: deviceKey, seqs: file.firstSeq...file.lastSeq)
            node.feed.post(.sent(roomID: file.roomID, eventIDs: sent, transport: transport.rawValue))
        }
    }

    func fileBlocks(roomID: String, seqs: ClosedRange<Int64>) throws -> (blocks: [BlockRef], missing: Int) {
        var all: [BlockRef] = []
        var seen: Set<BlockID> = []
        var missing = 0
        for file in try node.store.fileAttachments(roomID: roomID, senderKey: deviceKey, seqs: seqs) {
            let (blocks, unheld) = try node.localBlocks(of: file.reference)
            missing += unheld
            all += blocks.filter { seen.insert($0.id).inserted }
        }
        return (all, missing)
    }

    func block(_ id: BlockID) throws -> [UInt8]? { try node.blocks.read(id) }

    func roomBlocks(roomID: String) throws -> Set<BlockID> {
        var all: Set<BlockID> = []
        for file in try node.store.sharedFiles(roomID: roomID) { all.formUnion(try node.localBlocks(of: file.reference).blocks.map(\.id)) }
        return all
    }

    func blockFile(_ id: BlockID) -> String? { node.blocks.contains(id) ? node.blocks.file(of: id) : nil }

    func chainHeads(roomID: String) throws -> [String: Int64] { try node.store.chainHeads(roomID: roomID) }

    func chainEvents(roomID: String, after heads: [String: Int64], limit: Int) throws -> (events: [ChainedWire], next: [String: Int64]?) {
        try node.store.chainEvents(roomID: roomID, after: heads, limit: limit)
    }

    func markAllSent(roomID: String) throws { try node.store.markSent(transport, roomID: roomID, senderKey: deviceKey, nowMs: now()) }

    func foundingEvents(roomID: String) throws -> [VerifiedEvent] {
        guard let creation = try node.store.roomState(roomID: roomID)?.creation, creation.creatorKey == deviceKey else { return [] }
        var events: [VerifiedEvent] = []
        try node.store.forEachEvent(roomID: roomID) { wire in
            guard events.count < 2, let event = try? VerifiedEvent(parsing: wire), event.event.senderKey == creation.creatorKey else { return }
            if event.event.type == EventType.create || (event.event.type == EventType.member && events.count == 1) { events.append(event) }
        }
        return events
    }

    func holdsCreate(roomID: String) throws -> Bool { try node.store.roomState(roomID: roomID)?.creation != nil }

    func holdsOwnEvents(roomID: String) throws -> Bool { try node.store.chainHead(roomID: roomID, senderKey: deviceKey) != nil }

    func hasGap(roomID: String) throws -> Bool { try node.store.heldBackCount(roomID: roomID) > 0 }

    func ingest(roomID: String, chunks: () throws -> ([Result<VerifiedEvent, EventError>], [[UInt8]])?, receivedMs: Int64) throws -> IngestReport {
        try node.store.ingest(chunks: chunks, receivedMs: receivedMs)
    }

    func pin(roomID: String, founding: [VerifiedEvent]) throws -> IngestReport { try node.store.ingest(events: founding, receivedMs: now()) }

    func logRejection(roomID: String, reason: String, receivedMs: Int64) throws {
        try node.store.logRejection(roomID: roomID, reason: reason, receivedMs: receivedMs)
    }

    func openingFailures(eventIDs: [String]) throws -> [String: String] {
        try node.store.openingOutcomes(eventIDs: eventIDs).compactMapValues { outcome in
            if case .failed(let reason) = outcome { return reason }
            return nil
        }
    }

    func events(roomID: String, fromMs: Int64, throughMs: Int64) throws -> [VerifiedEvent] {
        // Stored events verified when they came in; verified again here, since the store hands out bytes, not values.
        try VerifiedEvent.verifyInParallel(node.store.eventWires(roomID: roomID, fromMs: fromMs, throughMs: throughMs)).map { try $0.get() }
    }

    func reconciliationItems(roomID: String, afterRow: Int64) throws -> (items: [ReconciliationItem], lastRow: Int64) {
        try node.store.reconciliationItems(roomID: roomID, afterRow: afterRow)
    }

    func preSharedRoomKey(roomID: String) throws -> [UInt8]? {
        try node.store.preSharedSecret(roomID: roomID).map { RoomKey.preShared(secret: $0.secret, roomID: roomID).bytes }
    }

    func createEventHash(roomID: String) throws -> String? { try node.store.roomState(roomID: roomID)?.creation?.hash }

    func heldBackItems(roomID: String) throws -> [ReconciliationItem] { try node.store.heldBackItems(roomID: roomID) }

    func eventWires(roomID: String, items: [ReconciliationItem]) throws -> [[UInt8]] { try node.store.eventWires(roomID: roomID, items: items) }

    func isKeyOwner(roomID: String, signingKey: String) throws -> Bool {
        try node.store.roomState(roomID: roomID)?.keyOwners[signingKey] != nil
    }

    func isMemberDevice(roomID: String, signingKey: String) throws -> Bool {
        try node.store.roomState(roomID: roomID)?.isMemberDevice(signingKey) ?? false
    }

    func sign(_ input: [UInt8]) throws -> [UInt8] {
        // Only what no event's signing input can be (those are canonical JSON, beginning with `{`).
        guard input.starts(with: ArchiveManifest.signaturePrefix) || input.starts(with: PeerDatagram.signaturePrefix) else {
            throw TransportError(
                code: TransportError.invalidArgument, "A transport asked this device to sign something that is neither an archive manifest nor a peer datagram."
            )
        }
        return node.identity.signingKey.sign(input)
    }

    func synced(roomID: String, accepted: Int, problems: Int) {
        try? node.feed.catchUp()
        node.feed.post(.synced(roomID: roomID, transport: transport.rawValue, accepted: accepted, problems: problems))
    }

    func lockForPublishing() async throws -> any Sendable { try await node.home.lockForPublishingAsync() }
}
