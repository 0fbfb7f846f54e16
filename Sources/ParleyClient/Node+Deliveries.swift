import Foundation
import ParleyCore
import ParleyStore

/// Where one message stands with one recipient device (docs/CLI.md, "Delivery"), from least to most.
public enum DeliveryState: String, Sendable, Comparable, CaseIterable {
    /// Stored here; no transport confirmed it yet.
    case pending
    /// A transport failed to take it, again and again (``Node/failedAfterAttempts``); it is still tried.
    case failed
    /// A bucket, relay or peer confirmed holding it.
    case inTransit = "in_transit"
    /// The device's signed delivered receipt covers it.
    case delivered
    /// The device's signed read receipt covers it.
    case read

    public static func < (lhs: Self, rhs: Self) -> Bool { allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)! }

    /// `IN_TRANSIT`: how the CLI and the UIs name it.
    public var label: String { rawValue.uppercased() }
}

/// One recipient device's standing with a message.
public struct RecipientStatus: Sendable, Equatable {
    public var userID: String
    public var deviceKey: String
    public var state: DeliveryState
    /// When its receipts say it received and read the message (never before the message's own time).
    public var deliveredMs: Int64?
    public var readMs: Int64?
    /// Whether the device is still joined; a device that left still counts for what it received.
    public var isJoined: Bool
}

/// What `parley status` shows of one event.
public struct DeliveryReport: Sendable {
    public var roomID: String
    public var eventID: String
    public var senderID: String
    public var senderKey: String
    public var timestampMs: Int64
    /// Whether this device sent it: only then are transports and failures known.
    public var isOwn: Bool
    /// The transports that confirmed holding it, earliest first.
    public var confirmations: [(transport: String, confirmedMs: Int64)]
    /// Transports failing to send it now.
    public var failures: [SendFailure]
    /// Every other device of the room, by user then key.
    public var recipients: [RecipientStatus]

    /// The least advanced state among the joined recipients: the message's state as a whole.
    public var overall: DeliveryState {
        recipients.filter(\.isJoined).map(\.state).min() ?? (isOwn ? sendingState : .delivered)
    }

    /// Where sending stands, whatever the recipients did.
    var sendingState: DeliveryState {
        if !confirmations.isEmpty { return .inTransit }
        return failures.contains { $0.attempts >= Node.failedAfterAttempts } ? .failed : .pending
    }
}

/// What ``Node/acknowledgeDelivery(_:)`` did.
public enum DeliveryAcknowledgement: Sendable {
    /// Nothing arrived from others since this device's last receipt.
    case upToDate
    /// Something did; the receipt is due at this time (pacing, ``Node/receiptIntervalMs(devices:)``).
    case due(atMs: Int64)
    /// A receipt was signed: a waiting read receipt, or a delivered one.
    case sent(VerifiedEvent)
}

extension Node {
    /// Failed attempts in a row after which a transport's unsent messages show as FAILED: one failure can be a blip.
    public static let failedAfterAttempts = 3

    /// The least time between two automatic receipts of one device in one room: it grows with the square of the
    /// room's devices, so that all of them together send at most about 5 per second divided by their number —
    /// 2 s in a conversation of two, 20 s among 10 devices, 2,000 s among 100 (5% of 1 message a second) — and
    /// never more than an hour.
    public static func receiptIntervalMs(devices: Int) -> Int64 {
        min(max(Int64(devices) * Int64(devices) * 200, 2_000), 3_600_000)
    }

    /// Sends the receipt this device owes in `roomID`, when the room's pace allows one: a read receipt up to the read
    /// marker when one waits (``markRead(_:eventID:)``), else a delivered receipt when messages, edits or reactions of
    /// others arrived since this device's last receipt. Either covers every chain this device holds further than its
    /// receipts did.
    @discardableResult
    public func acknowledgeDelivery(_ roomID: String) throws -> DeliveryAcknowledgement {
        let key = identity.signingKeyBase64
        let preferences = try store.readPreferences(roomID: roomID)
        let readWaiting = preferences.readReceiptWaiting && preferences.sendsReadReceipts && preferences.readMarker != nil
        guard try readWaiting || store.hasUnacknowledgedContent(roomID: roomID, readerKey: key) else { return .upToDate }
        let state = try requireState(roomID)
        guard state.isJoinedDevice(user: identity.userID, key: key) else { return .upToDate }
        if let due = try receiptDueMs(roomID, state: state) { return .due(atMs: due) }
        if readWaiting, let marker = preferences.readMarker {
            let receipt = try receipt(roomID, eventID: marker, kind: .read)
            try store.updateReadPreferences(roomID: roomID) { $0.readReceiptWaiting = false }
            return .sent(receipt)
        }
        guard let newest = try store.newestEvent(roomID: roomID) else { return .upToDate }
        return .sent(try receipt(roomID, eventID: newest.eventID, kind: .delivered))
    }

