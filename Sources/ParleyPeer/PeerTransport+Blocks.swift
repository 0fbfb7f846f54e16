import ParleyCore
import ParleySync

/// A block this node is fetching from peers: the pieces so far, the peer asked now (its address as datagrams from it
/// show it), and whether that peer said it does not give the block.
struct BlockFetch {
    var assembly: BlockAssembly
    var peer = ""
    var isAbsent = false
}

extension PeerTransport {
    /// How long a want first waits without a new piece before it is asked again (doubled after each such wait in a
    /// row), and how many such waits give up on a peer: 0.3 + 0.6 + 1.2 + 2.4 s, so a slow or loaded peer is given
    /// time and a gone one is left within 5 s.
    static let pieceStallMs = 300
    static let stallsPerPeer = 4
    /// How long a want waits for the next piece once pieces came: past it, the missing ones are asked for again.
    static let pieceGapMs = 100
    /// Blocks kept read for the wants that follow (at most 4 × 16 MiB).
    static let servedBlocksKept = 4

    /// Fetches a block of `roomID`'s files from its peers (docs/PROTOCOL.md §17.6), through the socket that
    /// ``run(listen:peers:wake:bound:)`` or ``withSocket(listen:_:)`` holds: asks each peer in turn for the pieces still
    /// missing, a window at a time, moving on when one says it does not give the block, stops answering, or gives
    /// pieces that do not make the block.
    /// - Returns: the block's stored bytes, checked against its id.
    /// - Throws: ``TransportError`` `not_found` when no peer gave it; `peer_unreachable` when no socket is open.
    public func fetchBlock(_ block: BlockRef, roomID: String, peers: [String]) async throws -> [UInt8] {
        guard let link = activeLink.withLock({ $0 }) else {
            throw TransportError(
                code: "peer_unreachable", "No peer socket is open to fetch blocks through: the peer transport is not running, or could not bind its address.",
                remedy: "Check the node's log for why peers stopped (its peers.listen address), or download with no node running.")
        }
        // One fetch of a block at a time: another asking for it (a download while the node prefetches) waits for it.
        while !state.withLock({ state in
            guard state.fetches[block.id] == nil else { return false }
            state.fetches[block.id] = BlockFetch(assembly: BlockAssembly(id: block.id, tier: block.tier))
            return true
        }) {
            try await Task.sleep(for: .milliseconds(10))
            if let held = try host.block(block.id) { return held }
        }
        defer { _ = state.withLock { $0.fetches.removeValue(forKey: block.id) } }
        for peer in peers {
            guard let resolved = try? link.address(peer) else { continue }
            state.withLock {
                $0.fetches[block.id]?.peer = PeerAddress.text(resolved)
                $0.fetches[block.id]?.isAbsent = false
            }
            try await fetchPieces(block, roomID: roomID, from: peer, link: link)
            // Taken out of the lock before it is hashed (up to 16 MiB): the lock stays free for the receive loop.
            let assembly = state.withLock { state -> BlockAssembly? in
                guard state.fetches[block.id]?.assembly.isComplete == true else { return nil }
                defer { state.fetches[block.id]?.assembly = BlockAssembly(id: block.id, tier: block.tier) }
                return state.fetches[block.id]?.assembly
            }
            guard let assembly else { continue }
            if let bytes = assembly.block {
                state.withLock { $0.counters.blocksFetched += 1 }
                return bytes
            }
            // Pieces that make something else: that peer lied, or sent another block's; the next starts afresh.
            logger.warning("Peer block refused", metadata: ["peer": "\(peer)", "reason": "its pieces do not hash to the block's id"])
        }
        throw TransportError(
            code: "not_found", "No peer of room \(roomID) gave block \(block.id.hex.prefix(16))… (asked \(peers.count)).",
            remedy: "A peer that holds the file must be running and reachable; try again later.")
    }

