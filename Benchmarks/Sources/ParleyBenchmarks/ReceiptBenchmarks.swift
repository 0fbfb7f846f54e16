import Foundation
@_spi(Tools) import ParleyClient
import ParleyCore
import ParleyStore

// MARK: Receipts (docs/PROTOCOL.md §7.10)

/// A clock the simulation moves on.
final class SimulatedClock: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int64 = 1_790_000_000_000
    var ms: Int64 {
        get { lock.withLock { value } }
        set { lock.withLock { value = newValue } }
    }
}

/// A room of `members` nodes (each its own home and store) busy at `rate` messages a second for `seconds` of
/// simulated time, each node taking what the others sent every `pollSeconds` (as from a bucket polled that often)
/// and sending delivered receipts exactly as a running node does (``Node/acknowledgeDelivery(_:)`` when due). Counts
/// receipts against messages, and measures how long after a message each other device's receipt covered it.
func receiptBenchmarks(workdir: String, members: Int, seconds: Int, rate: Double = 1, pollSeconds: Int = 10) {
    let clock = SimulatedClock()
    let roomID = "busy"
    let nodes = (0..<members).map { index -> Node in
        let home = ParleyHome(path: "\(workdir)/receipts-\(members)/member\(index)")
        try? FileManager.default.removeItem(atPath: home.path)
        _ = try! Identity.create(userID: "member\(index)", home: home)
        return try! Node(home: home, clock: { clock.ms })
    }
    var log: [VerifiedEvent] = try! nodes[0].createRoom(roomID)
    var taken = Array(repeating: 0, count: members)
    taken[0] = log.count
    /// Hands each node what the others signed since it last looked.
    func deliver(_ index: Int) {
        let key = nodes[index].identity.signingKeyBase64
        let fresh = log[taken[index]...].filter { $0.event.senderKey != key }
        taken[index] = log.count
        if !fresh.isEmpty { _ = try! nodes[index].store.ingest(events: Array(fresh), receivedMs: clock.ms) }
    }
    for index in 1..<members {
        clock.ms += 1
        log.append(try! nodes[0].invite(roomID, userID: "member\(index)", key: nodes[index].identity.signingKeyBase64))
    }
    for index in 1..<members {
        deliver(index)
        clock.ms += 1
        log.append(try! nodes[index].join(roomID))
    }
    for index in 0..<members { deliver(index) }

    var seed: UInt64 = 7
    var due = Array(repeating: Int64(0), count: members)
    var messages: [(sender: Int, event: VerifiedEvent)] = []
    var (receipts, receiptBytes, messageBytes) = (0, 0, 0)
    let start = clock.ms
    let cpuBefore = ownCPUSeconds()
    var carry = 0.0
    for second in 0..<seconds {
        clock.ms = start + Int64(second) * 1000
        carry += rate
        while carry >= 1 {
            carry -= 1
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let sender = Int((seed >> 33) % UInt64(members))
            let event = try! nodes[sender].send(roomID, text: "message \(messages.count) of the busy room, about as long as a chat line")
            log.append(event)
            messages.append((sender, event))
            messageBytes += event.wire.count
        }
        for index in 0..<members {
            // Each node polls on its own phase, as nodes started at different times do, and looks whether it owes a
            // receipt after each poll (a running node does on each arrival).
            if (second + index) % pollSeconds == 0 {
                deliver(index)
                if due[index] == .max { due[index] = 0 }
            }
            guard due[index] <= clock.ms else { continue }
            switch try! nodes[index].acknowledgeDelivery(roomID) {
            case .upToDate: due[index] = .max
            case .due(let atMs): due[index] = atMs
            case .sent(let receipt):
                log.append(receipt)
                receipts += 1
                receiptBytes += receipt.wire.count
                due[index] = .max
            }
        }
    }
    let cpu = ownCPUSeconds() - cpuBefore
    for index in 0..<members { deliver(index) }
    // Delivery latency: for a sample of messages, each other device's first covering receipt.
    var latencies: [Double] = []
    var pairs = 0
    for (sender, event) in messages.enumerated().filter({ $0.offset % max(1, messages.count / 200) == 0 }).map(\.element) {
        let report = try! nodes[sender].deliveryStatus(roomID, eventID: event.event.eventID)
        pairs += report.recipients.count
        for recipient in report.recipients { if let at = recipient.deliveredMs { latencies.append(Double(at - event.event.timestampMs) / 1000) } }
    }
    latencies.sort()
    func percentile(_ p: Double) -> Double { latencies.isEmpty ? .nan : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
    let ratio = Double(receipts) / Double(max(1, messages.count))
    let label = "\(members) devices, \(rate) msg/s, \(seconds) s simulated, polled every \(pollSeconds) s"
    record("receipts: messages (\(label))", Double(messages.count), "events")
    record("receipts: delivered receipts", Double(receipts), "events")
    record("receipts: receipts per message", ratio * 100, "%", target: "≤ 10%", met: ratio <= 0.10)
    record("receipts: receipt bytes per message byte", Double(receiptBytes) / Double(max(1, messageBytes)) * 100, "%")
    record("receipts: DELIVERED after the message, p50", percentile(0.5), "s")
    record("receipts: DELIVERED after the message, p95", percentile(0.95), "s")
    record("receipts: sampled (message, device) pairs DELIVERED by the end", Double(latencies.count) / Double(max(1, pairs)) * 100, "%")
    record("receipts: CPU for the whole room (every node), per simulated second", cpu / Double(seconds) * 1000, "ms")
}
