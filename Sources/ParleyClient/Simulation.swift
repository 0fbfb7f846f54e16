import Foundation
import Logging
import ParleyBucket
import ParleyCore
import ParleyPeer
import ParleyStore
import ParleySync
import Synchronization

/// Many devices in one process, each a node with its own home and store, chatting in shared rooms: over peers on
/// 127.0.0.1 through a ``FaultProxy`` (loss, reordering, duplication, devices going offline, a partition), or through
/// a folder bucket each device reaches over a link that can go down: what `parley sim` runs and reports
/// (docs/CLI.md). Messages, some sharing files, go out at a chosen rate from random devices; the report says how long
/// each took to reach each other device (a file: until its blocks are all there), how long the devices took to agree
/// once the network healed, what it cost per event, and whether every device ended with the same events and the
/// same room state.
public struct Simulation: Sendable {
    /// What carries the devices' events.
    public enum Transport: String, Sendable, CaseIterable {
        /// UDP between the devices (docs/PROTOCOL.md §17), through the fault proxy when faults are asked for.
        case peers
        /// A folder bucket (§13), each device's node running as `parley node` runs it.
        case bucket
        /// A relay (§15) running beside the devices (``Settings/relay``), each device's node running as `parley node`
        /// runs it, with an account there.
        case relay
    }

    /// A device offline for a stretch of the run.
    public struct Downtime: Sendable, Equatable {
        public var device: Int
        public var from: Double
        public var to: Double

        public init(device: Int, from: Double, to: Double) {
            self.device = device
            self.from = from
            self.to = to
        }

        /// Reads `DEVICE:FROM-TO` (seconds), as `parley sim --down` takes it.
        public init?(parsing text: String) {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let device = Int(parts[0]), device >= 0 else { return nil }
            let span = parts[1].split(separator: "-", omittingEmptySubsequences: false)
            guard span.count == 2, let from = Double(span[0]), let to = Double(span[1]), from >= 0, to > from else { return nil }
            self.init(device: device, from: from, to: to)
        }
    }

    public struct Settings: Sendable {
        public var transport = Transport.peers
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
        /// Devices offline on a schedule: each from `from` to `to` seconds into the run (as well as any drawn at random).
        public var downtimes: [Downtime] = []
        /// The fraction of messages that share a file, and each file's bytes.
        public var fileShare = 0.0
        public var fileBytes = 65_536
        /// The relay's address, for ``Transport/relay``: one the caller runs (`parley sim` runs one in its process).
        public var relay: String?
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
        public var transport = Transport.peers
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
        /// Bucket requests (puts, gets, lists, heads), when the transport is a bucket.
        public var requests = 0
        /// Files shared; file-and-recipient pairs whose blocks all arrived, with their latencies (ms); pairs that did not.
        public var files = 0
        public var fileLatenciesMs: [Int64] = []
        public var filesUndelivered = 0

        public func percentile(_ fraction: Double) -> Int64? { Self.percentile(fraction, of: latenciesMs) }

        /// A percentile of files' delivery latencies.
        public func filePercentile(_ fraction: Double) -> Int64? { Self.percentile(fraction, of: fileLatenciesMs) }

