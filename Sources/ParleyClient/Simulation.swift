import Foundation
import Logging
import ParleyPeer
import ParleyStore
import ParleySync
import Synchronization

/// Many devices in one process, each a node with its own home and store, chatting in shared rooms over peers on
/// 127.0.0.1 through a ``FaultProxy`` (loss, reordering, duplication, devices going offline, a partition): what
/// `parley sim` runs and reports (docs/CLI.md). Messages go out at a chosen rate from random devices; the report says
/// how long each took to reach each other device, how long the devices took to agree once the network healed, what it
/// cost on the wire per event, and whether every device ended with the same events and the same room state.
public struct Simulation: Sendable {
    public struct Settings: Sendable {
        public var devices = 4
        public var rooms = 1
        /// Messages per second, all devices together.
        public var rate = 5.0
        /// Fractions of datagrams lost, duplicated and reordered, 0 … 1.
        public var loss = 0.0
        public var duplication = 0.0
        public var reordering = 0.0
        /// Seconds of sending.
        public var seconds = 10.0
        /// Cut the first half of the devices off from the rest for this long, from a quarter of the run.
        public var partitionSeconds: Double?
        /// The fraction of devices offline at any time, toggled at random every second.
        public var offline = 0.0
        /// How long to wait at the end for every device to hold the same events.
        public var settleSeconds = 60.0
        public var peers = PeerSettings()
        /// Where the devices' homes go; a fresh temporary folder, removed afterwards, when nil.
        public var directory: String?

        public init() {
            peers.intervalMs = 1_000
        }
    }

    /// What a run measured.
    public struct Report: Sendable {
        public var devices = 0
        public var rooms = 0
        public var messages = 0
        /// Message-and-recipient pairs that arrived, and delivery latencies of those (ms).
        public var deliveries = 0
        public var latenciesMs: [Int64] = []
        /// Pairs that never arrived by the end.
        public var undelivered = 0
        /// From the partition healing until every device held the same events (ms), when there was a partition.
        public var convergedAfterHealMs: Int64?
        /// From the end of sending until every device held the same events (ms); nil when they never did.
        public var convergedAtEndMs: Int64?
        public var sameEvents = false
        public var sameState = false
        public var datagrams = 0
        public var bytes = 0
        public var syncBytes = 0
        public var proxyDropped = 0

        public func percentile(_ fraction: Double) -> Int64? {
            guard !latenciesMs.isEmpty else { return nil }
            let sorted = latenciesMs.sorted()
            return sorted[min(sorted.count - 1, Int((Double(sorted.count) * fraction).rounded(.down)))]
        }

        public var bytesPerEvent: Double { messages == 0 ? 0 : Double(bytes) / Double(messages) }
        public var datagramsPerEvent: Double { messages == 0 ? 0 : Double(datagrams) / Double(messages) }

        public var json: JSONValue {
            func number(_ value: Int64?) -> JSONValue { value.map(JSONValue.integer) ?? .null }
            return .object(
                JSONObject([
                    "devices": .integer(Int64(devices)), "rooms": .integer(Int64(rooms)), "messages": .integer(Int64(messages)),
                    "deliveries": .integer(Int64(deliveries)), "undelivered": .integer(Int64(undelivered)),
                    "latency_ms": .object(JSONObject(["p50": number(percentile(0.5)), "p95": number(percentile(0.95)), "p99": number(percentile(0.99))])),
                    "converged_after_heal_ms": number(convergedAfterHealMs), "converged_at_end_ms": number(convergedAtEndMs),
                    "same_events": .bool(sameEvents), "same_state": .bool(sameState), "datagrams": .integer(Int64(datagrams)),
                    "bytes": .integer(Int64(bytes)), "sync_bytes": .integer(Int64(syncBytes)),
                    "bytes_per_event": .integer(Int64(bytesPerEvent.rounded())),
                    "datagrams_per_event": .integer(Int64(datagramsPerEvent.rounded())), "proxy_dropped": .integer(Int64(proxyDropped)),
                ]))
        }
    }

    public let settings: Settings

    public init(settings: Settings) {
        self.settings = settings
    }

    /// One device of the run.
    final class Device: Sendable {
        let index: Int
        let node: Node
        let transport: PeerTransport

        init(index: Int, node: Node, transport: PeerTransport) {
            self.index = index
            self.node = node
            self.transport = transport
        }
    }

