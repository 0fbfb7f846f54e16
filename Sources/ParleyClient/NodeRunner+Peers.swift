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
        node.peerCounters.withLock { $0 = { transport.counters } }
        let subscription = node.feed.subscribe(backlog: 10_000)
        let (wake, ringer) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(256))
        let node = node
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await activity in subscription.activity {
                    if case .events(let roomID, _) = activity { ringer.yield(roomID) }
                }
            }
            group.addTask {
                do {
                    try await transport.run(
                        listen: listen, peers: { (try? node.peerRooms()) ?? [:] }, wake: wake,
                        bound: { address in self.observer.peersListening(address: address) })
                } catch is CancellationError {
                } catch {
                    self.observer.peersFailed(
                        report:
                            "Peers cannot listen on \(listen): \(ClientError(describing: error).message) Set peers.listen (or --listen-udp) to a free HOST:PORT."
                    )
                }
            }
            group.addTask { await self.stopping.wait(upToMs: Int64.max / 2) }
            await group.next()
            group.cancelAll()
        }
    }
}
