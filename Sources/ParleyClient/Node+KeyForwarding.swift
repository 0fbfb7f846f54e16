import Foundation
import ParleyCore
import ParleyStore
import ParleySync

/// What one key exchange in a room published.
public struct KeyExchangeReport: Sendable, Equatable {
    /// `m.room.key_forward` events, and the message keys they carry.
    public var forwards = 0
    public var forwardedKeys = 0
    /// `m.room.key` events re-sharing earlier epochs (rooms whose history is shared).
    public var epochShares = 0
    /// `m.room.key_request` events, and the sealed events they ask for.
    public var requests = 0
    public var requestedEvents = 0

    public var isEmpty: Bool { forwards == 0 && epochShares == 0 && requests == 0 }
}

extension Node {
    /// How long a request for another device's message waits for that device to answer before this one does: the
    /// sender holds the key for sure, and one answer is enough.
    public static let keyRequestGraceMs: Int64 = 30_000
    /// A request still unanswered after this long is sent again.
    public static let keyRequestRetryMs: Int64 = 3_600_000
    /// Most message keys one pass forwards to one device: a few full events. The rest follow at later passes, so a
    /// flood of new devices (anyone with the invite level can invite hundreds) costs each member bounded work.
    public static let maxKeysForwardedPerDevicePerPass = 4 * ForwardSeal.maxKeysPerEvent

    /// Shares the keys other member devices may read and lack, answers their key requests, and asks for the keys of
    /// sealed events this device may read but cannot open (docs/PROTOCOL.md §14.10). Cheap when nothing changed.
    /// Call it after new events arrive; flush what it publishes.
    @discardableResult
    public func exchangeKeys(_ roomID: String) throws -> KeyExchangeReport {
        try home.withLock { try exchangeKeysHoldingLock(roomID) }
    }

