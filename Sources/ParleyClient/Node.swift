import Foundation
import ParleyCore
import ParleyPeer
import ParleyStore
import ParleySync
import Synchronization

/// An event to sign: its type, content and parent.
public struct OutgoingEvent: Sendable {
    public var type: String
    public var content: JSONObject
    public var parentEventID: String?
    /// Set by the node in an encrypted room: the key the content is sealed with (docs/PROTOCOL.md §14.3).
    var sealedWith: RoomKey?

    public init(type: String, content: JSONObject, parentEventID: String? = nil) {
        self.type = type
        self.content = content
        self.parentEventID = parentEventID
    }

    /// A text message.
    public static func message(_ text: String, kind: MessageKind = .text) -> OutgoingEvent {
        OutgoingEvent(type: EventType.message, content: JSONObject(["msgtype": .string(kind.rawValue), "body": .string(text)]))
    }
}

/// One local Parley node: this device's identity and its store. Every UI (CLI, terminal, web) works through it.
public final class Node: Sendable {
    public let home: ParleyHome
    public let identity: Identity
    /// The store, for benchmarks and tools that set up fixtures (`@_spi(Tools) import ParleyClient`); a UI goes through
    /// `Node`'s methods, and `scripts/test` refuses `@_spi` in `Sources/parley`.
    @_spi(Tools) public let store: EventStore
    /// The blocks of files this node shared or fetched, each once.
    public let blocks: BlockStore
    /// The local clock, in Unix milliseconds; replaceable in tests.
    public let clock: @Sendable () -> Int64
    /// What happens in this node, for a UI: new events, what transports confirmed or failed to take, typing.
    public let feed: NodeFeed
    /// Per room: the state version at which the current epoch was last found to reach every device, and its key id.
    /// Checking that costs O(members); a message in an unchanged room must not pay it again.
    let completeEpochs = Mutex<[String: (version: Int64, keyID: String)]>([:])
    /// Single events published at once by several threads, stored together.
    let coalescer = PublishCoalescer()
    /// The peer transport this node runs, once one runs: for the metrics, and to fetch peer rooms' blocks through.
    let runningPeers = Mutex<PeerTransport?>(nil)
    /// The LAN discovery this node runs, once it runs it: peers found there serve blocks too.
    let runningDiscovery = Mutex<PeerDiscovery?>(nil)

    /// Opens the node under `home`.
    /// - Parameter creatingStore: start an empty store if there is none. Only for a home whose store is known to be
    ///   gone: a device that signs with an empty store may sign a seq it already used (`init` creates the store with
    ///   the identity).
    /// - Throws: ``ClientError`` when there is no identity yet, or the store is missing, damaged or cannot be opened.
    public init(home: ParleyHome, clock: @escaping @Sendable () -> Int64 = Node.systemClock, creatingStore: Bool = false) throws {
        self.home = home
        self.clock = clock
        identity = try Identity.load(home: home)
        if !FileManager.default.fileExists(atPath: home.storePath) {
            guard creatingStore else { throw ClientError.missingStore(home: home, userID: identity.userID) }
            try home.createStoreFile()
        }
        do {
            let exchangeKey = identity.exchangeKey
            store = try EventStore(
                path: home.storePath,
                keyOpener: KeyOpener(
                    device: identity.signingKeyBase64,
                    open: { delivery in
                        Result { () throws(EncryptionError) -> RoomKey in
                            try KeySeal.open(
                                delivery.sealed, keyID: delivery.content.keyID, roomID: delivery.event.roomID,
                                senderKey: delivery.event.senderKey, privateKey: exchangeKey)
                        }
                    },
                    openForward: { event, forward in
                        Result { () throws(EncryptionError) -> [ForwardedKey] in
                            try ForwardSeal.open(forward, roomID: event.roomID, senderKey: event.senderKey, privateKey: exchangeKey)
                        }
                    }))
            feed = try NodeFeed(store: store)
            blocks = try BlockStore(path: home.blocksPath)
        } catch {
            throw ClientError(describing: error, home: home)
        }
        // Homes made before the record existed get it at once, before their store can be lost.
        if !FileManager.default.fileExists(atPath: home.bucketRoomsPath) { _ = try? recordBucketRooms() }
    }