    /// What the devices' feeds and the sender record, shared by their tasks.
    final class Tally: Sendable {
        /// Each message sent: when (monotonic ms) and by which device.
        let sent = Mutex<[String: (ms: Int64, sender: Int)]>([:])
        /// Each message's recipients so far.
        let arrivals = Mutex<[String: Set<Int>]>([:])
        let latencies = Mutex<[Int64]>([])
        /// Arrivals of messages whose sending was not recorded yet (a peer can store one before `send` returns).
        let early = Mutex<[String: [(device: Int, ms: Int64)]]>([:])
        /// The proxy between the devices, once their ports are known, when the run asks for faults.
        let proxy = Mutex<FaultProxy?>(nil)
        /// The devices' own ports, once known.
        let ports = Mutex<[Int]?>(nil)

        /// Records a message sent at `ms` (taken before sending), and the arrivals that came first.
        func sent(_ eventID: String, at ms: Int64, by sender: Int) {
            sent.withLock { $0[eventID] = (ms, sender) }
            for arrival in early.withLock({ $0.removeValue(forKey: eventID) }) ?? [] where arrival.device != sender {
                arrived(eventID, at: arrival.ms, on: arrival.device, sentMs: ms)
            }
        }

        /// Records a message stored on `device` at `ms`.
        func arrived(_ eventID: String, at ms: Int64, on device: Int) {
            // Looked up and stashed under one lock, so an arrival racing its sender's record is never lost.
            let origin = sent.withLock { sent -> (ms: Int64, sender: Int)? in
                guard let origin = sent[eventID] else {
                    early.withLock { $0[eventID, default: []].append((device, ms)) }
                    return nil
                }
                return origin
            }
            guard let origin, origin.sender != device else { return }
            arrived(eventID, at: ms, on: device, sentMs: origin.ms)
        }

        private func arrived(_ eventID: String, at ms: Int64, on device: Int, sentMs: Int64) {
            if arrivals.withLock({ $0[eventID, default: []].insert(device).inserted }) { latencies.withLock { $0.append(ms - sentMs) } }
        }
    }

