import ParleyCore
import ParleySync

extension Node {
    /// The most peers one room may list.
    public static let maxPeersPerRoom = 16

    /// The peers configured for each room (HOST:PORT each), by room id: where a running node with `peers.listen` set
    /// syncs the room directly (docs/PROTOCOL.md §17).
    public func peerRooms() throws -> [String: [String]] {
        var rooms: [String: [String]] = [:]
        for room in try store.transportRooms(.peer) {
            let addresses = Self.peerAddresses(room.location)
            if !addresses.isEmpty { rooms[room.roomID] = addresses }
        }
        return rooms
    }

    /// Adds `address` to the room's peers.
    /// - Returns: the room's peers now.
    /// - Throws: ``ClientError`` `unknown_room` when this node holds no such room, `invalid_argument` for an address
    ///   that is not HOST:PORT or past ``maxPeersPerRoom``.
    @discardableResult
    public func addPeer(_ address: String, roomID: String) throws -> [String] {
        try validateRoomID(roomID)
        guard RoomLocation.isPeerAddress(address) else {
            throw ClientError(
                .invalidArgument, "\"\(TerminalText.escape(String(address.prefix(100))))\" is not HOST:PORT.",
                remedy: "Give the peer's address and UDP port, as 192.168.1.20:7070 or [fd00::5]:7070.")
        }
        let state = try roomState(roomID)
        guard let creator = state.creation?.creatorKey, let fingerprint = InviteCode.fingerprint(ofKey: creator) else {
            throw ClientError(.unknownRoom, "This node does not hold room \(roomID)'s create event.", remedy: "Join the room first.")
        }
        var addresses = try store.transportRoom(.peer, roomID: roomID).map { Self.peerAddresses($0.location) } ?? []
        guard !addresses.contains(address) else { return addresses }
        guard addresses.count < Self.maxPeersPerRoom else {
            throw ClientError(.invalidArgument, "Room \(roomID) has \(Self.maxPeersPerRoom) peers already.", remedy: "Remove one with `parley peer remove`.")
        }
        addresses.append(address)
        if try store.transportRoom(.peer, roomID: roomID) == nil {
            try store.addTransportRoom(.peer, roomID: roomID, location: addresses.joined(separator: " "), creatorFingerprint: fingerprint)
        } else {
            try store.moveTransportRoom(.peer, roomID: roomID, to: addresses.joined(separator: " "))
        }
        return addresses
    }

    /// Removes `address` from the room's peers.
    /// - Returns: the room's peers now.
    /// - Throws: ``ClientError`` `invalid_argument` when the room does not list it.
    @discardableResult
    public func removePeer(_ address: String, roomID: String) throws -> [String] {
        try validateRoomID(roomID)
        var addresses = try store.transportRoom(.peer, roomID: roomID).map { Self.peerAddresses($0.location) } ?? []
        guard let index = addresses.firstIndex(of: address) else {
            throw ClientError(
                .invalidArgument, "Room \(roomID) has no peer \(TerminalText.escape(String(address.prefix(100)))).",
                remedy: "See its peers with `parley peer list \(roomID)`.")
        }
        addresses.remove(at: index)
        try store.moveTransportRoom(.peer, roomID: roomID, to: addresses.joined(separator: " "))
        return addresses
    }

    /// A peer room's location: its peers' addresses, separated by spaces.
    static func peerAddresses(_ location: String) -> [String] { location.split(separator: " ").map(String.init) }
}