    /// Asks `peer` for the block's missing pieces until it is complete, the peer says it does not give it, or the peer
    /// stops answering.
    private func fetchPieces(_ block: BlockRef, roomID: String, from peer: String, link: Link) async throws {
        // Only counts and ranges leave the lock: a copy of the assembly held outside would make the next piece copy
        // its whole buffer.
        func progress() -> (received: Int, isAbsent: Bool)? {
            state.withLock { state in state.fetches[block.id].map { ($0.assembly.receivedCount, $0.isAbsent) } }
        }
        var stalls = 0
        while stalls < Self.stallsPerPeer {
            try Task.checkCancellation()
            guard
                let (missing, before) = state.withLock({ state -> ([Range<Int>], Int)? in
                    guard let fetch = state.fetches[block.id], !fetch.isAbsent else { return nil }
                    return (fetch.assembly.missing(), fetch.assembly.receivedCount)
                }), !missing.isEmpty
            else { return }
            let asked = missing.reduce(0) { $0 + $1.count }
            await send(
                .blockWant, roomID: roomID, body: BlockWant(id: block.id, tier: block.tier, ranges: missing).encoded, to: peer, link: link, isSync: false)
            // Until every piece asked for came, or none came for a while: long before the first (the peer may be slow
            // to start), short once they flow (a paced burst has no long gaps: the rest were lost).
            var seen = before
            var lastProgress = ContinuousClock.now
            while ContinuousClock.now - lastProgress < .milliseconds(seen == before ? Self.pieceStallMs << stalls : Self.pieceGapMs) {
                try await Task.sleep(for: .milliseconds(3))
                guard let now = progress() else { return }
                if now.isAbsent || now.received - before >= asked { break }
                if now.received > seen {
                    seen = now.received
                    lastProgress = .now
                }
            }
            stalls = seen == before ? stalls + 1 : 0
        }
    }

    /// Answers a want: the pieces asked for, when the room shares a file with this block and this node holds it;
    /// otherwise that it does not give it.
    func answer(_ want: BlockWant, roomID: String, to address: String, link: Link) async throws {
        guard try givesBlock(want.id, roomID: roomID), let stored = try servedBlock(want.id), stored.count == want.tier.byteCount else {
            await send(.blockAbsent, roomID: roomID, body: BlockPiece.absent(id: want.id, tier: want.tier), to: address, link: link, isSync: false)
            return
        }
        for range in want.ranges {
            for index in range {
                let piece = BlockPiece(of: stored, id: want.id, tier: want.tier, index: index)
                await send(.blockPiece, roomID: roomID, body: piece.encoded, to: address, link: link, isSync: false)
            }
        }
        state.withLock { $0.counters.piecesSent += want.ranges.reduce(0) { $0 + $1.count } }
    }

    /// Takes a piece into its fetch, when this node is fetching that block from the address it came from.
    func take(_ piece: BlockPiece, from address: String) {
        state.withLock { state in
            guard state.fetches[piece.id]?.peer == address, state.fetches[piece.id]?.assembly.insert(piece) == true else { return }
            state.counters.piecesReceived += 1
        }
    }

    /// Notes that the peer at `address` does not give a block this node is fetching from it.
    func takeAbsence(of id: BlockID, from address: String) {
        state.withLock { state in
            if state.fetches[id]?.peer == address { state.fetches[id]?.isAbsent = true }
        }
    }

    /// A block being served, read (and checked against its id) once for all the wants of a fetch rather than once
    /// per want: the last few are kept.
    private func servedBlock(_ id: BlockID) throws -> [UInt8]? {
        if let kept = state.withLock({ $0.servedBlocks.first { $0.id == id }?.bytes }) { return kept }
        guard let bytes = try host.block(id) else { return nil }
        state.withLock { state in
            state.servedBlocks.append((id, bytes))
            if state.servedBlocks.count > Self.servedBlocksKept { state.servedBlocks.removeFirst() }
        }
        return bytes
    }

    /// Whether a file the room shares has this block: a peer of one room gets no block of another's. The room's list
    /// is read again when the room has gained events since it was read, and on a miss at most once a second (this
    /// node may have fetched a file's manifests since, which list more blocks): a want for a block of no file costs a
    /// lookup, not a walk of the room's files.
    private func givesBlock(_ id: BlockID, roomID: String) throws -> Bool {
        try refreshed(roomID)
        let row = state.withLock { $0.rooms[roomID]?.lastRow ?? 0 }
        if let known = state.withLock({ $0.roomBlocks[roomID] }), known.row == row {
            if known.ids.contains(id) { return true }
            if ContinuousClock.now - known.at < .seconds(1) { return false }
        }
        let ids = try host.roomBlocks(roomID: roomID)
        state.withLock { $0.roomBlocks[roomID] = (ids, row, .now) }
        return ids.contains(id)
    }
}
