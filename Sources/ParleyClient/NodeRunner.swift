import Foundation
import Logging
import ParleyBucket
import ParleyPeer
import ParleyRelayClient
import ParleyStore
import ParleySync
import ServiceLifecycle
import Synchronization

/// What a running node tells whoever started it (`parley node` logs it, `parley sync --watch` prints it). Called from
/// the rooms' tasks, concurrently.
public protocol NodeRunnerObserver: Sendable {
    /// A sync of `room` worked.
    func roomSynced(_ room: BucketRoom, _ report: SyncReport)
    /// Writing or reading `room` failed; `report` says so in the user's terms (``RoomBackoff``).
    func roomFailed(_ room: BucketRoom, report: String)
    /// `room` works again after failing.
    func roomRecovered(_ room: BucketRoom, report: String)
    /// Shutting down, the outbox still holds `events` events in `rooms` rooms, which are written now.
    func flushingBeforeExit(events: Int, rooms: Int)
    /// Shutting down, `events` events of `room` could not be written; the next sync or node writes them.
    func leftUnsent(_ room: BucketRoom, events: Int, reason: String)
    /// The archives of `room`'s past days were looked at after a sync: what became of each day.
    func roomArchived(_ room: BucketRoom, _ reports: [ArchiveWriteReport])
    /// A room reached through `relay` caught up (its first sync on a connection).
    func relaySynced(relay: String, _ report: RelayTransport.RoomReport)
    /// The connection to `relay` failed; `report` says so and when it is tried again.
    func relayFailed(relay: String, report: String)
    /// The connection to `relay` works again.
    func relayRecovered(relay: String)
    /// Events of `roomID` came from a relay and were taken.
    func relayArrived(roomID: String, eventIDs: [String])
    /// The peer transport listens on `address` (HOST:PORT).
    func peersListening(address: String)
    /// The peer transport stopped; `report` says why and what to do.
    func peersFailed(report: String)
}

extension NodeRunnerObserver {
    public func roomArchived(_ room: BucketRoom, _ reports: [ArchiveWriteReport]) {}
    public func relaySynced(relay: String, _ report: RelayTransport.RoomReport) {}
    public func relayFailed(relay: String, report: String) {}
    public func relayRecovered(relay: String) {}
    public func relayArrived(roomID: String, eventIDs: [String]) {}
    public func peersListening(address: String) {}
    public func peersFailed(report: String) {}
}

/// A node kept running: every bucket room of the home flushed and synced on its own ``BucketSchedule`` (a failing
/// bucket waits longer without delaying the others), and synced at once when its bucket tells of a change (a folder
/// bucket does, ``ObjectStore/changes(under:)``); rooms joined meanwhile picked up, events this device signs in
/// another process written at once, and on shutdown the outbox written before the run ends.
///
/// A `Service`: run it in a `ServiceGroup`, whose graceful shutdown (SIGTERM, SIGINT) lets the action in progress
/// finish, writes the outbox (for at most ``Settings/exitFlushSeconds``) and returns; or stop it with ``shutDown()``.
/// Hold the home's sync lock (``ParleyHome/lockForSyncing(_:)``) while it runs: one node per home.
public final class NodeRunner: Service, Sendable {
    public struct Settings: Sendable {
        /// Each room's schedule: poll interval, how long an event may wait, the longest wait after failures.
        public var schedule = BucketSchedule.Settings()
        /// Only this room, when set.
        public var roomID: String?
        /// How often the store is checked for events signed by other processes (ms).
        public var localCheckMs: Int64 = 100
        /// How often a room whose bucket tells of changes (a watched folder) is still listed, in case a notice was
        /// missed (a file written late into a date folder that is not watched); never more often than the schedule's
        /// own interval says.
        public var watchedPollIntervalMs: Int64 = 30_000
        /// The longest the outbox is written for on shutdown.
        public var exitFlushSeconds = 10.0
        /// How often a room's past days are looked at for archives to write, after a sync (ms), when the bucket settings
        /// say to write them (``BucketSettings/writesArchives``).
        public var archiveEveryMs: Int64 = 3_600_000
        /// Where the peer transport listens (HOST:PORT); no peers are synced when unset.
        public var listenUDP: String?
        /// How the peer transport syncs.
        public var peers = PeerSettings()
        /// The multicast group (HOST:PORT) LAN discovery announces and listens on; off when unset.
        public var discoverGroup: String?
        /// Whether files shared in peer rooms (up to ``Node/maxPrefetchBytes``) are fetched as their messages arrive.
        public var fetchPeerFiles = true

        public init() {}
    }

