import ParleyBucket
import ParleyCore
import ParleyPeer
import ParleyStore
import ParleySync

/// What a node's `/metrics` reports (docs/API.md), in Prometheus's text format: how long its messages take to be
/// delivered over each transport, where its message-and-device pairs stand, its failing transports, and the block
/// bytes this process moved. Labels take few values: a transport's name and a state, never a room or a user.
public struct NodeMetrics: Sendable {
    /// Per transport, of the newest messages this device sent in each of its rooms: how long until each other device's
    /// receipt covered them (ms).
    public var latenciesMs: [String: [Int64]] = [:]
    /// Per transport, message-and-device pairs by state: `awaiting` (no receipt yet), `delivered`, `read`.
    public var pairs: [String: [String: Int]] = [:]
    /// Per transport and reason (the error's code), the rooms it is failing to send to now.
    public var failingRooms: [String: [String: Int]] = [:]
    public var blockBytesUp: Int64 = 0
    public var blockBytesDown: Int64 = 0
    /// The peer transport's counts, when this node runs one.
    public var peers: PeerCounters?

    /// How many of its newest messages per room a scrape looks at.
    public static let messagesPerRoom = 1_000

    public var text: String {
        var lines: [String] = []
        lines.append(
            "# HELP parley_node_delivery_latency_seconds From sending a message to another device's signed receipt covering it, per transport (newest \(Self.messagesPerRoom) messages of this device per room)."
        )
        lines.append("# TYPE parley_node_delivery_latency_seconds summary")
        for transport in latenciesMs.keys.sorted() {
            lines += LatencySummary.lines(
                "parley_node_delivery_latency_seconds", labels: "transport=\"\(transport)\",", latenciesMs: latenciesMs[transport] ?? [])
        }
        lines.append(
            "# HELP parley_node_message_deliveries Message-and-device pairs of this device's newest messages, by state: awaiting (no receipt yet), delivered, read."
        )
        lines.append("# TYPE parley_node_message_deliveries gauge")
        for transport in pairs.keys.sorted() {
            for (state, count) in (pairs[transport] ?? [:]).sorted(by: { $0.key < $1.key }) {
                lines.append("parley_node_message_deliveries{transport=\"\(transport)\",state=\"\(state)\"} \(count)")
            }
        }
        lines.append(
            "# HELP parley_node_failing_rooms Rooms a transport failed to send to three times or more in a row (still retried), by the error's code.")
        lines.append("# TYPE parley_node_failing_rooms gauge")
        for transport in failingRooms.keys.sorted() {
            for (reason, count) in (failingRooms[transport] ?? [:]).sorted(by: { $0.key < $1.key }) {
                lines.append("parley_node_failing_rooms{transport=\"\(transport)\",reason=\"\(reason)\"} \(count)")
            }
        }
        lines.append("# HELP parley_node_block_bytes_total Bytes of blocks (file contents) this process sent and fetched.")
        lines.append("# TYPE parley_node_block_bytes_total counter")
        lines.append("parley_node_block_bytes_total{direction=\"up\"} \(blockBytesUp)")
        lines.append("parley_node_block_bytes_total{direction=\"down\"} \(blockBytesDown)")
        if let peers {
            lines.append("# HELP parley_node_peer_datagrams_total Datagrams the peer transport received and sent.")
            lines.append("# TYPE parley_node_peer_datagrams_total counter")
            lines.append("parley_node_peer_datagrams_total{direction=\"in\"} \(peers.datagramsIn)")
            lines.append("parley_node_peer_datagrams_total{direction=\"out\"} \(peers.datagramsOut)")
            lines.append("# HELP parley_node_peer_bytes_total Bytes of datagrams the peer transport received and sent.")
            lines.append("# TYPE parley_node_peer_bytes_total counter")
            lines.append("parley_node_peer_bytes_total{direction=\"in\"} \(peers.bytesIn)")
            lines.append("parley_node_peer_bytes_total{direction=\"out\"} \(peers.bytesOut)")
            lines.append(
                "# HELP parley_node_peer_dropped_total Datagrams the peer transport dropped (held_back: answers waiting for an address to show it receives there)."
            )
            lines.append("# TYPE parley_node_peer_dropped_total counter")
            for (reason, count) in peers.dropped.sorted(by: { $0.key < $1.key }) {
                lines.append("parley_node_peer_dropped_total{reason=\"\(reason)\"} \(count)")
            }
            lines.append("# HELP parley_node_peer_events_total Events the peer transport sent, received and stored as new.")
            lines.append("# TYPE parley_node_peer_events_total counter")
            lines.append("parley_node_peer_events_total{direction=\"sent\"} \(peers.eventsSent)")
            lines.append("parley_node_peer_events_total{direction=\"received\"} \(peers.eventsReceived)")
            lines.append("parley_node_peer_events_total{direction=\"accepted\"} \(peers.eventsAccepted)")
            lines.append("# HELP parley_node_peer_pieces_total Pieces of blocks the peer transport sent to peers that asked, and received for its fetches.")
            lines.append("# TYPE parley_node_peer_pieces_total counter")
            lines.append("parley_node_peer_pieces_total{direction=\"sent\"} \(peers.piecesSent)")
            lines.append("parley_node_peer_pieces_total{direction=\"received\"} \(peers.piecesReceived)")
            lines.append("# HELP parley_node_peer_blocks_fetched_total Blocks fetched whole from peers and checked against their ids.")
            lines.append("# TYPE parley_node_peer_blocks_fetched_total counter")
            lines.append("parley_node_peer_blocks_fetched_total \(peers.blocksFetched)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension Node {
    /// The node's metrics now, from its store (and this process's block counters).
    public func metrics() throws -> NodeMetrics {
        var metrics = NodeMetrics()
        let own = identity.signingKeyBase64
        for transport in [TransportName.bucket, TransportName.relay, TransportName.peer] {
            let rooms = try store.transportRooms(transport).map(\.roomID)
            for roomID in Set(rooms).sorted() {
                guard let state = try store.roomState(roomID: roomID) else { continue }
                let devices = Set(state.joinedMembers.flatMap(\.devices.keys))
                let found = try store.deliveryLatencies(roomID: roomID, chainKey: own, devices: devices, limit: NodeMetrics.messagesPerRoom)
                metrics.latenciesMs[transport.rawValue, default: []] += found.latenciesMs
                metrics.pairs[transport.rawValue, default: [:]]["awaiting", default: 0] += found.awaiting
                metrics.pairs[transport.rawValue, default: [:]]["delivered", default: 0] += found.latenciesMs.count - found.read
                metrics.pairs[transport.rawValue, default: [:]]["read", default: 0] += found.read
                for failure in try store.sendFailures(roomID: roomID)
                where failure.transport == transport.rawValue && failure.attempts >= Node.failedAfterAttempts {
                    metrics.failingRooms[transport.rawValue, default: [:]][failure.code, default: 0] += 1
                }
            }
        }
        (metrics.blockBytesUp, metrics.blockBytesDown) = BlockTraffic.totals()
        metrics.peers = runningPeers.withLock { $0 }?.counters
        return metrics
    }
}