        static func percentile(_ fraction: Double, of values: [Int64]) -> Int64? {
            guard !values.isEmpty else { return nil }
            let sorted = values.sorted()
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
                    "transport": .string(transport.rawValue), "files": .integer(Int64(files)), "file_deliveries": .integer(Int64(fileLatenciesMs.count)),
                    "files_undelivered": .integer(Int64(filesUndelivered)), "requests": .integer(Int64(requests)),
                    "file_latency_ms": .object(
                        JSONObject(["p50": number(filePercentile(0.5)), "p95": number(filePercentile(0.95)), "p99": number(filePercentile(0.99))])),
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

    /// One device of the run: its node, and the peer transport or bucket client that carries its events.
    final class Device: Sendable {
        let index: Int
        let node: Node
        let transport: PeerTransport?
        let client: BucketClient?

        init(index: Int, node: Node, transport: PeerTransport? = nil, client: BucketClient? = nil) {
            self.index = index
            self.node = node
            self.transport = transport
            self.client = client
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
        /// Each file shared: when, and by which device; its recipients so far; their latencies.
        let filesSent = Mutex<[String: (ms: Int64, sender: Int)]>([:])
        let fileArrivals = Mutex<[String: Set<Int>]>([:])
        let fileLatencies = Mutex<[Int64]>([])

        /// The addresses at which `device` reaches the others: through the proxy when there is one.
        func peers(of device: Int, count: Int) -> [String] {
            guard let ports = self.ports.withLock({ $0 }) else { return [] }
            let proxy = self.proxy.withLock { $0 }
            return (0..<count).filter { $0 != device }.map { "127.0.0.1:\(proxy?.port(of: $0, seenBy: device) ?? ports[$0])" }
        }

        /// Files whose blocks arrived before their sharing was recorded.
        let earlyFiles = Mutex<[String: [(device: Int, ms: Int64)]]>([:])

        /// Records a file shared at `ms` (taken before sharing), and the arrivals that came first.
        func fileSent(_ eventID: String, at ms: Int64, by sender: Int) {
            filesSent.withLock { $0[eventID] = (ms, sender) }
            for arrival in earlyFiles.withLock({ $0.removeValue(forKey: eventID) }) ?? [] { fileArrived(eventID, at: arrival.ms, on: arrival.device) }
        }

        /// Records that every block of a file is on `device` at `ms`.
        func fileArrived(_ eventID: String, at ms: Int64, on device: Int) {
            let origin = filesSent.withLock { sent -> (ms: Int64, sender: Int)? in
                guard let origin = sent[eventID] else {
                    earlyFiles.withLock { $0[eventID, default: []].append((device, ms)) }
                    return nil
                }
                return origin
            }
            guard let origin, origin.sender != device, fileArrivals.withLock({ $0[eventID, default: []].insert(device).inserted }) else { return }
            fileLatencies.withLock { $0.append(ms - origin.ms) }
        }

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
        let tally = Tally()
        var report = Report()
        report.transport = settings.transport
        report.devices = settings.devices
        report.rooms = roomIDs.count
        switch settings.transport {
        case .peers: report = try await runPeers(in: directory, rooms: roomIDs, tally: tally, progress: progress, report: report)
        case .bucket: report = try await runBucket(in: directory, rooms: roomIDs, tally: tally, progress: progress, report: report)
        case .relay: report = try await runRelay(in: directory, rooms: roomIDs, tally: tally, progress: progress, report: report)
        }
        let arrived = tally.arrivals.withLock { $0 }
        let expected = tally.sent.withLock { $0 }
        report.latenciesMs = tally.latencies.withLock { $0 }
        report.deliveries = report.latenciesMs.count
        report.undelivered = expected.reduce(0) { total, entry in total + (report.devices - 1 - (arrived[entry.key]?.count ?? 0)) }
        report.files = tally.filesSent.withLock { $0.count }
        report.fileLatenciesMs = tally.fileLatencies.withLock { $0 }
        report.filesUndelivered = report.files * (report.devices - 1) - report.fileLatenciesMs.count
        return report
    }

    /// Watches a device's feed: arrivals for the tally, rooms to `wake` (the peer transport's pushes), and files to
    /// fetch from `source` (retried until they come or the run ends).
    private func watch(
        _ device: Device, in group: inout ThrowingTaskGroup<Void, any Error>, tally: Tally, wake: AsyncStream<String>.Continuation?,
        source: @escaping @Sendable (String) throws -> (any BlockSource)?
    ) {
        let subscription = device.node.feed.subscribe(backlog: 1_000_000)
        let (messages, arrived) = AsyncStream<(roomID: String, eventID: String)>.makeStream()
        group.addTask {
            for await activity in subscription.activity {
                guard case .events(let roomID, let summaries) = activity else { continue }
                wake?.yield(roomID)
                let now = Self.monotonicMs()
                for summary in summaries where summary.type == EventType.message {
                    tally.arrived(summary.eventID, at: now, on: device.index)
                    if summary.senderID != device.node.identity.userID { arrived.yield((roomID, summary.eventID)) }
                }
            }
        }
        guard settings.fileShare > 0 else { return }
        group.addTask {
            await withTaskGroup(of: Void.self) { fetches in
                for await message in messages {
                    guard let file = try? device.node.fileAttachment(eventID: message.eventID) else { continue }
                    fetches.addTask {
                        while !Task.isCancelled {
                            do {
                                guard let source = try source(message.roomID) else { throw ClientError(.notFound, "no source of blocks yet") }
                                _ = try await device.node.fetchBlocks(of: file, from: source)
                                tally.fileArrived(message.eventID, at: Self.monotonicMs(), on: device.index)
                                return
                            } catch {
                                try? await Task.sleep(for: .milliseconds(500))
                            }
                        }
                    }
                }
            }
        }
    }

    /// The devices over peers: each device's transport, woken by its feed; the proxy in front of them once their ports
    /// are known, when faults are asked for.
    private func runPeers(
        in directory: String, rooms roomIDs: [String], tally: Tally, progress: @escaping @Sendable (String) -> Void, report given: Report
    ) async throws -> Report {
        let devices = try makeDevices(in: directory, rooms: roomIDs).map { node in
            Device(
                index: node.index, node: node.node,
                transport: PeerTransport(
                    host: NodeTransportHost(node: node.node, transport: .peer), settings: settings.peers,
                    logger: Logger(label: "parley.sim", factory: { _ in SwiftLogNoOpLogHandler() })))
        }
        let (ports, portSink) = AsyncStream<(Int, Int)>.makeStream()
        var report = given
        try await withThrowingTaskGroup(of: Void.self) { group in
            for device in devices {
                let transport = device.transport!
                let (wake, ringer) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(256))
                watch(device, in: &group, tally: tally, wake: ringer) { roomID in
                    PeerBlockSource(transport: transport, roomID: roomID, peers: tally.peers(of: device.index, count: devices.count))
                }
                group.addTask {
                    try await transport.run(
                        listen: "127.0.0.1:0",
                        peers: {
                            let others = tally.peers(of: device.index, count: devices.count)
                            return others.isEmpty ? [:] : Dictionary(uniqueKeysWithValues: roomIDs.map { ($0, others) })
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
            let proxy =
                asksForFaults
                ? try FaultProxy(
                    devicePorts: devicePorts, plan: FaultPlan(loss: settings.loss, duplication: settings.duplication, reordering: settings.reordering))
                : nil
            tally.proxy.withLock { $0 = proxy }
            tally.ports.withLock { $0 = devicePorts }
            defer { proxy?.stop() }

            report = try await drive(devices: devices, rooms: roomIDs, network: proxy, tally: tally, progress: progress, report: report)
            report.proxyDropped = proxy?.counts.dropped ?? 0
            for device in devices {
                let counters = device.transport!.counters
                report.datagrams += counters.datagramsOut
                report.bytes += counters.bytesOut
                report.syncBytes += counters.syncBytesOut
            }
            group.cancelAll()
        }
        return report
    }

    var asksForFaults: Bool {
        settings.loss > 0 || settings.duplication > 0 || settings.reordering > 0 || settings.offline > 0 || settings.partitionSeconds != nil
            || !settings.downtimes.isEmpty
    }

    /// The devices through a relay: each has an account there and runs its node as `parley node` does, over a
    /// WebSocket that the relay pushes events down. The link is TCP, so no fault is simulated.
    private func runRelay(
        in directory: String, rooms roomIDs: [String], tally: Tally, progress: @escaping @Sendable (String) -> Void, report given: Report
    ) async throws -> Report {
        guard let relay = settings.relay else { throw ClientError(.invalidArgument, "A relay simulation needs the relay's address.") }
        var devices: [Device] = []
        for index in 0..<settings.devices {
            let node = try makeNode(index, in: directory)
            try await RelayClient(node: node).register(relay: relay, password: "simulated-\(UUID().uuidString)")
            devices.append(Device(index: index, node: node, client: BucketClient(node: node, settings: BucketSettings())))
        }
        let creator = RelayClient(node: devices[0].node)
        for roomID in roomIDs {
            _ = try await creator.createRoom(roomID, relay: relay, name: "Simulation \(roomID)")
            for device in devices.dropFirst() {
                try creator.node.invite(roomID, userID: device.node.identity.userID, key: device.node.identity.signingKeyBase64)
            }
            _ = try await creator.sync([roomID])
            let code = InviteCode(
                roomID: roomID, creatorFingerprint: InviteCode.fingerprint(ofKey: creator.node.identity.signingKeyBase64)!, locations: [.relay(url: relay)])
            for device in devices.dropFirst() { _ = try await RelayClient(node: device.node).join(code) }
            for device in devices { _ = try await RelayClient(node: device.node).sync([roomID]) }
        }
        let runners = devices.map {
            NodeRunner(
                client: $0.client!, settings: NodeRunner.Settings(), observer: SilentObserver(),
                logger: Logger(label: "parley.sim", factory: { _ in SwiftLogNoOpLogHandler() }))
        }
        var report = given
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (device, runner) in zip(devices, runners) {
                watch(device, in: &group, tally: tally, wake: nil) { roomID in try RelayClient(node: device.node).blockSource(roomID) }
                group.addTask { try await runner.run() }
            }
            report = try await drive(devices: devices, rooms: roomIDs, network: nil, tally: tally, progress: progress, report: report)
            for runner in runners { runner.shutDown() }
            group.cancelAll()
        }
        return report
    }

    /// The devices through a folder bucket: each runs its node as `parley node` does (polling every interval, woken by
    /// the folder's changes), over a link that counts requests and bytes and fails while the device is offline or cut off.
    private func runBucket(
        in directory: String, rooms roomIDs: [String], tally: Tally, progress: @escaping @Sendable (String) -> Void, report given: Report
    ) async throws -> Report {
        let url = try BucketURL("file://\(directory)/bucket")
        try FolderStore(root: directory + "/bucket").createRoot(intermediateFolders: true)
        let links = BucketLinks()
        var devices: [Device] = []
        for index in 0..<settings.devices {
            let node = try makeNode(index, in: directory)
            devices.append(
                Device(
                    index: index, node: node,
                    client: BucketClient(node: node, settings: BucketSettings()) { url throws(BucketError) in
                        SimulatedLink(base: try url.open(environment: [:]), device: index, links: links)
                    }))
        }
        for roomID in roomIDs {
            let creator = devices[0].client!
            _ = try await creator.createRoom(roomID, bucket: url, name: "Simulation \(roomID)")
            for device in devices.dropFirst() {
                try creator.node.invite(roomID, userID: device.node.identity.userID, key: device.node.identity.signingKeyBase64)
            }
            _ = try await creator.flush(roomID)
            let code = try InviteCode(parsing: try creator.inviteCode(roomID)!.text)
            for device in devices.dropFirst() { _ = try await device.client!.join(code) }
            for device in devices { _ = try await device.client!.sync(roomID) }
        }
        links.reset()
        var runnerSettings = NodeRunner.Settings()
        runnerSettings.schedule = BucketSchedule.Settings(
            pollIntervalMs: settings.peers.intervalMs, flushAfterMs: 0, maxDelayMs: max(2_000, settings.peers.intervalMs * 2),
            failureBaseMs: settings.peers.intervalMs)
        let runners = devices.map {
            NodeRunner(
                client: $0.client!, settings: runnerSettings, observer: SilentObserver(),
                logger: Logger(label: "parley.sim", factory: { _ in SwiftLogNoOpLogHandler() }))
        }
        var report = given
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (device, runner) in zip(devices, runners) {
                watch(device, in: &group, tally: tally, wake: nil) { roomID in try device.client!.blockSource(roomID) }
                group.addTask { try await runner.run() }
            }
            report = try await drive(devices: devices, rooms: roomIDs, network: links, tally: tally, progress: progress, report: report)
            (report.requests, report.bytes) = links.totals
            for runner in runners { runner.shutDown() }
            group.cancelAll()
        }
        return report
    }

    /// Sends messages for the run's length (partition and offline toggles on their schedule), then heals the network
    /// and waits for the devices to agree.
    private func drive(
        devices: [Device], rooms: [String], network: (any SimulatedNetwork)?, tally: Tally, progress: @Sendable (String) -> Void, report: Report
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
        var randomlyOffline: Set<Int> = []
        var messageNumber = 0
        let interval = 1.0 / max(settings.rate, 0.001)
        var nextSend = Double(start)
        while true {
            let now = Self.monotonicMs()
            if now >= endMs { break }
            if settings.partitionSeconds != nil {
                if !isPartitioned && healedAt == nil && now >= partitionStart {
                    network?.partition(Set(0..<(devices.count / 2)))
                    isPartitioned = true
                    progress("partition: devices 0–\(devices.count / 2 - 1) cut off from the rest for \(Int(settings.partitionSeconds!)) s")
                } else if isPartitioned && now >= partitionEnd {
                    network?.partition([])
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
                randomlyOffline = Set(devices.indices.filter { _ in Double.random(in: 0..<1, using: &random) < settings.offline })
            }
            // Offline now: the random draw, and the schedule's downtimes that cover this moment.
            let elapsed = Double(now - start) / 1000
            let wanted = randomlyOffline.union(settings.downtimes.filter { $0.from <= elapsed && elapsed < $0.to }.map(\.device))
            for index in devices.indices where wanted.contains(index) != offline.contains(index) {
                network?.setOffline(index, wanted.contains(index))
                if wanted.contains(index) { offline.insert(index) } else { offline.remove(index) }
            }
            while Double(now) >= nextSend {
                nextSend += interval * 1000
                let device = devices[Int.random(in: 0..<devices.count, using: &random)]
                let roomID = rooms[Int.random(in: 0..<rooms.count, using: &random)]
                messageNumber += 1
                let text = "sim message \(messageNumber) from device \(device.index)"
                if Double.random(in: 0..<1, using: &random) < settings.fileShare {
                    // The file is made before the clock starts: sharing it (sealing, storing) is what is measured.
                    let path = device.node.home.path + "/sim-file-\(messageNumber)"
                    var contents = Data(count: settings.fileBytes)
                    contents.withUnsafeMutableBytes { bytes in
                        for offset in stride(from: 0, to: bytes.count, by: 8) {
                            withUnsafeBytes(of: random.next()) { word in
                                for index in 0..<min(8, bytes.count - offset) { bytes[offset + index] = word[index] }
                            }
                        }
                    }
                    FileManager.default.createFile(atPath: path, contents: contents)
                    let sentMs = Self.monotonicMs()
                    let event = try device.node.shareFile(roomID, path: path, caption: text)
                    tally.sent(event.event.eventID, at: sentMs, by: device.index)
                    tally.fileSent(event.event.eventID, at: sentMs, by: device.index)
                } else {
                    let sentMs = Self.monotonicMs()
                    let event = try device.node.send(roomID, text: text)
                    tally.sent(event.event.eventID, at: sentMs, by: device.index)
                }
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
        network?.partition([])
        for index in offline { network?.setOffline(index, false) }
        let stopped = Self.monotonicMs()
        while Self.monotonicMs() - stopped < Int64(settings.settleSeconds * 1000) {
            if try isConverged(devices, rooms: rooms) {
                report.convergedAtEndMs = Self.monotonicMs() - stopped
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        // Files still being fetched get the rest of the settling time.
        let pairs = tally.filesSent.withLock { $0.count } * (devices.count - 1)
        while tally.fileLatencies.withLock({ $0.count }) < pairs, Self.monotonicMs() - stopped < Int64(settings.settleSeconds * 1000) {
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

    /// A device's node, in its own home under `directory`.
    private func makeNode(_ index: Int, in directory: String) throws -> Node {
        let home = ParleyHome(path: directory + "/device-\(index)")
        _ = try Identity.create(userID: String(format: "device-%02d", index), home: home)
        return try Node(home: home)
    }

    /// The devices' nodes, every one a joined member of every room (set up by copying events between the stores, not
    /// over the network).
    private func makeDevices(in directory: String, rooms: [String]) throws -> [(index: Int, node: Node)] {
        let nodes = try (0..<settings.devices).map { try makeNode($0, in: directory) }
        let creator = nodes[0]
        for roomID in rooms {
            _ = try creator.createRoom(roomID, name: "Simulation \(roomID)")
            for node in nodes.dropFirst() { try creator.invite(roomID, userID: node.identity.userID, key: node.identity.signingKeyBase64) }
            try copyRoom(roomID, from: creator, to: Array(nodes.dropFirst()))
            var joins: [VerifiedEvent] = []
            for node in nodes.dropFirst() { joins.append(try node.join(roomID)) }
            for node in nodes { _ = try node.store.ingest(events: joins, receivedMs: node.clock()) }
        }
        return Array(nodes.enumerated()).map { ($0.offset, $0.element) }
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

/// What can cut the simulated devices off: the fault proxy between peers, or the links to a bucket.
protocol SimulatedNetwork: Sendable {
    /// Cuts `group` off from the rest; an empty group heals.
    func partition(_ group: Set<Int>)
    func setOffline(_ device: Int, _ isOffline: Bool)
}

extension FaultProxy: SimulatedNetwork {}

/// The devices' links to a bucket: down for a device that is offline or on the cut side of a partition (there is one
/// bucket, so a cut half reaches nobody); counting requests and bytes moved.
final class BucketLinks: SimulatedNetwork {
    private let state = Mutex((offline: Set<Int>(), cut: Set<Int>(), requests: 0, bytes: 0))

    func partition(_ group: Set<Int>) { state.withLock { $0.cut = group } }

    func setOffline(_ device: Int, _ isOffline: Bool) {
        state.withLock {
            if isOffline { $0.offline.insert(device) } else { $0.offline.remove(device) }
        }
    }

    func isUp(_ device: Int) -> Bool { state.withLock { !$0.offline.contains(device) && !$0.cut.contains(device) } }

    func count(requests: Int = 1, bytes: Int) {
        state.withLock {
            $0.requests += requests
            $0.bytes += bytes
        }
    }

    /// Requests and bytes (both ways) since the last reset.
    var totals: (requests: Int, bytes: Int) { state.withLock { ($0.requests, $0.bytes) } }

    func reset() {
        state.withLock {
            $0.requests = 0
            $0.bytes = 0
        }
    }
}

/// One device's link to the bucket: every request fails as unreachable while the link is down.
final class SimulatedLink: ObjectStore {
    let base: any ObjectStore
    let device: Int
    let links: BucketLinks

    init(base: any ObjectStore, device: Int, links: BucketLinks) {
        self.base = base
        self.device = device
        self.links = links
    }

    var location: String { base.location }

    private func up(_ bytes: Int = 0) throws(BucketError) {
        guard links.isUp(device) else { throw BucketError(.unreachable, "device \(device) is offline (simulated)") }
        links.count(bytes: bytes)
    }

    func putIfAbsent(key: String, bytes: [UInt8], retention: Retention?) async throws(BucketError) -> PutOutcome {
        try up(bytes.count)
        return try await base.putIfAbsent(key: key, bytes: bytes, retention: retention)
    }

    func get(key: String, maxBytes: Int) async throws(BucketError) -> [UInt8] {
        try up()
        let bytes = try await base.get(key: key, maxBytes: maxBytes)
        links.count(requests: 0, bytes: bytes.count)
        return bytes
    }

    func list(prefix: String, startAfter: String?, delimiter: String?, continuation: String?, maxKeys: Int) async throws(BucketError) -> ListPage {
        try up()
        return try await base.list(prefix: prefix, startAfter: startAfter, delimiter: delimiter, continuation: continuation, maxKeys: maxKeys)
    }

    func head(key: String) async throws(BucketError) -> ObjectInfo? {
        try up()
        return try await base.head(key: key)
    }

    func delete(key: String) async throws(BucketError) {
        try up()
        try await base.delete(key: key)
    }

    func changes(under prefix: String) -> AsyncStream<Void>? { base.changes(under: prefix) }
}

/// A runner's observer that says nothing: the simulation reports for itself.
struct SilentObserver: NodeRunnerObserver {
    func roomSynced(_ room: BucketRoom, _ report: SyncReport) {}
    func roomFailed(_ room: BucketRoom, report: String) {}
    func roomRecovered(_ room: BucketRoom, report: String) {}
    func flushingBeforeExit(events: Int, rooms: Int) {}
    func leftUnsent(_ room: BucketRoom, events: Int, reason: String) {}
}