    /// When this device's next receipt in the room may go, if not now: ``receiptIntervalMs(devices:)`` after its last
    /// one, plus a fixed share of up to a quarter of it taken from its key, so the room's devices do not all answer at
    /// once.
    func receiptDueMs(_ roomID: String, state: RoomState) throws -> Int64? {
        let key = identity.signingKeyBase64
        let devices = state.joinedMembers.reduce(0) { $0 + $1.devices.count }
        let spread = Int64(key.utf8.reduce(0) { ($0 &* 31 &+ Int($1)) & 0xFFFF }) % 250
        let interval = Node.receiptIntervalMs(devices: devices) * (1000 + spread) / 1000
        guard let last = try store.lastReceiptMs(roomID: roomID, readerKey: key), clock() < last + interval else { return nil }
        return last + interval
    }

    /// Records that this user has seen `roomID` up to `eventID` (the room's unread count starts after it), and sends a
    /// read receipt up to it: at once when the room's pace allows, else when a running node finds it due
    /// (``acknowledgeDelivery(_:)``); never when the room's read receipts are off (``setReadReceipts(_:enabled:)``).
    /// - Parameter paced: `false` sends the read receipt now whatever the pace (`parley read`, asked for by its user).
    /// - Returns: the receipt, when one was sent now.
    @discardableResult
    public func markRead(_ roomID: String, eventID: String, paced: Bool = true) throws -> VerifiedEvent? {
        let state = try requireState(roomID)
        try requireEvent(eventID, in: roomID)
        // The marker only moves forward: a page that shows an older message after a newer one unreads nothing.
        let current = try store.readPreferences(roomID: roomID).readMarker
        if let current, let order = try store.event(eventID: current).map({ EventOrder($0.event.event) }),
            let new = try store.event(eventID: eventID).map({ EventOrder($0.event.event) }), new < order
        {
            return nil
        }
        var sends = false
        try store.updateReadPreferences(roomID: roomID) { preferences in
            preferences.readMarker = eventID
            preferences.readReceiptWaiting = preferences.sendsReadReceipts
            sends = preferences.sendsReadReceipts
        }
        guard sends else { return nil }
        if paced, try receiptDueMs(roomID, state: state) != nil {
            // A running node sends it when due: nothing else would wake it for a room where nothing arrives.
            feed.post(.receiptWaiting(roomID: roomID))
            return nil
        }
        let receipt = try receipt(roomID, eventID: eventID, kind: .read)
        try store.updateReadPreferences(roomID: roomID) { $0.readReceiptWaiting = false }
        return receipt
    }

    /// Turns this device's read receipts in `roomID` on or off. Off, reading still moves the room's unread count here,
    /// and delivered receipts still go: others see the messages reached this device, never that they were read.
    public func setReadReceipts(_ roomID: String, enabled: Bool) throws {
        _ = try requireState(roomID)
        try store.updateReadPreferences(roomID: roomID) { preferences in
            preferences.sendsReadReceipts = enabled
            if !enabled { preferences.readReceiptWaiting = false }
        }
    }

    /// Whether this device sends read receipts in `roomID`.
    public func sendsReadReceipts(_ roomID: String) throws -> Bool {
        _ = try requireState(roomID)
        return try store.readPreferences(roomID: roomID).sendsReadReceipts
    }

    /// Where the event `eventID` of `roomID` stands with each other device of the room. Of several events carrying
    /// the id (a device copied it), this device's own.
    public func deliveryStatus(_ roomID: String, eventID: String) throws -> DeliveryReport {
        let state = try requireState(roomID)
        let ownKey = identity.signingKeyBase64
        guard let stored = try store.event(eventID: eventID, preferringSender: ownKey) else {
            throw ClientError(.unknownEvent, "This node does not hold event \(eventID).")
        }
        let event = stored.event.event
        let isOwn = event.senderKey == ownKey
        let coverage = try store.receiptsCovering(roomID: roomID, position: ChainPosition(event))
        var recipients: [String: RecipientStatus] = [:]
        for member in state.joinedMembers {
            for key in member.devices.keys where key != event.senderKey {
                recipients[key] = RecipientStatus(userID: member.userID, deviceKey: key, state: .pending, isJoined: true)
            }
        }
        for receipt in coverage where receipt.readerKey != event.senderKey {
            var recipient =
                recipients[receipt.readerKey]
                ?? RecipientStatus(userID: receipt.readerID, deviceKey: receipt.readerKey, state: .pending, isJoined: false)
            let at = max(receipt.timestampMs, event.timestampMs)
            switch receipt.kind {
            case .delivered: recipient.deliveredMs = min(recipient.deliveredMs ?? at, at)
            case .read:
                recipient.readMs = at
                recipient.deliveredMs = min(recipient.deliveredMs ?? at, at)
            }
            recipients[receipt.readerKey] = recipient
        }
        var report = DeliveryReport(
            roomID: roomID, eventID: eventID, senderID: event.senderID, senderKey: event.senderKey, timestampMs: event.timestampMs, isOwn: isOwn,
            confirmations: isOwn ? try store.confirmations(roomID: roomID, seq: event.seq) : [],
            failures: isOwn ? try store.sendFailures(roomID: roomID) : [], recipients: [])
        let sending = report.sendingState
        report.recipients = recipients.values.map { recipient in
            var recipient = recipient
            recipient.state = recipient.readMs != nil ? .read : recipient.deliveredMs != nil ? .delivered : isOwn ? sending : .pending
            return recipient
        }.sorted { ($0.userID, $0.deviceKey) < ($1.userID, $1.deviceKey) }
        if !report.confirmations.isEmpty { report.failures = [] }
        return report
    }
}

