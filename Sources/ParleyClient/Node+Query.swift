import ParleyCore
import ParleyStore

@_exported import struct ParleyStore.EventQuery
@_exported import struct ParleyStore.QueryCursor
@_exported import struct ParleyStore.QueryHit

extension Node {
    /// The accepted events matching `query`, room by room in each room's order, and the cursor of the next page.
    /// - Throws: ``ClientError`` `.unknownRoom` when the query names a room this node does not hold.
    public func query(_ query: EventQuery) throws -> (hits: [QueryHit], next: QueryCursor?) {
        if let roomID = query.roomID {
            try validateRoomID(roomID)
            guard try store.roomIDs().contains(roomID) else { throw ClientError(.unknownRoom, "This node holds no room \(roomID).") }
        }
        return try store.query(query)
    }
}