    public static let systemClock: @Sendable () -> Int64 = { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    // MARK: Publishing

    /// Signs the next event of this device's chain in `roomID`, checks that the room would accept it, and stores it.
    ///
    /// Events that other threads publish in the room meanwhile are stored in the same transaction (group commit), each
    /// still with its own verdict.
    /// - Returns: the stored event.
    /// - Throws: ``ClientError`` with the room's reason when it would be refused; nothing is signed into the chain then.
    @discardableResult
    public func publish(roomID: String, type: String, content: JSONObject, parentEventID: String? = nil) throws -> VerifiedEvent {
        try coalescer.publish(OutgoingEvent(type: type, content: content, parentEventID: parentEventID), roomID: roomID) { events in
            try publish(roomID: roomID, events)
        }
    }

    /// Signs and stores several events of this device's chain in one transaction: all of them, or (if the room
    /// would refuse any) none. For a client that sends in bursts; one event at a time is ``publish(roomID:type:content:parentEventID:)``.
    /// In an encrypted room, content is sealed, and any `m.room.key` events the room needs first are published
    /// before it; the result holds only the events asked for.
    @discardableResult
    public func publish(roomID: String, _ outgoing: [OutgoingEvent]) throws -> [VerifiedEvent] {
        try validateRoomID(roomID)
        guard !outgoing.isEmpty else { return [] }
        // Announced at once, whatever else this process is doing: a UI shows what it sent without waiting.
        defer { try? feed.catchUp() }
        return try home.withLock {
            guard let (state, version) = try store.roomStateAndVersion(roomID: roomID), state.encryption != nil else {
                return try signAndStore(roomID: roomID, outgoing)
            }
            // Keys that arrived since the last read decide whether a new epoch is needed.
            try catchUpDecryption()
            let (events, _) = try sealing(outgoing, roomID: roomID, state: state, version: version)
            // The store opens what it stores under keys it holds, in the same transaction.
            return Array(try signAndStore(roomID: roomID, events).suffix(outgoing.count))
        }
    }

    /// Signs `outgoing` into this device's chain and stores it, all or nothing; the caller holds the home's lock.
    func signAndStore(roomID: String, _ outgoing: [OutgoingEvent]) throws -> [VerifiedEvent] {
        var head = try store.chainHead(roomID: roomID, senderKey: identity.signingKeyBase64)
        // Never earlier than our previous event (chains forbid timestamps going backwards), and after the newest
        // event of the room we hold, so a device whose clock lags still orders its event after what it answers
        // (a join after its invite). A room time far in the future is ignored: one member must not drag
        // everyone's clock along.
        let now = clock()
        var timestamp = max(now, head?.timestampMs ?? 0)
        if let latest = try store.latestTimestamp(roomID: roomID), latest < now + InputBounds.maxClockLeadMs {
            timestamp = max(timestamp, latest + 1)
        }
        var generator = BufferedRandom()
        // Every event within the size limit, however it is published: a larger one would be stored here and refused
        // by every other node, and its device's later events would wait for it there for ever.
        func sign(_ item: OutgoingEvent) throws -> VerifiedEvent {
            let eventID = EventID.make(roomID: roomID, timestampMs: timestamp, using: &generator)
            let seq = (head?.seq ?? 0) + 1
            var type = item.type
            var content = item.content
            if let key = item.sealedWith {
                let associatedData = RoomCipher.associatedData(
                    eventID: eventID, roomID: roomID, timestampMs: timestamp, senderID: identity.userID, senderKey: identity.signingKeyBase64,
                    seq: seq, parentEventID: item.parentEventID, prevEventHash: head?.hash)
                content = RoomCipher.seal(type: type, content: content, key: key, associatedData: associatedData, using: &generator)
                type = EventType.encrypted
            }
            let event = identity.signingKey.signEvent(
                roomID: roomID, type: type, content: content, parentEventID: item.parentEventID, senderID: identity.userID,
                seq: seq, previousHash: head?.hash, timestampMs: timestamp, eventID: eventID)
            guard event.wire.count <= Event.maxWireBytes else {
                throw ClientError(
                    .tooLarge,
                    "This \(item.type) event would be \(event.wire.count) bytes, above the limit of \(Event.maxWireBytes) bytes (64 KiB) for one event."
                )
            }
            head = ChainLink(seq: event.event.seq, hash: event.hash, timestampMs: timestamp)
            return event
        }
        do {
            if outgoing.count == 1 {
                let event = try sign(outgoing[0])
                // A clear reason before anything is signed into the chain; a burst relies on the store's verdict.
                switch try store.preview(event) {
                case .accepted: break
                case .rejected(let reason): throw ClientError(.notAllowed, "The room would refuse this: \(reason).")
                case .awaitingTarget(let target): throw ClientError(.unknownEvent, "This node does not hold event \(target).")
                }
                // The store judges the event at its place in the order (another event may claim a later time). If
                // it is refused, nothing is stored and the seq stays free.
                _ = try store.ingest(events: [event], receivedMs: timestamp, requireAccepted: true)
                return [event]
            }
            // A burst, stored in one transaction, so that if the room refuses any event nothing is stored. A short one
            // (events sent at once through the local API, taken together) is signed and then stored on this thread.
            let store = store
            let receivedMs = timestamp
            if outgoing.count <= Node.shortBurst {
                let events = try outgoing.map(sign)
                _ = try store.ingest(events: events, receivedMs: receivedMs, requireAccepted: true)
                return events
            }
            // A long one: this thread signs (the chain is sequential) while a worker stores what is signed.
            var events: [VerifiedEvent] = []
            events.reserveCapacity(outgoing.count)
            _ = try BatchPipeline<[VerifiedEvent]>.run(depth: 4) { next in
                try store.ingest(
                    chunks: { try next().map { chunk in (chunk.map { .success($0) }, chunk.map(\.wire)) } }, receivedMs: receivedMs, requireAccepted: true)
            } produce: { put in
                for start in stride(from: 0, to: outgoing.count, by: Node.signingChunk) {
                    let chunk = try outgoing[start..<min(outgoing.count, start + Node.signingChunk)].map(sign)
                    events += chunk
                    try put(chunk)
                }
            }
            return events
        } catch {
            // The store's code goes on unchanged: the room's refusal, a room or event it does not hold, a full disk.
            throw ClientError(describing: error, home: home)
        }
    }

    /// Events signed before the store takes them, in a long burst.
    static let signingChunk = 128
    /// A burst this long at most is signed and stored on the caller's thread, without a pipeline: every burst the
    /// ``PublishCoalescer`` makes of events sent at once.
    static let shortBurst = 2 * signingChunk

    func validateRoomID(_ roomID: String) throws {
        if let problem = Identifier.problem(with: roomID, kind: .room) { throw ClientError(.invalidArgument, "Invalid room id: \(problem).") }
    }

    func validateUserID(_ userID: String) throws {
        if let problem = Identifier.problem(with: userID, kind: .user) { throw ClientError(.invalidArgument, "Invalid user id: \(problem).") }
    }

    /// Membership changes and redactions are never sealed (every node must be able to judge and apply them), so in an
    /// encrypted room a free-text reason would be the one thing a bucket could read.
    func refuseCleartextReason(_ reason: String?, in state: RoomState, roomID: String) throws {
        guard reason != nil, state.encryption != nil else { return }
        throw ClientError(
            .invalidArgument, "Room \(roomID) is encrypted, but a reason is sent unencrypted with the event: anyone holding the room's events could read it.",
            remedy: "Leave out --reason; say it in a message instead.")
    }

    func requireState(_ roomID: String) throws -> RoomState {
        try validateRoomID(roomID)
        guard let state = try store.roomState(roomID: roomID), state.creation != nil else {
            throw ClientError(.unknownRoom, "This node holds no room \(roomID).", remedy: "Create it, or import its events first.")
        }
        return state
    }

    // MARK: Rooms

    /// Creates `roomID` (`m.room.create`, then this device's join, then its encryption and name if given).
    public func createRoom(_ roomID: String, name: String? = nil, encryption: RoomEncryptionOption? = nil) throws -> [VerifiedEvent] {
        try validateRoomID(roomID)
        if try store.roomState(roomID: roomID)?.creation != nil {
            throw ClientError(.invalidArgument, "Room \(roomID) already exists on this node.")
        }
        var events = [
            try publish(roomID: roomID, type: EventType.create, content: JSONObject(["version": 1])),
            try publish(
                roomID: roomID, type: EventType.member,
                content: MemberContent(membership: .join, userID: identity.userID, devices: [identity.binding]).jsonObject),
        ]
        if let encryption { events += try enableEncryption(roomID, encryption) }
        if let name { events.append(try setName(roomID, name)) }
        return events
    }

    /// Invites `userID`, binding the device signing key `key` (base64) to them.
    @discardableResult
    public func invite(_ roomID: String, userID: String, key: String) throws -> VerifiedEvent {
        try validateUserID(userID)
        _ = try requireState(roomID)
        let key = try checkSigningKey(key, of: .user(userID))
        return try publish(
            roomID: roomID, type: EventType.member,
            content: MemberContent(membership: .invite, userID: userID, devices: [DeviceBinding(signingKey: key)]).jsonObject)
    }

    /// Joins a room this node holds and this device was invited to.
    @discardableResult
    public func join(_ roomID: String) throws -> VerifiedEvent {
        let state = try requireState(roomID)
        if state.isJoinedDevice(user: identity.userID, key: identity.signingKeyBase64) {
            throw ClientError(.invalidArgument, "This device has already joined \(roomID).")
        }
        return try publish(
            roomID: roomID, type: EventType.member,
            content: MemberContent(membership: .join, userID: identity.userID, devices: [identity.binding]).jsonObject)
    }

    /// Leaves a room.
    @discardableResult
    public func leave(_ roomID: String) throws -> VerifiedEvent {
        _ = try requireState(roomID)
        return try publish(roomID: roomID, type: EventType.member, content: MemberContent(membership: .leave, userID: identity.userID).jsonObject)
    }

    /// Kicks (`.leave`), bans (`.ban`) or unbans (`.leave` on a banned user) another member.
    @discardableResult
    public func setMembership(_ roomID: String, userID: String, _ membership: Membership, reason: String?) throws -> VerifiedEvent {
        try validateUserID(userID)
        try refuseCleartextReason(reason, in: requireState(roomID), roomID: roomID)
        let event = try publish(
            roomID: roomID, type: EventType.member, content: MemberContent(membership: membership, userID: userID, reason: reason).jsonObject)
        // Whoever removes a member starts the next epoch at once, so nothing later is sealed with a key they hold.
        if membership != .invite, try store.roomState(roomID: roomID)?.encryption?.mode == .epochs { try rotateEpoch(roomID) }
        return event
    }

    /// Sets `userID`'s power level.
    @discardableResult
    public func setPower(_ roomID: String, userID: String, level: Int64) throws -> VerifiedEvent {
        try validateUserID(userID)
        guard (0...PowerLevels.maxLevel).contains(level) else {
            throw ClientError(.invalidArgument, "A power level is an integer from 0 to \(PowerLevels.maxLevel).")
        }
        var levels = try requireState(roomID).powerLevels
        levels.users[userID] = level
        return try publish(roomID: roomID, type: EventType.powerLevels, content: levels.jsonObject)
    }

    @discardableResult
    public func setName(_ roomID: String, _ name: String) throws -> VerifiedEvent {
        try publish(roomID: roomID, type: EventType.name, content: JSONObject(["name": .string(name)]))
    }

    @discardableResult
    public func setTopic(_ roomID: String, _ topic: String) throws -> VerifiedEvent {
        try publish(roomID: roomID, type: EventType.topic, content: JSONObject(["topic": .string(topic)]))
    }

    // MARK: Messages

    /// Sends a message; `replyTo` makes it a reply (its `parent_event_id`); `priority` is what transports honour under
    /// backpressure (§7.6).
    /// - Throws: ``ClientError``; `.tooLarge` when the text does not fit in one event, saying how large it is.
    @discardableResult
    public func send(
        _ roomID: String, text: String, kind: MessageKind = .text, replyTo: String? = nil, priority: MessagePriority = .normal
    ) throws -> VerifiedEvent {
        let state = try requireState(roomID)
        guard !text.isEmpty else { throw ClientError(.invalidArgument, "A message cannot be empty.") }
        guard kind != .file else {
            throw ClientError(.invalidArgument, "A file message needs its file.", remedy: "Share a file with `parley send ROOM --file PATH`.")
        }
        if let replyTo {
            if let problem = EventID.problem(with: replyTo, roomID: roomID) { throw ClientError(.invalidArgument, "Invalid --reply-to: \(problem).") }
            guard try store.event(eventID: replyTo) != nil else { throw ClientError(.unknownEvent, "This node does not hold event \(replyTo).") }
        }
        return try explainingSize(of: text, in: state) {
            var content = JSONObject(["msgtype": .string(kind.rawValue), "body": .string(text)])
            if priority != .normal { content["priority"] = .string(priority.rawValue) }
            return try publish(roomID: roomID, type: EventType.message, content: content, parentEventID: replyTo)
        }
    }

    /// Replaces the text of one of this user's messages.
    /// - Throws: ``ClientError``; `.tooLarge` when the text does not fit in one event, saying how large it is.
    @discardableResult
    public func edit(_ roomID: String, eventID: String, text: String) throws -> VerifiedEvent {
        try explainingSize(of: text, in: requireState(roomID)) { try relate(roomID, EventType.edit, to: eventID, ["body": .string(text)]) }
    }

    /// How much text fits in one event, with room for the envelope; sealing (base64, padding) takes a third more.
    public static let maxMessageBytes = 63 * 1024
    public static let maxEncryptedMessageBytes = 46 * 1024

    /// Runs `body`, turning an event too large for the protocol into an error about the text: how large it is, the
    /// limit, and what to do.
    func explainingSize(of text: String, in state: RoomState, _ body: () throws -> VerifiedEvent) throws -> VerifiedEvent {
        do {
            return try body()
        } catch let error as ClientError where error.code == .tooLarge {
            let encrypted = state.encryption != nil
            let limit = encrypted ? Node.maxEncryptedMessageBytes : Node.maxMessageBytes
            throw ClientError(
                .tooLarge,
                "The text is \(text.utf8.count) bytes: too large for one event, which may be at most \(Event.maxWireBytes) bytes (64 KiB) with its envelope\(encrypted ? " and encryption" : "").",
                remedy: "Send it as several messages of at most \(limit / 1024) KiB each\(encrypted ? " (in this encrypted room)" : "").")
        }
    }

    /// Reacts to a message; refuses a key this user already reacted with (the timeline counts it once anyway).
    @discardableResult
    public func react(_ roomID: String, eventID: String, key: String) throws -> VerifiedEvent {
        if let item = try store.item(eventID: eventID), item.reactions[key]?.contains(identity.userID) == true {
            throw ClientError(
                .invalidArgument, "You already reacted with \(key) to \(eventID).",
                remedy: "Take it back with `parley react ROOM EVENT KEY --remove`.")
        }
        return try relate(roomID, EventType.reaction, to: eventID, ["key": .string(key)])
    }

    /// Takes back this user's reaction `key` to a message: redacts each of their reaction events with that key (one
    /// per device that sent it). Returns the redactions.
    @discardableResult
    public func removeReaction(_ roomID: String, eventID: String, key: String) throws -> [VerifiedEvent] {
        let mine = (try store.item(eventID: eventID)?.reactionEvents ?? []).filter { $0.key == key && $0.senderID == identity.userID }
        guard !mine.isEmpty else {
            throw ClientError(.invalidArgument, "You have not reacted with \(key) to \(eventID).", remedy: "Nothing to take back.")
        }
        return try mine.map { try redact(roomID, eventID: $0.eventID, reason: nil) }
    }

    /// - Parameter allCopies: redact even when the id is carried by events of several senders (a device copied it)
    ///   and the redaction, as a moderator's, would hide them all; otherwise that is refused, naming them.
    @discardableResult
    public func redact(_ roomID: String, eventID: String, reason: String?, allCopies: Bool = false) throws -> VerifiedEvent {
        let state = try requireState(roomID)
        try refuseCleartextReason(reason, in: state, roomID: roomID)
        let carrying = try store.events(carrying: eventID)
        let candidates = carrying.map { RelationTarget($0.event.event) }
        // Copies the room refused are never shown: hiding them too costs nobody anything.
        let hidden = carrying.filter {
            $0.status == .accepted && state.redactionScope(sender: identity.userID, candidates: candidates).covers(RelationTarget($0.event.event))
        }
        if !allCopies, Set(hidden.map(\.event.event.senderKey)).count > 1 {
            throw ClientError(
                .ambiguousEvent,
                "Event id \(eventID) is carried by \(hidden.count) events of different devices (one copied the other's id); a redaction of it would hide all of them:",
                details: hidden.map { "\($0.event.event.senderID), device \($0.event.event.senderKey.prefix(12))…" },
                remedy: "Redacting one of them alone is not possible by id. To hide them all, add --all-copies.")
        }
        var extra: KeyValuePairs<String, JSONValue> = [:]
        if let reason { extra = ["reason": .string(reason)] }
        let shared = try store.item(eventID: eventID)?.file
        let redaction = try relate(roomID, EventType.redaction, to: eventID, extra)
        if let shared { try takeBack(shared, roomID: roomID) }
        return redaction
    }

    /// Records that this device received (`.delivered`) or read (`.read`) everything up to `eventID`: the receipt
    /// lists, as its heads, each chain this device holds further than its earlier receipts said (for a read receipt,
    /// up to `eventID` in the room's order), so it proves delivery of exactly those events (§7.10).
    @discardableResult
    public func receipt(_ roomID: String, eventID: String, kind: ReceiptKind) throws -> VerifiedEvent {
        _ = try requireState(roomID)
        try requireEvent(eventID, in: roomID)
        var content = JSONObject(["receipt_type": .string(kind.rawValue), "event_id": .string(eventID)])
        let upTo = try kind == .read ? store.event(eventID: eventID).map { EventOrder($0.event.event) } : nil
        let heads = try store.receiptHeads(roomID: roomID, readerKey: identity.signingKeyBase64, kind: kind, upTo: upTo)
        if !heads.isEmpty { content["heads"] = .array(heads.map(\.jsonValue)) }
        return try publish(roomID: roomID, type: EventType.receipt, content: content)
    }

    func relate(_ roomID: String, _ type: String, to eventID: String, _ extra: KeyValuePairs<String, JSONValue>) throws -> VerifiedEvent {
        _ = try requireState(roomID)
        try requireEvent(eventID, in: roomID)
        var content = JSONObject(extra)
        content["target_event_id"] = .string(eventID)
        return try publish(roomID: roomID, type: type, content: content)
    }

    func requireEvent(_ eventID: String, in roomID: String) throws {
        if let problem = EventID.problem(with: eventID, roomID: roomID) { throw ClientError(.invalidArgument, "Invalid event id: \(problem).") }
        guard try store.event(eventID: eventID) != nil else { throw ClientError(.unknownEvent, "This node does not hold event \(eventID).") }
    }

    // MARK: Reading

    public func timeline(_ roomID: String, limit: Int) throws -> [TimelineItem] {
        try validateRoomID(roomID)
        // Only whether the room exists: resolving its state would cost more than reading a page of it.
        guard try store.roomIDs().contains(roomID) else {
            throw ClientError(.unknownRoom, "This node holds no room \(roomID).", remedy: "Create it, or import its events first.")
        }
        try catchUpDecryption()
        return try store.timeline(roomID: roomID, limit: limit)
    }

    public func roomState(_ roomID: String) throws -> RoomState { try requireState(roomID) }

    public func search(_ query: String, roomID: String?, limit: Int = 50) throws -> [SearchHit] {
        if let roomID { try validateRoomID(roomID) }
        try catchUpDecryption()
        return try store.search(query, roomID: roomID, limit: limit)
    }
}