    /// Monotonic ms: latencies are measured on one clock for every device of the process.
    static func monotonicMs() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }

    /// Runs the simulation; `progress` hears a line about once a second.
    public func run(progress: @escaping @Sendable (String) -> Void = { _ in }) async throws -> Report {
        let temporary = settings.directory == nil ? TemporaryFolder() : nil
        defer { temporary?.remove() }
        let directory = settings.directory ?? temporary!.path
        let roomIDs = (0..<settings.rooms).map { "sim-\($0)" }
        let devices = try makeDevices(in: directory, rooms: roomIDs)
        let tally = Tally()

        // Each device's transport, woken by its feed; the proxy in front of them once their ports are known.
        let (ports, portSink) = AsyncStream<(Int, Int)>.makeStream()
        var report = Report()
        report.devices = devices.count
        report.rooms = roomIDs.count
        try await withThrowingTaskGroup(of: Void.self) { group in
            for device in devices {
                let subscription = device.node.feed.subscribe(backlog: 1_000_000)
                let (wake, ringer) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(256))
                group.addTask {
                    for await activity in subscription.activity {
                        guard case .events(let roomID, let summaries) = activity else { continue }
                        ringer.yield(roomID)
                        let now = Self.monotonicMs()
                        for summary in summaries where summary.type == EventType.message { tally.arrived(summary.eventID, at: now, on: device.index) }
                    }
                }
                group.addTask {
                    try await device.transport.run(
                        listen: "127.0.0.1:0",
                        peers: {
                            guard let ports = tally.ports.withLock({ $0 }) else { return [:] }
                            let proxy = tally.proxy.withLock { $0 }
                            let others = (0..<devices.count).filter { $0 != device.index }.map {
                                "127.0.0.1:\(proxy?.port(of: $0, seenBy: device.index) ?? ports[$0])"
                            }
                            return Dictionary(uniqueKeysWithValues: roomIDs.map { ($0, others) })
                        }, wake: wake, bound: { address in portSink.yield((device.index, Int(address.split(separator: ":").last!)!)) })
                }
            }
            var bound: [Int: Int] = [:]
            for await (index, port) in ports {
                bound[index] = port
                if bound.count == devices.count { break }
            }
            let devicePorts = (0..<devices.count).map { bound[$0]! }
            // With no fault asked for, devices reach each other directly; the proxy's hop is left out of the figures.
            let asksForFaults =
                settings.loss > 0 || settings.duplication > 0 || settings.reordering > 0 || settings.offline > 0 || settings.partitionSeconds != nil
            let proxy =
                asksForFaults
                ? try FaultProxy(
                    devicePorts: devicePorts, plan: FaultPlan(loss: settings.loss, duplication: settings.duplication, reordering: settings.reordering))
                : nil
            tally.proxy.withLock { $0 = proxy }
            tally.ports.withLock { $0 = devicePorts }
            defer { proxy?.stop() }

            report = try await drive(devices: devices, rooms: roomIDs, proxy: proxy, tally: tally, progress: progress, report: report)
            let arrived = tally.arrivals.withLock { $0 }
            let expected = tally.sent.withLock { $0 }
            report.latenciesMs = tally.latencies.withLock { $0 }
            report.deliveries = report.latenciesMs.count
            report.undelivered = expected.reduce(0) { total, entry in total + (devices.count - 1 - (arrived[entry.key]?.count ?? 0)) }
            report.proxyDropped = proxy?.counts.dropped ?? 0
            for device in devices {
                let counters = device.transport.counters
                report.datagrams += counters.datagramsOut
                report.bytes += counters.bytesOut
                report.syncBytes += counters.syncBytesOut
            }
            group.cancelAll()
        }
        return report
    }

    /// Sends messages for the run's length (partition and offline toggles on their schedule), then heals the network
    /// and waits for the devices to agree.
    private func drive(
        devices: [Device], rooms: [String], proxy: FaultProxy?, tally: Tally, progress: @Sendable (String) -> Void, report: Report
    ) async throws -> Report {
        var report = report
        var random = SystemRandomNumberGenerator()
        let start = Self.monotonicMs()
        let endMs = start + Int64(settings.seconds * 1000)
        let partitionStart = start + Int64(settings.seconds * 250)
        let partitionEnd = partitionStart + Int64((settings.partitionSeconds ?? 0) * 1000)
        var isPartitioned = false
        var healedAt: Int64?
        // Messages keep coming after the heal: convergence after it is every device holding what any held then.
        var heldAtHeal: [String: Set<ReconciliationItem>] = [:]
        var nextToggle = start + 1_000
        var nextReport = start + 1_000
        var nextConvergenceCheck = start
        var offline: Set<Int> = []
        var messageNumber = 0
        let interval = 1.0 / max(settings.rate, 0.001)
        var nextSend = Double(start)
        while true {
            let now = Self.monotonicMs()
            if now >= endMs { break }
            if settings.partitionSeconds != nil {
                if !isPartitioned && healedAt == nil && now >= partitionStart {
                    proxy?.partition(Set(0..<(devices.count / 2)))
                    isPartitioned = true
                    progress("partition: devices 0–\(devices.count / 2 - 1) cut off from the rest for \(Int(settings.partitionSeconds!)) s")
                } else if isPartitioned && now >= partitionEnd {
                    proxy?.partition([])
                    isPartitioned = false
                    healedAt = now
                    heldAtHeal = try union(devices, rooms: rooms)
                    progress("partition healed")
                }
            }
            if let healedAt, report.convergedAfterHealMs == nil, now >= nextConvergenceCheck {
                nextConvergenceCheck = now + 100
                if try holdsAll(heldAtHeal, devices, rooms: rooms) {
                    report.convergedAfterHealMs = now - healedAt
                    progress("converged \(now - healedAt) ms after the partition healed")
                }
            }
            if settings.offline > 0 && now >= nextToggle {
                nextToggle = now + 1_000
                for index in devices.indices {
                    let goesOffline = Double.random(in: 0..<1, using: &random) < settings.offline
                    if goesOffline != offline.contains(index) {
                        proxy?.setOffline(index, goesOffline)
                        if goesOffline { offline.insert(index) } else { offline.remove(index) }
                    }
                }
            }
            while Double(now) >= nextSend {
                nextSend += interval * 1000
                let device = devices[Int.random(in: 0..<devices.count, using: &random)]
                let roomID = rooms[Int.random(in: 0..<rooms.count, using: &random)]
                messageNumber += 1
                let sentMs = Self.monotonicMs()
                let event = try device.node.send(roomID, text: "sim message \(messageNumber) from device \(device.index)")
                tally.sent(event.event.eventID, at: sentMs, by: device.index)
            }
            if now >= nextReport {
                nextReport = now + 1_000
                progress(
                    "\((now - start) / 1000) s: \(messageNumber) messages sent, \(tally.latencies.withLock { $0.count }) deliveries of \(messageNumber * (devices.count - 1))"
                )
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        report.messages = messageNumber
        // The network heals: every device back, every cut gone; then the devices must come to hold the same events.
        proxy?.partition([])
        for index in offline { proxy?.setOffline(index, false) }
        let stopped = Self.monotonicMs()
        while Self.monotonicMs() - stopped < Int64(settings.settleSeconds * 1000) {
            if try isConverged(devices, rooms: rooms) {
                report.convergedAtEndMs = Self.monotonicMs() - stopped
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        if settings.partitionSeconds != nil, report.convergedAfterHealMs == nil {
            // The run ended before the partition healed, or before the devices agreed after it: counted from the heal.
            let healed = healedAt ?? stopped
            report.convergedAfterHealMs = report.convergedAtEndMs.map { stopped + $0 - healed }
        }
        report.sameEvents = try isConverged(devices, rooms: rooms)
        report.sameState = try rooms.allSatisfy { roomID in
            let states = try devices.map { try $0.node.store.roomState(roomID: roomID) }
            return states.allSatisfy { $0 == states[0] }
        }
        return report
    }

    /// Every event any device holds, by room.
    private func union(_ devices: [Device], rooms: [String]) throws -> [String: Set<ReconciliationItem>] {
        var union: [String: Set<ReconciliationItem>] = [:]
        for roomID in rooms {
            for device in devices { union[roomID, default: []].formUnion(try device.node.store.reconciliationItems(roomID: roomID).items) }
        }
        return union
    }

    /// Whether every device holds every event of `events`.
    private func holdsAll(_ events: [String: Set<ReconciliationItem>], _ devices: [Device], rooms: [String]) throws -> Bool {
        for roomID in rooms {
            let wanted = events[roomID] ?? []
            for device in devices where !wanted.isSubset(of: Set(try device.node.store.reconciliationItems(roomID: roomID).items)) { return false }
        }
        return true
    }

    /// Whether every device holds the same events in every room.
    private func isConverged(_ devices: [Device], rooms: [String]) throws -> Bool {
        for roomID in rooms {
            let first = Set(try devices[0].node.store.reconciliationItems(roomID: roomID).items)
            for device in devices.dropFirst() where Set(try device.node.store.reconciliationItems(roomID: roomID).items) != first { return false }
        }
        return true
    }

    /// The devices, each with its home, every one a joined member of every room (set up by copying events between the
    /// stores, not over the network).
    private func makeDevices(in directory: String, rooms: [String]) throws -> [Device] {
        var nodes: [Node] = []
        for index in 0..<settings.devices {
            let home = ParleyHome(path: directory + "/device-\(index)")
            _ = try Identity.create(userID: String(format: "device-%02d", index), home: home)
            nodes.append(try Node(home: home))
        }
        let creator = nodes[0]
        for roomID in rooms {
            _ = try creator.createRoom(roomID, name: "Simulation \(roomID)")
            for node in nodes.dropFirst() { try creator.invite(roomID, userID: node.identity.userID, key: node.identity.signingKeyBase64) }
            try copyRoom(roomID, from: creator, to: Array(nodes.dropFirst()))
            var joins: [VerifiedEvent] = []
            for node in nodes.dropFirst() { joins.append(try node.join(roomID)) }
            for node in nodes { _ = try node.store.ingest(events: joins, receivedMs: node.clock()) }
        }
        let peers = settings.peers
        return nodes.enumerated().map { index, node in
            Device(
                index: index, node: node,
                transport: PeerTransport(
                    host: NodeTransportHost(node: node, transport: .peer), settings: peers,
                    logger: Logger(label: "parley.sim", factory: { _ in SwiftLogNoOpLogHandler() })))
        }
    }

    private func copyRoom(_ roomID: String, from source: Node, to targets: [Node]) throws {
        let events = try VerifiedEvent.verifyInParallel(source.store.eventWires(roomID: roomID, fromMs: 0, throughMs: .max)).map { try $0.get() }
        for target in targets { _ = try target.store.ingest(events: events, receivedMs: target.clock()) }
    }
}

/// A folder under the system's temporary directory, removed on request.
struct TemporaryFolder {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "parley-sim-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