    public let node: Node
    public let client: BucketClient
    public let settings: Settings
    let observer: any NodeRunnerObserver
    let logger: Logger
    let stopping = Doorbell()
    let bells = Mutex<[String: Doorbell]>([:])
    /// Rooms whose bucket told of a change since their schedule last heard of it.
    let changedRooms = Mutex<Set<String>>([])
    /// Watched rooms whose bucket stopped telling of changes: polled at the usual interval again.
    let unwatchedRooms = Mutex<Set<String>>([])
    let unsentRooms = Mutex(0)
    /// Rooms that may owe a delivered receipt, with when to look at them (``acknowledgeDeliveries()``).
    let receiptsDue = Mutex<[String: Int64]>([:])

    public init(client: BucketClient, settings: Settings, observer: any NodeRunnerObserver, logger: Logger) {
        node = client.node
        self.client = client
        self.settings = settings
        self.observer = observer
        self.logger = logger
    }

    /// Rooms whose outbox could not be written on shutdown (after ``run()``).
    public var roomsLeftUnsent: Int { unsentRooms.withLock { $0 } }

    /// Ends the run as a graceful shutdown does.
    public func shutDown() {
        stopping.close()
        for bell in bells.withLock({ Array($0.values) }) { bell.close() }
    }

    public func run() async throws {
        logger.info("Node started", metadata: ["home": "\(node.home.path)", "poll.ms": "\(settings.schedule.pollIntervalMs)"])
        // Cancelled (a service group ending for another service's sake) or shut down gracefully, the rooms stop alike.
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await keepRooms()
            } onGracefulShutdown: {
                self.shutDown()
            }
        } onCancel: {
            self.shutDown()
        }
        await flushBeforeExit()
        logger.info("Node stopped", metadata: ["rooms.unsent": "\(roomsLeftUnsent)"])
    }

    /// One task per bucket room, started as rooms appear, until shutdown; and one that watches for local events.
    func keepRooms() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.watchLocalEvents() }
            group.addTask { await self.keepRelays() }
            group.addTask { await self.keepPeers() }
            group.addTask { await self.acknowledgeDeliveries() }
            while !stopping.isClosed {
                for room in (try? rooms()) ?? [] {
                    let bell = Doorbell()
                    let isNew = bells.withLock { bells in
                        guard bells[room.roomID] == nil else { return false }
                        bells[room.roomID] = bell
                        return true
                    }
                    guard isNew else { continue }
                    logger.debug("Room kept", metadata: ["room.id": "\(room.roomID)"])
                    group.addTask {
                        await self.keep(room, bell: bell)
                        _ = self.bells.withLock { $0.removeValue(forKey: room.roomID) }
                        _ = self.changedRooms.withLock { $0.remove(room.roomID) }
                        _ = self.unwatchedRooms.withLock { $0.remove(room.roomID) }
                    }
                }
                await stopping.wait(upToMs: settings.schedule.pollIntervalMs)
            }
            shutDown()
        }
    }

    func rooms() throws -> [BucketRoom] {
        let rooms = try node.store.bucketRooms()
        return settings.roomID.map { only in rooms.filter { $0.roomID == only } } ?? rooms
    }

    /// Rings a room as soon as the store gains an event of it, so one signed here (through the local API) is written
    /// at once, and one signed by `parley send` in another shell within ``Settings/localCheckMs``, rather than at
    /// the next poll.
    func watchLocalEvents() async {
        let subscription = node.feed.subscribe(backlog: 100_000)
        await withTaskGroup(of: Void.self) { watchers in
            watchers.addTask {
                // Other processes' events reach the feed only when it looks for them.
                while !self.stopping.isClosed {
                    await self.stopping.wait(upToMs: self.settings.localCheckMs)
                    try? self.node.feed.catchUp()
                }
            }
            watchers.addTask {
                for await activity in subscription.activity {
                    guard case .events(let roomID, _) = activity else { continue }
                    self.bells.withLock { $0[roomID] }?.ring()
                }
            }
            // The first to end is the poller, at shutdown; the feed's stream ends when cancelled.
            await watchers.next()
            watchers.cancelAll()
        }
    }

    /// Flushes and syncs one room as its schedule says, until shutdown or until the room is forgotten; beside it, while
    /// the room's bucket tells of changes, hands them to the schedule.
    func keep(_ room: BucketRoom, bell: Doorbell) async {
        guard let changes = (try? client.store(for: room))?.changes(under: BucketLayout.roomPrefix(room.roomID)) else {
            if case .folder = try? BucketURL(room.bucketURL) {
                // Out of inotify instances, most likely: worth knowing when a folder room is slower than its neighbours.
                logger.notice("Room not watched, polled only", metadata: ["room.id": "\(room.roomID)", "poll.ms": "\(settings.schedule.pollIntervalMs)"])
            }
            return await follow(room, bell: bell, watched: false)
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.forward(changes, of: room, to: bell) }
            await follow(room, bell: bell, watched: true)
            // Ends the watch: the stream's consumer goes away.
            group.cancelAll()
        }
    }

    /// Rings the room for each change its bucket tells of, until the stream ends (cancelled with the room's task, or
    /// the bucket gave up watching).
    func forward(_ changes: AsyncStream<Void>, of room: BucketRoom, to bell: Doorbell) async {
        logger.debug("Room watched", metadata: ["room.id": "\(room.roomID)"])
        for await _ in changes {
            changedRooms.withLock { _ = $0.insert(room.roomID) }
            bell.ring()
        }
        if !Task.isCancelled && !stopping.isClosed {
            logger.notice("Room no longer watched, polled only", metadata: ["room.id": "\(room.roomID)", "poll.ms": "\(settings.schedule.pollIntervalMs)"])
            // Its schedule goes back to the poll interval of an unwatched room.
            unwatchedRooms.withLock { _ = $0.insert(room.roomID) }
            bell.ring()
        }
    }

    /// The room's schedule, driven until shutdown or until the room is forgotten.
    /// - Parameter watched: whether the room's bucket tells of changes: it is then polled only every
    ///   ``Settings/watchedPollIntervalMs``, so an idle node costs next to nothing.
    func follow(_ room: BucketRoom, bell: Doorbell, watched: Bool) async {
        var scheduleSettings = settings.schedule
        // Polled seldom, but retried after a failure as often as an unwatched room.
        if watched { scheduleSettings.pollIntervalMs = max(scheduleSettings.pollIntervalMs, settings.watchedPollIntervalMs) }
        var schedule = BucketSchedule(settings: scheduleSettings, nowMs: node.clock())
        var watched = watched
        var backoff = RoomBackoff(roomID: room.roomID, bucket: room.bucketURL)
        var archivedMs: Int64?
        let metadata: Logger.Metadata = ["room.id": "\(room.roomID)"]
        while !stopping.isClosed {
            let now = node.clock()
            if watched && unwatchedRooms.withLock({ $0.remove(room.roomID) != nil }) {
                watched = false
                schedule = BucketSchedule(settings: settings.schedule, nowMs: now)
            }
            // Taken after the last action's outcome is recorded: a change told during a sync is read by another one.
            if changedRooms.withLock({ $0.remove(room.roomID) != nil }) { schedule.objectsChanged(nowMs: now) }
            let action: BucketSchedule.Action
            do {
                guard try node.store.bucketRoom(roomID: room.roomID) != nil else { return }
                let outbox = try node.store.outboxStatus(roomID: room.roomID, senderKey: node.identity.signingKeyBase64)
                action = schedule.next(nowMs: now, oldestPendingMs: outbox.oldestPendingMs, priority: outbox.priority)
            } catch {
                logger.error("Store unreadable", metadata: metadata.merging(["error": "\(error)"]) { $1 })
                action = .wait(untilMs: now + schedule.failed(nowMs: now))
            }
            do {
                switch action {
                case .wait(let until):
                    await bell.wait(upToMs: until - now)
                    continue
                case .flush:
                    let report = try await client.flush(room.roomID)
                    logger.debug("Flushed", metadata: metadata.merging(["files": "\(report.files.count)", "events": "\(report.events)"]) { $1 })
                    schedule.succeeded(nowMs: node.clock(), synced: false)
                case .sync:
                    // A read is safe to cut short: shutting down does not wait for a long listing or download.
                    guard let report = try await untilStopped({ [client] in try await client.sync(room.roomID) }) else { return }
                    logger.debug(
                        "Synced",
                        metadata: metadata.merging([
                            "files": "\(report.filesRead)", "events": "\(report.accepted.count)", "problems": "\(report.problems.count)",
                        ]) { $1 })
                    schedule.succeeded(nowMs: node.clock(), synced: true)
                    observer.roomSynced(room, report)
                    await archive(room, lastMs: &archivedMs)
                }
                if let recovery = backoff.succeeded(nowMs: node.clock()) { observer.roomRecovered(room, report: recovery) }
            } catch {
                let failedAt = node.clock()
                let delay = schedule.failed(nowMs: failedAt)
                logger.warning("Bucket failed", metadata: metadata.merging(["failures": "\(schedule.failures)", "retry.ms": "\(delay)"]) { $1 })
                observer.roomFailed(room, report: backoff.failed(error, nowMs: failedAt, delayMs: delay))
                let reason = ClientError(describing: error).message
                if case .flush = action {
                    let unsent = (try? node.store.pendingEventIDs(roomID: room.roomID, senderKey: node.identity.signingKeyBase64, limit: 100)) ?? []
                    node.feed.post(
                        .sendFailed(
                            roomID: room.roomID, eventIDs: unsent, transport: TransportName.bucket.rawValue, reason: reason, retryAtMs: failedAt + delay))
                } else {
                    node.feed.post(.syncFailed(roomID: room.roomID, transport: TransportName.bucket.rawValue, reason: reason, retryAtMs: failedAt + delay))
                }
            }
        }
    }

    /// Writes the archives of the room's past days that need one (``BucketClient/writeArchives(_:date:)``), at most
    /// every ``Settings/archiveEveryMs``. A failure is logged and tried again then: archives spare readers work, and
    /// their absence is no fault of the room.
    func archive(_ room: BucketRoom, lastMs: inout Int64?) async {
        let now = node.clock()
        guard client.settings.writesArchives, lastMs.map({ now - $0 >= settings.archiveEveryMs }) ?? true else { return }
        lastMs = now
        let metadata: Logger.Metadata = ["room.id": "\(room.roomID)"]
        do {
            guard let reports = try await untilStopped({ [client] in try await client.writeArchives(room.roomID) }) else { return }
            for report in reports where !report.written.isEmpty {
                logger.info("Day archived", metadata: metadata.merging(["archive.date": "\(report.date)", "archive.parts": "\(report.written.count)"]) { $1 })
            }
            observer.roomArchived(room, reports)
        } catch {
            logger.notice("Archiving failed", metadata: metadata.merging(["error": "\(ClientError(describing: error).message)"]) { $1 })
        }
    }

    /// Runs `body` until it ends, or cancels it when the runner stops.
    /// - Returns: what `body` returned, or `nil` when the runner stopped first.
    func untilStopped<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T? {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                while !self.stopping.isClosed && !Task.isCancelled { await self.stopping.wait(upToMs: 60_000) }
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
    }

    /// Writes what waits in the outbox, within ``Settings/exitFlushSeconds``; tells what stays unsent.
    func flushBeforeExit() async {
        let waiting = ((try? rooms()) ?? []).compactMap { room -> (room: BucketRoom, pending: Int)? in
            let pending = (try? node.store.outboxStatus(roomID: room.roomID, senderKey: node.identity.signingKeyBase64).pending) ?? 0
            return pending > 0 ? (room, pending) : nil
        }
        guard !waiting.isEmpty else { return }
        observer.flushingBeforeExit(events: waiting.map(\.pending).reduce(0, +), rooms: waiting.count)
        let deadline = ContinuousClock.now + .seconds(settings.exitFlushSeconds)
        for (room, pending) in waiting {
            do {
                try await withDeadline(deadline) { [client] in _ = try await client.flush(room.roomID) }
            } catch {
                unsentRooms.withLock { $0 += 1 }
                let reason = error is DeadlineExceeded ? "the bucket did not answer in time" : ClientError(describing: error).message
                observer.leftUnsent(room, events: pending, reason: reason)
            }
        }
    }
}

