import ParleyCore

/// A transport's name: what tells its rows apart in a node's store, and its part in logs ("bucket" today; the relay
/// and peers next).
public struct TransportName: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    public init(_ rawValue: String) { self.rawValue = rawValue }

    public var description: String { rawValue }

    /// Buckets and folders used as a room's log (docs/PROTOCOL.md §13).
    public static let bucket = TransportName("bucket")
    /// Relays: servers that keep and push a room's events (docs/PROTOCOL.md §15).
    public static let relay = TransportName("relay")
    /// Devices syncing a room directly over UDP (docs/PROTOCOL.md §17).
    public static let peer = TransportName("peer")
}

/// A room a transport reaches, and the transport's own progress through it.
public struct TransportRoom: Sendable, Equatable {
    public var transport: TransportName
    public var roomID: String
    /// Where the transport reaches the room: a bucket URL, a relay URL, peers.
    public var location: String
    /// Lowercase hex SHA-256 of the room creator's signing key: a joiner's pin against a replaced room.
    public var creatorFingerprint: String
    /// The transport's cursor, opaque to the store: only the transport reads it.
    public var cursor: [UInt8]

    public init(transport: TransportName, roomID: String, location: String, creatorFingerprint: String, cursor: [UInt8] = []) {
        self.transport = transport
        self.roomID = roomID
        self.location = location
        self.creatorFingerprint = creatorFingerprint
        self.cursor = cursor
    }
}

/// A run of this device's events a transport took to send as one unit (a bucket's log file), kept until the
/// transport confirms it, so a retry sends the same bytes under the same name.
public struct OutboxFile: Sendable, Equatable {
    public var id: Int64
    public var transport: TransportName
    public var roomID: String
    /// The unit's name at the transport (a bucket's object key).
    public var name: String
    public var firstSeq: Int64
    public var lastSeq: Int64
    public var firstTimestampMs: Int64
    public var lastTimestampMs: Int64
    /// The exact bytes to send.
    public var content: [UInt8]

    public init(
        id: Int64, transport: TransportName, roomID: String, name: String, firstSeq: Int64, lastSeq: Int64, firstTimestampMs: Int64,
        lastTimestampMs: Int64, content: [UInt8]
    ) {
        self.id = id
        self.transport = transport
        self.roomID = roomID
        self.name = name
        self.firstSeq = firstSeq
        self.lastSeq = lastSeq
        self.firstTimestampMs = firstTimestampMs
        self.lastTimestampMs = lastTimestampMs
        self.content = content
    }
}

/// One of this device's events not yet in any outbox file of a transport, as the transport assembles its next one.
public struct PendingEvent: Sendable, Equatable {
    public var seq: Int64
    public var timestampMs: Int64
    public var wire: [UInt8]

    public init(seq: Int64, timestampMs: Int64, wire: [UInt8]) {
        self.seq = seq
        self.timestampMs = timestampMs
        self.wire = wire
    }
}

/// How far this device's events in a room have gone through one transport.
public struct OutboxStatus: Sendable, Equatable {
    /// Signed and stored here, not yet confirmed by the transport (PENDING).
    public var pending: Int
    /// Confirmed by the transport (IN_TRANSIT: on their way to the other members).
    public var inTransit: Int
    /// The oldest pending event's time, if any.
    public var oldestPendingMs: Int64?
    /// The highest priority among the pending events (§7.6); `normal` when none is pending.
    public var priority: MessagePriority

    public init(pending: Int, inTransit: Int, oldestPendingMs: Int64?, priority: MessagePriority = .normal) {
        self.pending = pending
        self.inTransit = inTransit
        self.oldestPendingMs = oldestPendingMs
        self.priority = priority
    }
}

/// What a transport recorded about one unit it received (or chose not to read): a bucket's object.
public struct ReceivedObject: Sendable, Equatable {
    public var name: String
    public var size: Int64
    public var events: Int
    /// What was wrong with it, if anything; shown by `parley sync` and kept for `parley status`.
    public var problem: String?

    public init(name: String, size: Int64, events: Int, problem: String?) {
        self.name = name
        self.size = size
        self.events = events
        self.problem = problem
    }
}

/// A unit whose reading failed for a transient reason: failures in a row, the first one's time, and when the
/// transport reads it again (ms). The transport decides these times; the store keeps them.
public struct ReadFailureRecord: Sendable, Equatable {
    public var attempts: Int
    public var firstMs: Int64
    public var nextMs: Int64

    public init(attempts: Int, firstMs: Int64, nextMs: Int64) {
        self.attempts = attempts
        self.firstMs = firstMs
        self.nextMs = nextMs
    }
}

/// One chained event as a transport sends it on: its chain position and its exact wire bytes.
public struct ChainedWire: Sendable, Equatable {
    public var senderKey: String
    public var seq: Int64
    public var wire: [UInt8]
    public init(senderKey: String, seq: Int64, wire: [UInt8]) {
        self.senderKey = senderKey
        self.seq = seq
        self.wire = wire
    }
}
