import Crypto
import Foundation
import Logging
import ParleyCore
import ParleyPeer
import ParleySync
import ParleyTesting
import Testing

@_spi(Tools) @testable import ParleyClient

@Suite struct PeerTransportTests {
    /// Alice and Bob in `team` (set up through a folder bucket, which the transport never uses), and Mallory, who is no
    /// member.
    func world() async throws -> (alice: Node, bob: Node, mallory: Node, world: BucketWorld) {
        let world = try BucketWorld(.folder)
        let alice = world.client(try world.node("alice"))
        let bob = world.client(try world.node("bob"))
        _ = try await alice.createRoom("team", bucket: world.url, name: "Team")
        try alice.node.invite("team", userID: "bob", key: bob.node.identity.signingKeyBase64)
        _ = try await alice.flush("team")
        _ = try await bob.join(InviteCode(parsing: try #require(try alice.inviteCode("team")).text))
        _ = try await alice.sync("team")
        return (alice.node, bob.node, try world.node("mallory"), world)
    }

    /// Runs a peer transport for `node` on a free port of 127.0.0.1 while `body` runs.
    func withTransport(
        _ node: Node, settings: PeerSettings = PeerSettings(), peers: [String: [String]] = [:], _ body: (PeerTransport, Int) async throws -> Void
    ) async throws {
        let transport = PeerTransport(host: NodeTransportHost(node: node, transport: .peer), settings: settings, logger: Logger(label: "test"))
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        // Woken by the node's feed, as the running node wakes it.
        let (wake, ringer) = AsyncStream<String>.makeStream()
        let subscription = node.feed.subscribe(backlog: 10_000)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await activity in subscription.activity {
                    if case .events(let roomID, _) = activity { ringer.yield(roomID) }
                }
            }
            group.addTask {
                try await transport.run(listen: "127.0.0.1:0", peers: { peers }, wake: wake) { address in
                    portSink.yield(Int(address.split(separator: ":").last!)!)
                }
            }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            try await body(transport, port)
            group.cancelAll()
        }
    }

    func datagram(_ kind: PeerDatagram.Kind, from node: Node, at sentMs: Int64, body: [UInt8], room: String = "team") -> PeerDatagram {
        var random = SystemRandomNumberGenerator()
        return PeerDatagram(
            kind: kind, roomID: room, senderKey: node.identity.signingKey.publicKeyBytes, sentMs: UInt64(sentMs),
            nonce: (0..<12).map { _ in UInt8.random(in: 0...255, using: &random) }, echo: nil, body: body, sealingWith: nil,
            sign: node.identity.signingKey.sign)
    }

