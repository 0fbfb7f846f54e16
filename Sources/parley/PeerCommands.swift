import ArgumentParser
import ParleyClient

struct PeerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "List, add or remove the peers a room syncs with directly over UDP.",
        discussion: """
            A running node (`parley node --listen-udp HOST:PORT`, or peers.listen in config.toml) syncs each room with \
            its peers every peers.interval seconds (2) and sends them this device's new events at once; a peer that \
            syncs with this node is sent new events too while it keeps in touch, whether or not it is listed here. \
            Every datagram is signed by its device and checked against the room's members (docs/PROTOCOL.md §17). \
            Peers must reach each other's address: there is no NAT traversal, so across the internet use a relay \
            (`parley relay`) or a bucket instead.
            """,
        subcommands: [PeerList.self, PeerAdd.self, PeerRemove.self])
}

struct PeerAdd: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add", abstract: "Add a peer (HOST:PORT) to a room.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The room.") var roomID: String
    @Argument(help: "The peer's UDP address: 192.168.1.20:7070, peer.lan:7070 or [fd00::5]:7070.") var address: String

    func run() throws {
        let node = try global.node()
        let peers = try failing { try node.addPeer(address, roomID: roomID) }
        output("\(roomID) syncs with \(peers.joined(separator: ", "))")
        if (try? global.configuration(flags: [:]).peersListen) == nil {
            printError("note: peers.listen is not set: `parley node` syncs peer rooms only with --listen-udp HOST:PORT or peers.listen in config.toml.")
        }
    }
}

struct PeerRemove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove a peer from a room.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The room.") var roomID: String
    @Argument(help: "The peer's address, as listed.") var address: String

    func run() throws {
        let node = try global.node()
        let peers = try failing { try node.removePeer(address, roomID: roomID) }
        output(peers.isEmpty ? "\(roomID) syncs with no peers" : "\(roomID) syncs with \(peers.joined(separator: ", "))")
    }
}

struct PeerList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the peers of each room, or of one.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Only this room.") var roomID: String?
    @Flag(help: "JSON: an object of room ids, each an array of addresses.") var json = false

    func run() throws {
        let node = try global.node()
        let rooms = try failing { try node.peerRooms() }.filter { roomID == nil || $0.key == roomID }
        if json {
            var object = JSONObject()
            for (room, peers) in rooms { object[room] = .array(peers.map(JSONValue.string)) }
            printJSON(.object(object))
            return
        }
        if rooms.isEmpty { output(roomID.map { "\($0) syncs with no peers" } ?? "no room syncs with peers") }
        for (room, peers) in rooms.sorted(by: { $0.key < $1.key }) { output("\(room) syncs with \(peers.joined(separator: ", "))") }
    }
}
