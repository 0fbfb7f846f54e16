import Foundation
import HummingbirdWebSocket
import NIOCore
import NIOWebSocket
import ParleyCore
import ParleyStore
import Synchronization

/// Whether a new connection has sent its first frame.
private final class AuthenticationWait: Sendable {
    let isDone = Atomic(false)
}

extension RelayServer {
    /// One WebSocket connection (docs/PROTOCOL.md §15.4): `auth` first, then subscriptions, publishes, history and
    /// typing. A writer task drains the connection's queue; when the queue closes for a client that does not read (or
    /// breaks the protocol and does not answer the close), the socket itself is closed, since a blocked write and a
    /// silent peer would otherwise hold the connection forever. A peer that stops answering pings is closed by the
    /// WebSocket layer.
    /// - Throws: what ended the inbound stream (a frame too large, text that is not UTF-8), so its close code reaches
    ///   the client.
    func session(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, channel: any Channel, address: String) async throws {
        guard hub.admit(address: address, limit: settings.maxConnectionsPerAddress) else {
            try? await outbound.write(
                .text(RelayFrame.error(code: "too_many_connections", message: "Too many connections from this address.", id: nil).text))
            try? await outbound.close(.policyViolation, reason: "too many connections from this address")
            return
        }
        defer { hub.left(address: address) }
        var messages = inbound.messages(maxSize: RelayFrame.maxFrameBytes).makeAsyncIterator()
        guard let connection = await authenticate(&messages, outbound: outbound, channel: channel) else { return }
        guard hub.opened(userID: connection.userID, limit: settings.maxConnectionsPerAccount) else {
            try? await outbound.write(
                .text(RelayFrame.error(code: "too_many_connections", message: "Too many connections of this account.", id: nil).text))
            try? await outbound.close(.policyViolation, reason: "too many connections of this account")
            return
        }
        metrics.record(.connectionOpened)
        defer {
            hub.closed(connection, rooms: connection.rooms.withLock { $0 })
            metrics.record(.connectionClosed)
        }
        var readFailure: (any Error)?
        let pending = PendingPublishes()
        let writer = ConnectionWriter(channel: channel, queue: connection.queue)
        await withTaskGroup(of: Void.self) { group in
            // One task ends the connection as its queue's closing asks; an idle connection has no other.
            group.addTask {
                let closing = await connection.queue.waitUntilClosed()
                if closing == .slowConsumer {
                    // A close frame would wait behind what the client does not read: the socket is closed outright.
                    self.metrics.record(.slowConsumer)
                    self.logger.info("Connection cut off: it did not read", metadata: ["queue.bytes": "\(self.settings.maxQueuedBytes)"])
                    channel.close(promise: nil)
                    return
                }
                await writer.written()
                switch closing {
                case .protocolViolation(let code, let reason):
                    try? await outbound.close(.init(codeNumber: Int(code)), reason: reason)
                    // A client that neither reads nor answers the close is closed outright.
                    try? await Task.sleep(for: .seconds(5))
                    channel.close(promise: nil)
                case .done:
                    try? await outbound.close(.normalClosure, reason: nil)
                case .inboundFailed, .slowConsumer:
                    break
                }
            }
            var publishing = false
            // The reader runs here, in the session's own task: the inbound stream is not to be shared.
            do {
                var badFrames = 0
                while let message = try await messages.next() {
                    let frame: RelayFrame
                    var frameBytes = 0
                    do throws(RelayProtocolError) {
                        guard case .text(let text) = message else {
                            throw RelayProtocolError(.malformedFrame, "Binary frames are not part of this protocol: send JSON text frames.")
                        }
                        frameBytes = text.utf8.count
                        frame = try RelayFrame(parsing: Array(text.utf8), from: .client)
                    } catch {
                        badFrames += 1
                        self.metrics.record(.badFrame)
                        connection.queue.push(RelayFrame.error(code: error.code.rawValue, message: error.message, id: nil).text)
                        if badFrames >= self.settings.maxBadFrames {
                            connection.queue.close(.protocolViolation(code: 1007, reason: "too many malformed frames"))
                            break
                        }
                        continue
                    }
                    if case .publish(let id, let values) = frame {
                        if !publishing {
                            // Started with the first publish: most connections only read.
                            publishing = true
                            group.addTask {
                                while let batch = await pending.take() {
                                    await self.publish(batch, on: connection)
                                    pending.finished()
                                }
                            }
                        }
                        await pending.add(.init(id: id, values: values, bytes: frameBytes, arrived: .now))
                    } else {
                        // What a connection asks after publishing sees what it published.
                        await pending.drained()
                        try await self.handle(frame, bytes: frameBytes, on: connection)
                    }
                }
            } catch {
                readFailure = error
                connection.queue.close(.inboundFailed)
            }
            pending.close()
            connection.queue.close(.done)
            await group.waitForAll()
        }
        if let readFailure { throw readFailure }
    }