    /// Waits up to 10 s for `condition`.
    func eventually(_ condition: () throws -> Bool) async throws -> Bool {
        for _ in 0..<200 {
            if try condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try condition()
    }

    @Test func `hostile datagrams are dropped each with its reason, and an honest event sent after them is stored`() async throws {
        let (alice, bob, mallory, directory) = try await world()
        defer { withExtendedLifetime(directory) {} }
        let message = try bob.send("team", text: "through the noise")
        let wire = try #require(try bob.store.eventWires(roomID: "team", items: bob.store.reconciliationItems(roomID: "team").items).last)
        try await withTransport(alice) { transport, port in
            let socket = try RawUDPSocket()
            let now = alice.clock()
            let fragment = EventBatches.bodies(for: [wire], budget: PeerDatagram.bodyBudget(roomID: "team", sealed: false)) { 42 }
            let honest = datagram(.events, from: bob, at: now, body: fragment[0]).encoded
            socket.send(Array(honest.prefix(50)), to: port)
            socket.send(honest + Array(repeating: 0, count: 1_500), to: port)
            var unsigned = honest
            for index in (unsigned.count - 64)..<unsigned.count { unsigned[index] = 0 }
            socket.send(unsigned, to: port)
            socket.send(datagram(.events, from: mallory, at: now, body: fragment[0]).encoded, to: port)
            socket.send(datagram(.events, from: bob, at: now - 3_600_000, body: fragment[0]).encoded, to: port)
            socket.send(datagram(.probe, from: bob, at: now, body: [0], room: "elsewhere").encoded, to: port)
            let probe = datagram(.probe, from: bob, at: now, body: [0]).encoded
            socket.send(probe, to: port)
            socket.send(probe, to: port)
            socket.send(datagram(.reconcile, from: bob, at: now, body: [1, 2, 3]).encoded, to: port)
            socket.send(honest, to: port)
            #expect(try await eventually { try alice.store.event(eventID: message.event.eventID) != nil })
            let dropped = transport.counters.dropped
            for reason in ["malformed", "oversized", "bad_signature", "not_member", "stale", "replayed"] {
                #expect(dropped[reason, default: 0] >= 1, "\(reason): \(dropped)")
            }
            #expect(dropped["not_member"] == 2, "Mallory's datagram and one of a room Alice does not hold: \(dropped)")
            #expect(dropped["malformed"] == 2, "the truncated datagram and the reconciliation message that is none: \(dropped)")
            // The node's metrics say the same, by reason, with no room or key in them.
            alice.runningPeers.withLock { $0 = transport }
            let text = try alice.metrics().text
            for line in [
                "parley_node_peer_dropped_total{reason=\"not_member\"} 2", "parley_node_peer_dropped_total{reason=\"replayed\"} 1",
                "parley_node_peer_events_total{direction=\"accepted\"} 1",
            ] {
                #expect(text.contains(line + "\n"), "\(line)\n\(text)")
            }
            #expect(!text.contains("team"))
        }
    }

    @Test func `fragments that never complete, flooded in, stay within bounds and an honest batch still gets through`() async throws {
        let (alice, bob, _, directory) = try await world()
        defer { withExtendedLifetime(directory) {} }
        let message = try bob.send("team", text: "after the flood")
        let wire = try #require(try bob.store.eventWires(roomID: "team", items: bob.store.reconciliationItems(roomID: "team").items).last)
        try await withTransport(alice) { transport, port in
            let socket = try RawUDPSocket()
            for batch in 0..<3_000 {
                var body: [UInt8] = (0..<8).map { UInt8(truncatingIfNeeded: (UInt64(batch) + 1_000) >> UInt64(56 - $0 * 8)) }
                body += [0, 0, 0, 9] + Array(repeating: 65, count: 900)
                socket.send(datagram(.events, from: bob, at: alice.clock(), body: body).encoded, to: port)
            }
            let bodies = EventBatches.bodies(for: [wire], budget: 300) { 7 }
            #expect(bodies.count > 1)
            for body in bodies.reversed() { socket.send(datagram(.events, from: bob, at: alice.clock(), body: body).encoded, to: port) }
            #expect(try await eventually { try alice.store.event(eventID: message.event.eventID) != nil })
            #expect(transport.counters.pendingBatches <= EventReassembler.Limits().batchesPerSender)
        }
    }

    @Test func `an address that never echoes a nonce gets at most three times what it sent, and the rest once it does`() async throws {
        let (alice, bob, _, directory) = try await world()
        defer { withExtendedLifetime(directory) {} }
        for index in 0..<150 { _ = try alice.send("team", text: "message \(index) " + String(repeating: "x", count: 200)) }
        try await withTransport(alice) { transport, port in
            let socket = try RawUDPSocket()
            // Bob's session start, as from a side holding nothing: Alice would send the whole room.
            // Asked again each second until something comes, as a peer would (a loaded machine may be slow to answer).
            let start = Reconciler(ReconciliationSet([])).start(salt: 5).encoded
            var first: [[UInt8]] = []
            var askedBytes = 0
            for _ in 0..<10 where first.isEmpty {
                let asked = datagram(.reconcile, from: bob, at: alice.clock(), body: start).encoded
                askedBytes += asked.count
                socket.send(asked, to: port)
                first = await socket.received(quietSeconds: 1, timeoutSeconds: 1)
            }
            first += await socket.received(quietSeconds: 1, timeoutSeconds: 2)
            // Probes (asking the address to show it receives there) go whatever the limit; answers stay within it.
            let answers = first.filter { $0.count > 4 && $0[4] != PeerDatagram.Kind.probe.rawValue }
            let answerBytes = answers.reduce(0) { $0 + $1.count }
            #expect(answerBytes <= 3 * askedBytes + PeerDatagram.maxBytes, "\(answerBytes) bytes for \(askedBytes)")
            #expect(first.count > answers.count, "a probe asked the address to show it receives there")
            #expect(transport.counters.dropped["held_back", default: 0] > 0, "\(transport.counters)")
            // Echoing a nonce Alice sent shows the address receives: what was held back comes.
            let nonce = try PeerDatagram(parsing: try #require(first.last)).nonce
            var random = SystemRandomNumberGenerator()
            let echo = PeerDatagram(
                kind: .probe, roomID: "team", senderKey: bob.identity.signingKey.publicKeyBytes, sentMs: UInt64(alice.clock()),
                nonce: (0..<12).map { _ in UInt8.random(in: 0...255, using: &random) }, echo: nonce, body: [0], sealingWith: nil,
                sign: bob.identity.signingKey.sign)
            socket.send(echo.encoded, to: port)
            let rest = await socket.received()
            #expect(rest.reduce(0) { $0 + $1.count } > 30_000, "the room's events, held back, came once the address was shown")
        }
    }

    /// Shows Alice's transport that `socket` receives at its address, as `node`: a probe asking for an answer, and the
    /// answer's nonce echoed.
    func validate(_ socket: RawUDPSocket, as node: Node, port: Int, clock: Int64) async throws {
        socket.send(datagram(.probe, from: node, at: clock, body: [1]).encoded, to: port)
        let answer = try #require(await socket.received(quietSeconds: 0.5).last)
        var random = SystemRandomNumberGenerator()
        let echo = PeerDatagram(
            kind: .probe, roomID: "team", senderKey: node.identity.signingKey.publicKeyBytes, sentMs: UInt64(clock),
            nonce: (0..<12).map { _ in UInt8.random(in: 0...255, using: &random) }, echo: try PeerDatagram(parsing: answer).nonce, body: [0],
            sealingWith: nil, sign: node.identity.signingKey.sign)
        socket.send(echo.encoded, to: port)
    }

    @Test func `a peer that lies about what it holds only goes without, and its next honest session gets everything`() async throws {
        let (alice, bob, _, directory) = try await world()
        defer { withExtendedLifetime(directory) {} }
        for index in 0..<20 { _ = try alice.send("team", text: "true \(index)") }
        let items = try alice.store.reconciliationItems(roomID: "team").items
        try await withTransport(alice) { transport, port in
            let socket = try RawUDPSocket()
            try await validate(socket, as: bob, port: port, clock: alice.clock())
            _ = await socket.received(quietSeconds: 0.3, timeoutSeconds: 0.5)
            // Bob claims Alice's every event, listing their short ids: she sends him nothing, and loses nothing.
            let lie = ReconciliationMessage(
                salt: 77, lower: .zero, ranges: [.init(upper: .infinity, mode: .ids(items.map { ReconciliationMessage.shortID($0.hash, salt: 77) }))])
            socket.send(datagram(.reconcile, from: bob, at: alice.clock(), body: lie.encoded).encoded, to: port)
            let afterLie = await socket.received(quietSeconds: 0.5, timeoutSeconds: 1)
            #expect(afterLie.filter { $0[4] == PeerDatagram.Kind.events.rawValue }.isEmpty)
            #expect(try alice.store.reconciliationItems(roomID: "team").items.count == items.count)
            // Asking honestly, as a side that holds nothing, brings him every event (asked again each second, as a
            // peer's next session would, should a loaded machine lose a datagram).
            var lines: Set<[UInt8]> = []
            for attempt in 0..<10 where lines.count < items.count {
                let honest = Reconciler(ReconciliationSet([])).start(salt: 78 + UInt64(attempt)).encoded
                socket.send(datagram(.reconcile, from: bob, at: alice.clock(), body: honest).encoded, to: port)
                for bytes in await socket.received(quietSeconds: 0.5, timeoutSeconds: 1) where bytes[4] == PeerDatagram.Kind.events.rawValue {
                    let body = try PeerDatagram(parsing: bytes).body
                    lines.formUnion(Array(body[EventBatches.headerBytes...]).split(separator: UInt8(ascii: "\n")).map(Array.init))
                }
            }
            #expect(lines.count == items.count, "\(lines.count) of \(items.count) events, \(transport.counters)")
        }
    }

    @Test func `a device back after a day offline catches up with the day's events from its peer`() async throws {
        let world = try BucketWorld(.folder)
        let clock = TestClock()
        let alice = world.client(try world.node("alice", clock: clock))
        let bob = world.client(try world.node("bob", clock: clock))
        _ = try await alice.createRoom("team", bucket: world.url, name: "Team")
        try alice.node.invite("team", userID: "bob", key: bob.node.identity.signingKeyBase64)
        _ = try await alice.flush("team")
        _ = try await bob.join(InviteCode(parsing: try #require(try alice.inviteCode("team")).text))
        _ = try await alice.sync("team")
        // Bob is away for a day, in which Alice writes 200 messages.
        for index in 0..<200 {
            clock.advance(432_000)
            _ = try alice.node.send("team", text: "during the day \(index)")
        }
        let held = Set(try alice.node.store.reconciliationItems(roomID: "team").items)
        let transports = [alice.node, bob.node].map {
            PeerTransport(host: NodeTransportHost(node: $0, transport: .peer), logger: Logger(label: "test"))
        }
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await transports[0].run(listen: "127.0.0.1:0", peers: { [:] }, wake: AsyncStream { _ in }) { address in
                    portSink.yield(Int(address.split(separator: ":").last!)!)
                }
            }
            var iterator = ports.makeAsyncIterator()
            let alicePort = try #require(await iterator.next())
            // Back, Bob's node syncs with Alice's, which it lists.
            group.addTask {
                try await transports[1].run(listen: "127.0.0.1:0", peers: { ["team": ["127.0.0.1:\(alicePort)"]] }, wake: AsyncStream { _ in })
            }
            #expect(try await eventually { held.isSubset(of: Set(try bob.node.store.reconciliationItems(roomID: "team").items)) })
            #expect(try bob.node.timeline("team", limit: 300).filter { $0.body?.hasPrefix("during the day") == true }.count == 200)
            group.cancelAll()
        }
    }

    /// Shares a file of `bytes` random bytes as `node` in `room`, through the folder bucket, and has `reader` read it
    /// there (the event alone: its blocks are left to the test).
    func shareFile(_ bytes: Int, as node: Node, in room: String, world: BucketWorld, readBy reader: Node? = nil) async throws -> (FileAttachment, [UInt8]) {
        var random = SystemRandomNumberGenerator()
        let contents = (0..<bytes).map { _ in UInt8.random(in: 0...255, using: &random) }
        let path = world.directory.file("shared-\(bytes)")
        FileManager.default.createFile(atPath: path, contents: Data(contents))
        let event = try node.shareFile(room, path: path)
        _ = try await world.client(node).flush(room)
        if let reader { _ = try await world.client(reader).sync(room) }
        return (try (reader ?? node).fileAttachment(eventID: event.event.eventID), contents)
    }

    @Test func `a file shared in a peer room is fetched from the peer piece by piece and opens as it was shared`() async throws {
        let (alice, bob, _, world) = try await world()
        let (file, contents) = try await shareFile(300_000, as: alice, in: "team", world: world, readBy: bob)
        try await withTransport(alice) { transport, port in
            try bob.addPeer("127.0.0.1:\(port)", roomID: "team")
            let path = world.directory.file("fetched")
            // Bob runs no node: the fetch opens a socket of its own, which Alice does not know yet (it shows it receives).
            let report = try await bob.withPeerBlockSource("team") { source in try await bob.download(file, from: source, to: path) }
            #expect(report.blocksFetched >= 2 && report.blocksHeld == 0)
            #expect(FileManager.default.contents(atPath: path) == Data(contents))
            #expect(transport.counters.piecesSent >= 300_000 / BlockPieces.pieceBytes)
        }
    }

    @Test func `a peer gives no block of another room's file, and says so at once`() async throws {
        let (alice, bob, _, world) = try await world()
        _ = try await world.client(alice).createRoom("secret", bucket: world.url, name: "Secret")
        let (secretFile, _) = try await shareFile(5_000, as: alice, in: "secret", world: world)
        let (teamFile, _) = try await shareFile(5_000, as: alice, in: "team", world: world)
        try await withTransport(alice) { transport, port in
            try bob.addPeer("127.0.0.1:\(port)", roomID: "team")
            let secret = BlockRef(id: secretFile.reference.root, tier: secretFile.reference.rootTier)
            let team = BlockRef(id: teamFile.reference.root, tier: teamFile.reference.rootTier)
            try await bob.withPeerBlockSource("team") { source in
                let source = try #require(source)
                await #expect(throws: ClientError.self) { try await source.fetch(secret) }
                do { _ = try await source.fetch(secret) } catch let error as ClientError { #expect(error.code == .notFound, "\(error)") }
                #expect(BlockID.of(try await source.fetch(team)) == team.id)
            }
            // The team's block went (some pieces twice, when a loaded machine was slow to deliver them).
            #expect(transport.counters.piecesSent >= BlockPieces.pieceCount(team.tier))
        }
    }

    @Test func `pieces from a peer that lie make no block, and the next peer's make it`() async throws {
        let (alice, bob, _, world) = try await world()
        let (file, _) = try await shareFile(500, as: alice, in: "team", world: world)
        let block = BlockRef(id: file.reference.root, tier: file.reference.rootTier)
        let liar = try RawUDPSocket()
        try await withTransport(alice) { _, alicePort in
            try await withTransport(bob) { bobTransport, bobPort in
                // The liar is a member device (it signs as Alice) and answers every want with pieces of zeros.
                let lying = Task.detached {
                    var answered = 0
                    for _ in 0..<4 where answered == 0 {
                        for bytes in await liar.received(quietSeconds: 0.05, timeoutSeconds: 5) {
                            guard let want = try? BlockWant(decoding: PeerDatagram(parsing: bytes).body) else { continue }
                            for index in want.ranges.joined() {
                                let piece = BlockPiece(
                                    id: want.id, tier: want.tier, index: index,
                                    bytes: Array(repeating: 0, count: BlockPieces.pieceLength(index, tier: want.tier)))
                                liar.send(self.datagram(.blockPiece, from: alice, at: alice.clock(), body: piece.encoded).encoded, to: bobPort)
                                answered += 1
                            }
                        }
                    }
                    return answered
                }
                let fetched = try await bobTransport.fetchBlock(block, roomID: "team", peers: ["127.0.0.1:\(liar.port)", "127.0.0.1:\(alicePort)"])
                #expect(BlockID.of(fetched) == block.id)
                #expect(await lying.value >= BlockPieces.pieceCount(block.tier))
            }
        }
    }

    @Test func `an announcement of a room this node holds makes its sender a peer of it; foreign, stale, own and junk ones do not`() async throws {
        let (alice, _, _, world) = try await world()
        withExtendedLifetime(world) {}
        let discovery = PeerDiscovery(
            host: NodeTransportHost(node: alice, transport: .peer), settings: PeerDiscovery.Settings(group: "239.255.77.77:7799"), logger: Logger(label: "test")
        )
        let hash = try #require(try alice.store.roomState(roomID: "team")?.creation?.hash)
        let key = PeerAnnouncement.roomKey(createHash: hash, preSharedRoomKey: nil, roomID: "team")
        let foreign = PeerAnnouncement.roomKey(createHash: "another room's create", preSharedRoomKey: nil, roomID: "team")
        var random = SystemRandomNumberGenerator()
        func announcement(_ keys: [SymmetricKey], port: UInt16, at sentMs: Int64) -> [UInt8] {
            let nonce = (0..<12).map { _ in UInt8.random(in: 0...255, using: &random) }
            return PeerAnnouncement(port: port, sentMs: UInt64(sentMs), nonce: nonce, roomKeys: keys).encoded
        }
        let source = "192.0.2.9"
        let rooms: @Sendable () -> [String] = { ["team"] }
        #expect(!discovery.take(announcement([foreign], port: 7001, at: alice.clock()), from: source, rooms: rooms))
        #expect(!discovery.take(announcement([key], port: 7002, at: alice.clock() - 3_600_000), from: source, rooms: rooms))
        #expect(!discovery.take(Array(repeating: 0x50, count: 300), from: source, rooms: rooms))
        #expect(discovery.discovered().isEmpty)
        #expect(discovery.take(announcement([foreign, key], port: 7003, at: alice.clock()), from: source, rooms: rooms))
        #expect(discovery.discovered() == ["team": ["192.0.2.9:7003"]])
        // Heard again: known already, no answer due.
        #expect(!discovery.take(announcement([key], port: 7003, at: alice.clock()), from: source, rooms: rooms))
        // Past the most kept per room, the one heard from longest ago goes.
        for port in 8000..<8020 { _ = discovery.take(announcement([key], port: UInt16(port), at: alice.clock()), from: source, rooms: rooms) }
        let kept = try #require(discovery.discovered()["team"])
        #expect(kept.count == discovery.settings.maxPerRoom && !kept.contains("192.0.2.9:7003"))
    }

    @Test func `a member device flooding datagrams from one address is dropped before the signature check past the rate, and heard again after`() async throws {
        let (alice, bob, _, world) = try await world()
        withExtendedLifetime(world) {}
        let message = try bob.send("team", text: "after the flood")
        let wire = try #require(try bob.store.eventWires(roomID: "team", items: bob.store.reconciliationItems(roomID: "team").items).last)
        let flood = (0..<2_000).map { _ in datagram(.probe, from: bob, at: alice.clock(), body: [0]).encoded }
        var settings = PeerSettings()
        // Low enough that even a machine slow to read the flood checks only a fraction of it.
        settings.verificationsPerSecond = 20
        try await withTransport(alice, settings: settings) { transport, port in
            let socket = try RawUDPSocket()
            for bytes in flood { socket.send(bytes, to: port) }
            // A burst of 5 and 20 a second are checked: at least half the flood is dropped unchecked.
            #expect(try await eventually { transport.counters.dropped["rate_limited", default: 0] >= 1_000 })
            // Once the flood is over, the address is heard again (each try a new datagram: a resent one is a replay).
            let fragment = EventBatches.bodies(for: [wire], budget: PeerDatagram.bodyBudget(roomID: "team", sealed: false)) { 9 }
            #expect(
                try await eventually {
                    socket.send(datagram(.events, from: bob, at: alice.clock(), body: fragment[0]).encoded, to: port)
                    return try alice.store.event(eventID: message.event.eventID) != nil
                })
        }
    }

    @Test func `a device removed from the room is dropped at its next datagram, not once a cached answer expires`() async throws {
        let (alice, bob, _, world) = try await world()
        withExtendedLifetime(world) {}
        try await withTransport(alice) { transport, port in
            let socket = try RawUDPSocket()
            socket.send(datagram(.probe, from: bob, at: alice.clock(), body: [0]).encoded, to: port)
            #expect(try await eventually { transport.counters.datagramsIn == 1 })
            #expect(transport.counters.dropped.isEmpty, "Bob is a member: \(transport.counters.dropped)")
            _ = try alice.setMembership("team", userID: "bob", .ban, reason: nil)
            // The node's clock stands still here: only the room's change can end the cached answer.
            #expect(
                try await eventually {
                    socket.send(datagram(.probe, from: bob, at: alice.clock(), body: [0]).encoded, to: port)
                    return transport.counters.dropped["not_member", default: 0] >= 1
                })
        }
    }

    @Test func `events that came over peers are the bytes a bucket carries, and give the same state and timeline`() async throws {
        let (alice, bob, _, world) = try await world()
        let carol = try world.node("carol")
        try alice.invite("team", userID: "carol", key: carol.identity.signingKeyBase64)
        _ = try await world.client(alice).flush("team")
        _ = try await world.client(carol).join(InviteCode(parsing: try #require(try world.client(alice).inviteCode("team")).text))
        var sent: [String] = []
        for index in 0..<20 { sent.append(try alice.send("team", text: "both ways \(index)").event.eventID) }
        _ = try alice.react("team", eventID: sent[3], key: "👍")
        _ = try alice.edit("team", eventID: sent[5], text: "both ways, edited")
        let ids = sent
        // Bob gets Alice's events over peers only; Carol over the bucket only.
        var settings = PeerSettings()
        settings.intervalMs = 200
        try await withTransport(alice) { _, alicePort in
            try await withTransport(bob, settings: settings, peers: ["team": ["127.0.0.1:\(alicePort)"]]) { _, _ in
                let arrived = try await eventually {
                    for eventID in ids where try bob.store.event(eventID: eventID) == nil { return false }
                    return true
                }
                #expect(arrived)
            }
        }
        _ = try await world.client(alice).flush("team")
        _ = try await world.client(carol).sync("team")
        // Bob's bucket sync brings Carol's join, and Alice's events again: nothing new of hers.
        let again = try await world.client(bob).sync("team")
        #expect(again.accepted.allSatisfy { !sent.contains($0) })
        let items = try alice.store.reconciliationItems(roomID: "team").items
        #expect(try bob.store.eventWires(roomID: "team", items: items) == carol.store.eventWires(roomID: "team", items: items))
        #expect(try bob.store.roomState(roomID: "team") == carol.store.roomState(roomID: "team"))
        let timelines = try [bob, carol].map { try $0.timeline("team", limit: 100).map { "\($0.eventID) \($0.body ?? "") \($0.reactions)" } }
        #expect(timelines[0] == timelines[1] && timelines[0].count >= 20)
    }
}