/// This device's messages a newly arrived receipt covers for the first time (the local API streams it as
/// `message:delivered` or `message:acknowledged`).
public struct DeliveryNotice: Sendable, Equatable {
    public var kind: ReceiptKind
    public var readerID: String
    public var readerKey: String
    /// The time the receipt claims.
    public var atMs: Int64
    public var eventIDs: [String]
}

extension Node {
    /// What the receipt stored at `receiptRow` newly says of this device's messages, if anything.
    public func deliveryNotice(receiptRow: Int64) throws -> DeliveryNotice? {
        guard let covered = try store.newlyCovered(receiptRow: receiptRow, chainKey: identity.signingKeyBase64),
            covered.readerKey != identity.signingKeyBase64
        else { return nil }
        return DeliveryNotice(kind: covered.kind, readerID: covered.readerID, readerKey: covered.readerKey, atMs: covered.atMs, eventIDs: covered.eventIDs)
    }
}

/// A message of this device as a timeline shows it: its state as a whole, and how many of the room's other devices
/// received and read it.
public struct DeliveryMark: Sendable, Equatable {
    public var state: DeliveryState
    public var delivered: Int
    public var read: Int
    /// The room's joined devices other than this one.
    public var devices: Int

    /// `[pending]`, `[failing]`, `[sent]`, `[delivered 1/3]`, `[delivered]`, `[read 2/3]`, `[read]`.
    public var label: String {
        switch state {
        case .pending: "[pending]"
        case .failed: "[failing]"
        case .inTransit: delivered > 0 ? "[delivered \(delivered)/\(devices)]" : "[sent]"
        case .delivered: read > 0 ? "[read \(read)/\(devices)]" : "[delivered]"
        case .read: "[read]"
        }
    }
}

extension Node {
    /// The marks of this device's messages among `items` (all of one room), by event id: one look at the receipts
    /// covering its chain from the oldest of them on. None in a room no transport carries or where this device is alone.
    public func deliveryMarks(_ roomID: String, items: [TimelineItem]) throws -> [String: DeliveryMark] {
        let key = identity.signingKeyBase64
        let own = items.filter { $0.senderKey == key && $0.summary == nil && ($0.type == EventType.message || $0.type == EventType.encrypted) }
        guard let oldest = own.map(\.seq).min() else { return [:] }
        let state = try requireState(roomID)
        let devices = Set(state.joinedMembers.flatMap(\.devices.keys)).subtracting([key])
        // A room no transport carries, or with nobody else in it, has nowhere to deliver to: no marks.
        guard !devices.isEmpty, let sentUpTo = try sentUpToSeq(roomID) else { return [:] }
        var delivered: [String: Int64] = [:]
        var read: [String: Int64] = [:]
        for coverage in try store.chainCoverage(roomID: roomID, chainKey: key, fromSeq: oldest) where devices.contains(coverage.readerKey) {
            delivered[coverage.readerKey] = max(delivered[coverage.readerKey] ?? 0, coverage.seq)
            if coverage.kind == .read { read[coverage.readerKey] = max(read[coverage.readerKey] ?? 0, coverage.seq) }
        }
        let failing = try store.sendFailures(roomID: roomID).contains { $0.attempts >= Node.failedAfterAttempts }
        var marks: [String: DeliveryMark] = [:]
        for item in own {
            let deliveredCount = delivered.values.filter { $0 >= item.seq }.count
            let readCount = read.values.filter { $0 >= item.seq }.count
            let overall: DeliveryState =
                if !devices.isEmpty && readCount == devices.count {
                    .read
                } else if !devices.isEmpty && deliveredCount == devices.count {
                    .delivered
                } else if item.seq <= sentUpTo || deliveredCount > 0 {
                    .inTransit
                } else {
                    failing ? .failed : .pending
                }
            marks[item.eventID] = DeliveryMark(state: overall, delivered: deliveredCount, read: readCount, devices: devices.count)
        }
        return marks
    }
}
