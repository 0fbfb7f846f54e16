import Foundation
import Logging
import ParleyRelayClient
import ParleySync
import Synchronization

extension NodeRunner {
    /// One connection per relay, carrying every room the node reaches there: kept open, reconnected after a drop with
    /// a wait that doubles (1 s to 1 min, with jitter, so that clients of a relay that restarted do not all come back
    /// at once), started again when the relay's rooms change. The node's own new events are published as soon as the
    /// feed announces them.
    func keepRelays() async {
        let relayClient = RelayClient(node: node, logger: logger)
        while !stopping.isClosed {
            let groups = relayGroups(relayClient)
            guard !groups.isEmpty else {
                await stopping.wait(upToMs: 1_000)
                continue
            }
            await withTaskGroup(of: Void.self) { group in
                for (relay, rooms) in groups {
                    group.addTask { await self.keep(relay: relay, rooms: rooms, client: relayClient) }
                }
                // The rooms each relay carries, checked every second: a room joined or forgotten starts them again.
                group.addTask {
                    while !self.stopping.isClosed, self.relayGroups(relayClient) == groups { await self.stopping.wait(upToMs: 1_000) }
                }
                await group.next()
                group.cancelAll()
            }
        }
    }

    /// Relay rooms (only ``Settings/roomID`` when set), by relay URL.
    func relayGroups(_ client: RelayClient) -> [String: [String]] {
        var groups: [String: [String]] = [:]
        for room in (try? client.rooms()) ?? [] where settings.roomID.map({ $0 == room.roomID }) ?? true {
            groups[room.relay, default: []].append(room.roomID)
        }
        return groups.mapValues { $0.sorted() }
    }

    func keep(relay text: String, rooms: [String], client: RelayClient) async {
        let failures = FailureCount()
        while !stopping.isClosed && !Task.isCancelled {
            do {
                let relay = try RelayURL(text)
                let session = try client.session(at: relay)
                let (wake, ringer) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
                let subscription = node.feed.subscribe(backlog: 100_000)
                let (arrivals, arrivalSink) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(64))
                let (typing, typingSink) = AsyncStream<(roomID: String, isTyping: Bool)>.makeStream(bufferingPolicy: .bufferingNewest(16))
                let me = node.identity.userID
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await activity in subscription.activity {
                            switch activity {
                            case .events(let roomID, _) where rooms.contains(roomID): ringer.yield()
                            // Only this user's, from this node's UIs: the relay's notices of others come in below.
                            case .typing(let roomID, let userID, let isTyping) where userID == me && rooms.contains(roomID):
                                typingSink.yield((roomID, isTyping))
                            default: break
                            }
                        }
                    }
                    group.addTask {
                        // Events signed while the connection was down are in the outbox: the first push sends them.
                        try await client.transport.keep(
                            rooms, session: session, wake: wake,
                            synced: { report in
                                try? self.node.store.clearSendFailure(.relay, roomID: report.roomID)
                                if failures.reset() > 0 { self.observer.relayRecovered(relay: text) }
                                self.observer.relaySynced(relay: text, report)
                                arrivalSink.yield(report.roomID)
                            },
                            arrived: { roomID, eventIDs in
                                self.observer.relayArrived(roomID: roomID, eventIDs: eventIDs)
                                arrivalSink.yield(roomID)
                            },
                            typing: typing,
                            typed: { roomID, userID, isTyping in
                                // This user's other devices typing would come back here as this node's own: UIs show
                                // others only.
                                guard userID != me else { return }
                                self.node.feed.post(.typing(roomID: roomID, userID: userID, isTyping: isTyping))
                            })
                    }
                    // Events that came may be a new member device to share keys with: the key events the node signs
                    // then reach the relay through the feed and the outbox, like any event of this device.
                    group.addTask {
                        for await roomID in arrivals { _ = await client.exchangeKeys(roomID) }
                    }
                    group.addTask {
                        await self.stopping.wait(upToMs: Int64.max / 2)
                        throw CancellationError()
                    }
                    defer { group.cancelAll() }
                    try await group.next()
                }
            } catch is CancellationError {
                return
            } catch {
                if stopping.isClosed || Task.isCancelled { return }
                let count = failures.add()
                let waitMs = Int64(min(60_000.0, 1_000 * pow(2.0, Double(min(count - 1, 6)))) * Double.random(in: 0.5...1.0))
                let failure = ClientError(describing: error, home: node.home)
                for roomID in rooms {
                    try? node.store.recordSendFailure(.relay, roomID: roomID, reason: failure.message, code: failure.code.name, nowMs: node.clock())
                }
                observer.relayFailed(relay: text, report: "relay \(text): \(failure.message) Trying again in \(waitMs / 1000) s.")
                await stopping.wait(upToMs: waitMs)
            }
        }
    }
}

/// Failures in a row of one relay's connection.
final class FailureCount: Sendable {
    private let count = Mutex(0)
    func add() -> Int {
        count.withLock {
            $0 += 1
            return $0
        }
    }
    /// Ends the run of failures.
    /// - Returns: how long it was.
    func reset() -> Int {
        count.withLock { count in
            defer { count = 0 }
            return count
        }
    }
}