/// Wakes the tasks waiting on it early (``ring()``), or every wait from now on (``close()``).
final class Doorbell: Sendable {
    private struct State {
        /// Rung while nobody waited: the next wait returns at once.
        var rung = false
        var closed = false
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    var isClosed: Bool { state.withLock { $0.closed } }

    func ring() {
        let waiters = state.withLock { state in
            if state.waiters.isEmpty { state.rung = true }
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    func close() {
        state.withLock { $0.closed = true }
        ring()
    }

    /// Returns when rung (or already rung since the last wait), closed, cancelled, or after `milliseconds`.
    func wait(upToMs milliseconds: Int64) async {
        guard milliseconds > 0 else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: .milliseconds(milliseconds)) }
            group.addTask { await self.waitForRing() }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForRing() async {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    // A cancellation that came before this point found no waiter to resume: it is seen here.
                    if state.closed || state.rung || Task.isCancelled {
                        state.rung = false
                        return true
                    }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}

struct DeadlineExceeded: Error {}

/// Runs `body`, cancelling it at `deadline`.
/// - Throws: ``DeadlineExceeded`` when the deadline came first, else what `body` throws.
func withDeadline(_ deadline: ContinuousClock.Instant, _ body: @escaping @Sendable () async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Bool.self) { group in
        group.addTask {
            try await body()
            return true
        }
        group.addTask {
            try await Task.sleep(until: deadline)
            return false
        }
        defer { group.cancelAll() }
        guard try await group.next() == true else { throw DeadlineExceeded() }
    }
}
