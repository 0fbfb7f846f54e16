import Foundation
import Logging
import ParleyCore

extension NodeRunner {
    /// Types whose arrival may call for a delivered receipt; the store decides whether one does
    /// (``Node/acknowledgeDelivery(_:)``). Receipts are not among them, so receipts never answer receipts.
    static let acknowledgedTypes: Set<String> = [EventType.message, EventType.edit, EventType.reaction, EventType.encrypted]

    /// Sends the automatic delivered receipts: a room is looked at when content arrives in it (and every room at the
    /// start, for what came while the node was off, and again if the feed cut this watcher off for falling behind),
    /// and again when its paced receipt falls due.
    func acknowledgeDeliveries() async {
        let arrived = Doorbell()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while !self.stopping.isClosed && !Task.isCancelled {
                    let subscription = self.node.feed.subscribe(backlog: 100_000)
                    for room in (try? self.node.store.roomIDs()) ?? [] where self.settings.roomID.map({ $0 == room }) ?? true {
                        self.receiptsDue.withLock { $0[room] = 0 }
                    }
                    arrived.ring()
                    for await activity in subscription.activity {
                        let roomID: String
                        switch activity {
                        case .events(let room, let events) where events.contains(where: { Self.acknowledgedTypes.contains($0.type) }): roomID = room
                        case .receiptWaiting(let room): roomID = room
                        default: continue
                        }
                        guard self.settings.roomID.map({ $0 == roomID }) ?? true else { continue }
                        self.receiptsDue.withLock { $0[roomID] = 0 }
                        arrived.ring()
                    }
                }
            }
            group.addTask {
                while !self.stopping.isClosed {
                    let now = self.node.clock()
                    for (roomID, dueMs) in self.receiptsDue.withLock({ $0 }) where dueMs <= now { self.acknowledge(roomID) }
                    let next = self.receiptsDue.withLock { $0.values.min() }.map { max($0 - self.node.clock(), 1) } ?? 60_000
                    await arrived.wait(upToMs: min(next, 60_000))
                }
            }
            while !stopping.isClosed { await stopping.wait(upToMs: 60_000) }
            group.cancelAll()
        }
    }

    private func acknowledge(_ roomID: String) {
        do {
            switch try node.acknowledgeDelivery(roomID) {
            case .upToDate: receiptsDue.withLock { _ = $0.removeValue(forKey: roomID) }
            case .due(let atMs): receiptsDue.withLock { $0[roomID] = atMs }
            case .sent(let receipt):
                // Looked at again: a read receipt sent may leave newer content for a delivered one, at the next pace.
                receiptsDue.withLock { $0[roomID] = 0 }
                logger.debug("Delivery acknowledged", metadata: ["room.id": "\(roomID)", "event.id": "\(receipt.event.eventID)"])
            }
        } catch {
            // Tried again with the next arrival, or in a minute.
            receiptsDue.withLock { $0[roomID] = node.clock() + 60_000 }
            logger.notice("Delivered receipt not sent", metadata: ["room.id": "\(roomID)", "error": "\(ClientError(describing: error).message)"])
        }
    }
}