    /// Waits for the `auth` frame (for at most ``RelaySettings/authTimeoutMs``): a live session token and a device of
    /// its account.
    private func authenticate(
        _ messages: inout WebSocketInboundMessageStream.AsyncIterator, outbound: WebSocketOutboundWriter, channel: any Channel
    ) async -> RelayConnection? {
        func refuse(_ code: String, _ message: String) async -> RelayConnection? {
            try? await outbound.write(.text(RelayFrame.error(code: code, message: message, id: nil).text))
            try? await outbound.close(.policyViolation, reason: code)
            return nil
        }
        let authenticated = AuthenticationWait()
        let first: WebSocketMessage? = await withTaskGroup(of: Void.self) { group in
            // Closing the socket ends the wait below with no message.
            group.addTask {
                try? await Task.sleep(for: .milliseconds(self.settings.authTimeoutMs))
                if !authenticated.isDone.load(ordering: .acquiring) {
                    try? await outbound.write(.text(RelayFrame.error(code: "auth_timeout", message: "No auth frame came in time.", id: nil).text))
                    try? await outbound.close(.policyViolation, reason: "auth_timeout")
                    // A peer that does not answer the close either is not waited for.
                    try? await Task.sleep(for: .seconds(5))
                    channel.close(promise: nil)
                }
            }
            let message = try? await messages.next()
            authenticated.isDone.store(true, ordering: .releasing)
            group.cancelAll()
            return message
        }
        guard case .text(let text)? = first, let frame = try? RelayFrame(parsing: Array(text.utf8), from: .client),
            case .auth(let token, let deviceKey) = frame
        else { return await refuse("auth_required", "The first frame must be auth, with a session token and the device key.") }
        guard let userID = try? await accounts.user(token: token) else {
            return await refuse("unauthorized", "The session token is not valid: log in again.")
        }
        guard (try? await accounts.store.deviceOwner(key: deviceKey)) == userID else {
            return await refuse("unknown_device", "This device is not one of the account's: add it with a signed challenge first.")
        }
        let connection = RelayConnection(
            id: nextConnection.wrappingAdd(1, ordering: .relaxed).newValue, userID: userID, deviceKey: deviceKey, maxQueuedBytes: settings.maxQueuedBytes)
        connection.queue.push(RelayFrame.ready(userID: userID, deviceKey: deviceKey).text)
        return connection
    }

    private func handle(_ frame: RelayFrame, bytes: Int, on connection: RelayConnection) async throws {
        switch frame {
        case .subscribe(let rooms):
            var seen = Set<String>()
            for room in rooms where seen.insert(room.roomID).inserted {
                let admitted = connection.rooms.withLock { subscribed in
                    guard subscribed.contains(room.roomID) || subscribed.count < RelayFrame.maxRooms else { return false }
                    subscribed.insert(room.roomID)
                    return true
                }
                guard admitted else {
                    connection.queue.push(
                        RelayFrame.error(code: "too_many_rooms", message: "A connection subscribes to at most \(RelayFrame.maxRooms) rooms.", id: nil).text)
                    break
                }
                hub.subscribe(connection, roomID: room.roomID)
                try await catchUp(room, on: connection)
            }
        case .publish(let id, let values):
            await publish([.init(id: id, values: values, bytes: bytes, arrived: .now)], on: connection)
        case .history(let id, let roomID, let before, let limit):
            guard try events.canRead(roomID: roomID, userID: connection.userID, deviceKey: connection.deviceKey) else {
                connection.queue.push(RelayFrame.error(code: "not_a_member", message: "This device does not read that room.", id: id).text)
                return
            }
            do {
                let page = try events.store.historyPage(roomID: roomID, before: before, limit: limit)
                // The newest events before `before` that fit in one frame; the client asks again for older ones.
                var kept: [[UInt8]] = []
                var bytes = 1_024
                for wire in page.wires.reversed() {
                    guard bytes + wire.count + 1 <= RelayFrame.maxFrameBytes else { break }
                    kept.append(wire)
                    bytes += wire.count + 1
                }
                let values = kept.reversed().compactMap { try? JSONParser().parse($0) }
                let hasMore = page.hasMore || kept.count < page.wires.count
                _ = await connection.queue.pushWaiting(RelayFrame.page(id: id, roomID: roomID, events: values, hasMore: hasMore).text)
            } catch let error as StoreError where error.code == .unknownEvent {
                connection.queue.push(RelayFrame.error(code: "unknown_event", message: "The room holds no event \(before ?? "").", id: id).text)
            } catch {
                logger.error("Relay store failed", metadata: ["error": "\(error)"])
                connection.queue.push(RelayFrame.error(code: "store_failed", message: "The relay could not read the room's history; ask again.", id: id).text)
            }
        case .typing(let roomID, let isTyping):
            let now = RelayAccounts.nowMs()
            let allowed = connection.typing.withLock { bucket in
                bucket = LoginLimits.refilled(bucket, burst: 5, refillMs: 1000 / settings.typingPerSecond, nowMs: now)
                guard bucket.tokens >= 1 else { return false }
                bucket.tokens -= 1
                return true
            }
            guard allowed, let state = try events.store.roomState(roomID: roomID),
                RelayEvents.canRead(state, userID: connection.userID, deviceKey: connection.deviceKey)
            else { return }
            hub.broadcast(
                roomID: roomID, frame: RelayFrame.typingNotice(roomID: roomID, userID: connection.userID, isTyping: isTyping).text, state: state,
                excluding: connection.id)
        default:
            connection.queue.push(RelayFrame.error(code: "unknown_type", message: "Only clients' frames are taken here.", id: nil).text)
        }
    }