    /// ``exchangeKeys(_:)`` for a caller that holds the node's publishing lock.
    func exchangeKeysHoldingLock(_ roomID: String) throws -> KeyExchangeReport {
        do {
            guard let (state, version) = try store.roomStateAndVersion(roomID: roomID), state.encryption?.mode == .epochs,
                state.isJoinedDevice(user: identity.userID, key: identity.signingKeyBase64)
            else { return KeyExchangeReport() }
            try catchUpDecryption()
            var report = KeyExchangeReport()
            var outgoing: [OutgoingEvent] = []
            // What this pass forwards, by recipient: a request answered in the same pass as a new member's share must
            // not forward the same keys twice.
            var forwarded: [String: [ChainPosition]] = [:]
            let me = identity.signingKeyBase64
            // Keys go to joined devices only, with the exchange key each joined with: a key an invite names may be
            // named for another user too, with someone else's exchange key (§8.4.4).
            let recipients = Dictionary(
                state.joinedDevices.filter { $0.signingKey != me && $0.exchangeKey != nil }.map { ($0.signingKey, $0) }, uniquingKeysWith: { a, _ in a })
            func forward(_ events: [SealedEventInfo], to device: DeviceBinding) throws {
                let positions = try readableLacking(events, by: device.signingKey, state: state, roomID: roomID, forwarded: forwarded)
                    .prefix(max(0, Node.maxKeysForwardedPerDevicePerPass - (forwarded[device.signingKey]?.count ?? 0)))
                guard !positions.isEmpty else { return }
                let (events, sent) = try forwardEvents(Array(positions), to: device, roomID: roomID, report: &report)
                outgoing += events
                forwarded[device.signingKey, default: []] += sent
            }

            // A device joined: where history is shared, give it every epoch this device holds; where it is `joined`,
            // the keys of this device's own sealed events it may read. Again at the next pass when a pass was cut
            // short by the per-device bound.
            if try store.keyExchangeVersion(roomID: roomID) != version {
                if state.encryption?.history == .shared {
                    let held = try store.roomKeys(roomID: roomID)
                    let mine = state.roomKeys.values.filter { held[$0.keyID] != nil && $0.holders.contains(me) }.sorted { $0.introducedAt < $1.introducedAt }
                    let shares = try keyEvents(
                        for: mine.compactMap { record in held[record.keyID].map { (record, $0) } }, recipients: Array(recipients.values), roomID: roomID)
                    report.epochShares += shares.count
                    outgoing += shares
                } else {
                    let own = try store.sealedEvents(roomID: roomID, sentBy: me).filter { $0.algorithm == .messageKey }
                    for device in recipients.values.sorted(by: { $0.signingKey < $1.signingKey }) { try forward(own, to: device) }
                }
            }

            // Requests: answered at once for this device's own events, after a grace period for others'.
            let now = clock()
            var answered: [Int64] = []
            for request in try store.unansweredKeyRequests(roomID: roomID, excluding: me) {
                guard let device = recipients[request.requester] else {
                    answered.append(request.row)  // Not (or no longer) a member device: nothing is ever owed to it.
                    continue
                }
                // A request dated ahead of this clock would otherwise wait out its grace for ever.
                let ownOnly = request.timestampMs <= now + InputBounds.maxClockLeadMs && now - request.timestampMs < Node.keyRequestGraceMs
                let asked = try store.sealedEvents(roomID: roomID, at: request.positions).filter { !ownOnly || $0.position.senderKey == me }
                try forward(asked.filter { $0.algorithm == .messageKey }, to: device)
                if !ownOnly { answered.append(request.row) }
            }

            // What this device may read but cannot open: ask once, and again after a long silence.
            let wanted = try store.undecryptableEvents(roomID: roomID).filter { entry in
                entry.event.algorithm == .messageKey && state.mayRead(entry.event.order, device: me)
                    && (entry.requestedMs.map { now - $0 >= Node.keyRequestRetryMs } ?? true)
            }.map(\.event.position)
            for chunk in wanted.chunks(of: KeyRequestContent.maxEvents) {
                outgoing.append(OutgoingEvent(type: EventType.keyRequest, content: KeyRequestContent(events: Array(chunk)).jsonObject))
                report.requests += 1
                report.requestedEvents += chunk.count
            }

            if !outgoing.isEmpty { _ = try signAndStore(roomID: roomID, outgoing) }
            for (recipient, positions) in forwarded { try store.recordForwarded(roomID: roomID, recipient: recipient, positions: positions, atMs: now) }
            try store.recordRequested(roomID: roomID, positions: wanted, atMs: now)
            try store.markKeyRequestsAnswered(rows: answered)
            // The version this pass started from: a state change that another process stored meanwhile, or this
            // pass's own key shares, make the next pass look again. A pass cut short by the bound does too.
            let cutShort = forwarded.values.contains { $0.count >= Node.maxKeysForwardedPerDevicePerPass }
            try store.setKeyExchangeVersion(cutShort ? -1 : version, roomID: roomID)
            return report
        }
    }

    /// Of `events`, those device `recipient` may read under the room's history rule, whose epoch it does not hold,
    /// and whose keys this device has not forwarded to it before (`forwarded`: in this pass, not recorded yet).
    func readableLacking(
        _ events: [SealedEventInfo], by recipient: String, state: RoomState, roomID: String, forwarded: [String: [ChainPosition]]
    ) throws -> [ChainPosition] {
        let done = try store.forwardedPositions(roomID: roomID, recipient: recipient).union(forwarded[recipient] ?? [])
        return events.filter { event in
            state.mayRead(event.order, device: recipient) && state.roomKeys[event.keyID]?.holders.contains(recipient) != true
                && !done.contains(event.position)
        }.map(\.position)
    }

    /// `m.room.key_forward` events giving `device` the keys of `positions` this node can give, and the positions
    /// whose keys they carry.
    func forwardEvents(
        _ positions: [ChainPosition], to device: DeviceBinding, roomID: String, report: inout KeyExchangeReport
    ) throws -> (events: [OutgoingEvent], sent: [ChainPosition]) {
        guard let exchange = device.exchangeKey.flatMap(Base64.decode) else { return ([], []) }
        let keys = try store.messageKeys(roomID: roomID, at: positions)
        let events = try keys.chunks(of: ForwardSeal.maxKeysPerEvent).map { chunk in
            let content = try ForwardSeal.seal(
                Array(chunk), roomID: roomID, senderKey: identity.signingKeyBase64, recipientKey: device.signingKey, exchangeKey: exchange)
            report.forwards += 1
            report.forwardedKeys += chunk.count
            return OutgoingEvent(type: EventType.keyForward, content: content.jsonObject)
        }
        return (events, keys.map(\.position))
    }
}
