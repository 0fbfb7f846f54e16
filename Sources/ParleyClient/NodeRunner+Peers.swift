import Foundation
import Logging
import ParleyPeer
import ParleySync

extension NodeRunner {
    /// The peer transport on ``Settings/listenUDP``, carrying every peer room of the home, until shutdown; nothing
    /// when no address is set. New events of a room (this device's, or another transport's) go to its peers at once.
    func keepPeers() async {
        guard let listen = settings.listenUDP else { return }
        let transport = PeerTransport(host: NodeTransportHost(node: node, transport: .peer), settings: settings.peers, logger: logger)
        let discovery = settings.discoverGroup.map { group in
            PeerDiscovery(host: NodeTransportHost(node: self.node, transport: .peer), settings: PeerDiscovery.Settings(group: group), logger: logger)
        }
        node.runningPeers.withLock { $0 = transport }
        node.runningDiscovery.withLock { $0 = discovery }
        defer {
            node.runningPeers.withLock { $0 = nil }
            node.runningDiscovery.withLock { $0 = nil }
        }
        let (ports, portSink) = AsyncStream<Int>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let subscription = node.feed.subscribe(backlog: 10_000)
        let (wake, ringer) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(256))
        let (messages, arrived) = AsyncStream<(roomID: String, eventID: String)>.makeStream(bufferingPolicy: .bufferingNewest(4_096))
        let node = node
        let fetchesFiles = settings.fetchPeerFiles
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await activity in subscription.activity {
                    guard case .events(let roomID, let events) = activity else { continue }
                    ringer.yield(roomID)
                    for event in events where fetchesFiles && event.type == EventType.message && event.senderID != node.identity.userID {
                        arrived.yield((roomID, event.eventID))
                    }
                }
            }
            group.addTask {
                for await message in messages { await self.fetchPeerFile(message.eventID, roomID: message.roomID, through: transport) }
            }
            group.addTask {
                do {
                    try await transport.run(
                        listen: listen, peers: { (try? node.peerRooms()) ?? [:] }, discovered: { discovery?.discovered() ?? [:] }, wake: wake,
                        bound: { address in
                            self.observer.peersListening(address: address)
                            if let port = address.split(separator: ":").last.flatMap({ Int($0) }) { portSink.yield(port) }
                        })
                } catch is CancellationError {
                } catch {
                    self.observer.peersFailed(
                        report:
                            "Peers cannot listen on \(listen): \(ClientError(describing: error).message) Set peers.listen (or --listen-udp) to a free HOST:PORT."
                    )
                }
            }
            if let discovery {
                group.addTask {
                    var bound = ports.makeAsyncIterator()
                    guard let port = await bound.next() else { return }
                    if listen.hasPrefix("127.") || listen.hasPrefix("[::1]") || listen.hasPrefix("localhost:") {
                        self.logger.warning(
                            "Peer discovery announces a port other machines cannot reach: peers.listen is a loopback address; set it to 0.0.0.0:PORT or this machine's LAN address."
                        )
                    }
                    do {
                        try await discovery.run(listenPort: port, rooms: { (try? node.roomIDs()) ?? [] })
                    } catch is CancellationError {
                    } catch {
                        self.logger.error(
                            "Peer discovery cannot join \(discovery.settings.group): \(ClientError(describing: error).message) Check that this machine has a multicast route on its LAN, or set peers.discover to another group, or leave it unset."
                        )
                    }
                }
            }
            group.addTask { await self.stopping.wait(upToMs: Int64.max / 2) }
            await group.next()
            group.cancelAll()
        }
    }

    /// Fetches the blocks of the file a message of a peer room shares, when it is at most ``Node/maxPrefetchBytes``
    /// and not held here: so it is here when its sender is not.
    func fetchPeerFile(_ eventID: String, roomID: String, through transport: PeerTransport) async {
        let peers = node.reachablePeers(roomID)
        guard !peers.isEmpty, let file = try? node.fileAttachment(eventID: eventID),
            file.size <= Node.maxPrefetchBytes, !node.blocksHeld(file.reference)
        else { return }
        do {
            let fetched = try await node.fetchBlocks(of: file, from: PeerBlockSource(transport: transport, roomID: roomID, peers: peers))
            logger.debug("Peer file fetched", metadata: ["room.id": "\(roomID)", "event.id": "\(eventID)", "blocks": "\(fetched)"])
        } catch {
            logger.notice("Peer file not fetched", metadata: ["room.id": "\(roomID)", "event.id": "\(eventID)", "error": "\(error)"])
        }
    }
}