    /// Pushes events the relay now holds to the members connected here (all but connection `excluding`, which sent
    /// them), grouped by room.
    /// Judges and stores the events of publish frames taken together (``PendingPublishes``), acknowledges each frame,
    /// and fans out what was stored. A frame over the account's allowance is refused whole (`rate_limited`).
    private func publish(_ requests: [PendingPublishes.Request], on connection: RelayConnection) async {
        let admitted = requests.map { admitPublish(userID: connection.userID, events: $0.values.count, bytes: $0.bytes) }
        let values = zip(requests, admitted).flatMap { request, admitted in admitted ? request.values : [] }
        let publisher = RelayEvents.Publisher(userID: connection.userID, deviceKey: connection.deviceKey, devices: Set([connection.deviceKey]))
        var published = RelayEvents.Published(results: [], stored: [])
        if !values.isEmpty {
            do {
                published = try await events.onQueue { [events] in try events.publish(values, by: publisher, nowMs: RelayAccounts.nowMs()) }
            } catch {
                logger.error("Relay store failed", metadata: ["error": "\(error)"])
                for (request, admitted) in zip(requests, admitted) where admitted {
                    connection.queue.push(
                        RelayFrame.error(code: "store_failed", message: "The relay could not store the events; publish them again.", id: request.id).text)
                }
                return
            }
        }
        var results = published.results
        if let database, !values.isEmpty {
            // Acknowledged means every relay of the deployment can serve it: the shared log has it.
            do { try await database.append(published.stored + published.duplicates) } catch {
                logger.error("Relay database failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
                for index in results.indices where results[index].verdict != .rejected && results[index].verdict != .held {
                    results[index] = .init(
                        .rejected, eventID: results[index].eventID, code: "unavailable",
                        reason: "The relay could not write the event to its database: publish it again shortly.")
                }
            }
        }
        metrics.record(.eventsIn(published.stored.count))
        for (code, results) in Dictionary(grouping: results.filter { $0.verdict == .rejected }, by: { $0.code ?? "other" }) {
            metrics.record(.rejected(code: code, count: results.count))
        }
        var offset = 0
        for (request, admitted) in zip(requests, admitted) {
            if admitted {
                connection.queue.push(RelayFrame.ack(id: request.id, results: Array(results[offset..<offset + request.values.count])).text)
                offset += request.values.count
            } else {
                metrics.record(.rejected(code: "rate_limited", count: request.values.count))
                let reason =
                    "This account publishes more than \(Int(settings.publishEventsPerSecond)) events or \(Int(settings.publishBytesPerSecond) / 1024) KiB a second: publish again shortly."
                let refusals = request.values.map {
                    RelayFrame.PublishResult(.rejected, eventID: $0["event_id"]?.stringValue, code: "rate_limited", reason: reason)
                }
                connection.queue.push(RelayFrame.ack(id: request.id, results: refusals).text)
            }
        }
        fanOut(published.stored, excluding: connection.id)
        let now = ContinuousClock.now
        for (request, admitted) in zip(requests, admitted) where admitted {
            let elapsed = (now - request.arrived).components
            metrics.fanOut.recordNanoseconds(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
        }
    }

    func fanOut(_ stored: [RelayEvents.Kept], excluding: Int? = nil) {
        var byRoom: [(roomID: String, wires: [[UInt8]], priority: MessagePriority)] = []
        for event in stored {
            if byRoom.last?.roomID == event.roomID {
                byRoom[byRoom.count - 1].wires.append(event.wire)
                byRoom[byRoom.count - 1].priority = max(byRoom[byRoom.count - 1].priority, event.priority)
            } else {
                byRoom.append((event.roomID, [event.wire], event.priority))
            }
        }
        var delivered = 0
        for (roomID, wires, priority) in byRoom {
            let state = try? events.store.roomState(roomID: roomID)
            delivered += hub.deliver(roomID: roomID, wires: wires, priority: priority, state: state, excluding: excluding)
        }
        metrics.record(.eventsOut(delivered))
    }

    /// Sends the relay's heads of a room, then exactly the events the client lacks (oldest first, in pages), then
    /// `synced`. A device that does not read the room gets its founding events only (what it needs to join) — and for
    /// a room the relay does not hold, nothing: either way it learns no room id it did not name.
    private func catchUp(_ room: RelayFrame.RoomHeads, on connection: RelayConnection) async throws {
        let readable = try events.canRead(roomID: room.roomID, userID: connection.userID, deviceKey: connection.deviceKey)
        guard readable else {
            _ = await connection.queue.pushWaiting(RelayFrame.heads(roomID: room.roomID, heads: [:]).text)
            let founding = try events.founding(roomID: room.roomID)
            for frame in RelayHub.eventFrames(roomID: room.roomID, wires: founding) { _ = await connection.queue.pushWaiting(frame) }
            _ = await connection.queue.pushWaiting(RelayFrame.synced(roomID: room.roomID).text)
            return
        }
        let relayHeads = try events.store.chainHeads(roomID: room.roomID)
        guard await connection.queue.pushWaiting(RelayFrame.heads(roomID: room.roomID, heads: relayHeads).text) else { return }
        // Up to the heads just sent: what is stored meanwhile goes out live, so a busy room's catch-up ends.
        var after: [String: Int64]? = room.heads
        var sent = 0
        while let from = after {
            let page = try events.store.chainEvents(roomID: room.roomID, after: from, limit: 500)
            let due = page.events.filter { $0.seq <= relayHeads[$0.senderKey] ?? 0 }
            for frame in RelayHub.eventFrames(roomID: room.roomID, wires: due.map(\.wire)) {
                guard await connection.queue.pushWaiting(frame) else { return }
            }
            sent += due.count
            after = page.next.flatMap { next in relayHeads.contains { key, seq in (next[key] ?? 0) < seq } ? next : nil }
        }
        metrics.record(.eventsOut(sent))
        _ = await connection.queue.pushWaiting(RelayFrame.synced(roomID: room.roomID).text)
    }
}

/// Writes a connection's queued frames on its event loop, as WebSocket text frames straight into its channel: a push
/// from another thread costs one job on that loop (which takes every frame waiting, with one flush), where a task and
/// an awaited write per frame cost task switches and hops per frame. Waits for the socket when the channel is not
/// writable, so what a slow client does not read stays in the queue, whose bound cuts it off.
private final class ConnectionWriter: @unchecked Sendable {
    // Touched on the channel's event loop only.
    private var waitsForSocket = false
    private var finished = false
    private let channel: any Channel
    private let queue: FrameQueue
    private let done: EventLoopPromise<Void>

    init(channel: any Channel, queue: FrameQueue) {
        self.channel = channel
        self.queue = queue
        done = channel.eventLoop.makePromise()
        let eventLoop = channel.eventLoop
        queue.setWriter { [self] in eventLoop.execute { self.drain() } }
        eventLoop.execute { self.drain() }
    }

    /// Returns once the queue is closed and what it held is written (or the channel failed).
    func written() async { try? await done.futureResult.get() }

    private func finish() {
        guard !finished else { return }
        finished = true
        done.succeed()
    }

    private func drain() {
        guard !waitsForSocket, !finished else { return }
        var last: EventLoopFuture<Void>?
        while true {
            switch queue.take() {
            case .frame(let text):
                last = channel.write(WebSocketFrame(fin: true, opcode: .text, data: channel.allocator.buffer(string: text)))
                // Past the channel's high-water mark: hand the socket what is written before taking more.
                guard !channel.isWritable, let pending = last else { continue }
                channel.flush()
                if channel.isWritable { continue }
                // The socket is full: write again once it took the last frame (the queue keeps what arrives meanwhile).
                waitsForSocket = true
                pending.whenComplete { result in
                    self.waitsForSocket = false
                    if case .failure = result {
                        self.queue.close(.done)
                        self.finish()
                    } else {
                        self.drain()
                    }
                }
                return
            case .empty:
                channel.flush()
                return
            case .closed:
                channel.flush()
                (last ?? channel.eventLoop.makeSucceededVoidFuture()).whenComplete { _ in self.finish() }
                return
            }
        }
    }
}
