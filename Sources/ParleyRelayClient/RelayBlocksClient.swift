import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ParleyCore
import ParleySync

/// A relay room's file blocks (docs/PROTOCOL.md §16.6), moved over HTTP as a device of the account: which the relay
/// lacks, uploads, and downloads.
public struct RelayBlocksClient: Sendable {
    public let relay: RelayURL
    let token: String
    let deviceKey: String

    public init(relay: RelayURL, token: String, deviceKey: String) {
        self.relay = relay
        self.token = token
        self.deviceKey = deviceKey
    }

    /// The most ids one question carries.
    static let idsPerQuestion = 200

    /// Which of `ids` the relay does not hold for `roomID`.
    public func missing(_ ids: [BlockID], roomID: String) async throws -> Set<BlockID> {
        var missing: Set<BlockID> = []
        for start in stride(from: 0, to: ids.count, by: Self.idsPerQuestion) {
            let chunk = ids[start..<min(ids.count, start + Self.idsPerQuestion)]
            let body = CanonicalJSON.encode(["blocks": .array(chunk.map { .string($0.hex) })])
            let answer = try await send(.POST, "rooms/\(roomID)/blocks/missing", body: body, maxBytes: 65_536)
            guard case .array(let listed)? = (try? JSONParser().parse(Array(answer.readableBytesView)))?["missing"] else {
                throw RelayClientError.protocolBroken("The relay's list of missing blocks is not one.", relay: relay)
            }
            missing.formUnion(listed.compactMap { $0.stringValue.flatMap(BlockID.init(hex:)) })
        }
        return missing
    }

    /// Uploads a block's stored bytes to `roomID`.
    public func put(_ bytes: [UInt8], id: BlockID, roomID: String) async throws {
        _ = try await send(.PUT, "rooms/\(roomID)/blocks/\(id.hex)", body: bytes, maxBytes: 65_536)
        BlockTraffic.sent(bytes.count)
    }

    /// Deletes a block this account uploaded to `roomID`; one the room no longer holds is no error.
    public func delete(_ id: BlockID, roomID: String) async throws {
        do {
            _ = try await send(.DELETE, "rooms/\(roomID)/blocks/\(id.hex)", body: nil, maxBytes: 65_536)
        } catch let error as RelayClientError where error.code == "not_found" {}
    }

    /// Downloads a block of `roomID`: at most its tier's length, unchecked (the reader checks it).
    public func get(_ block: BlockRef, roomID: String) async throws -> [UInt8] {
        let bytes = Array(try await send(.GET, "rooms/\(roomID)/blocks/\(block.id.hex)", body: nil, maxBytes: block.tier.byteCount).readableBytesView)
        BlockTraffic.fetched(bytes.count)
        return bytes
    }

    /// ``sendOnce(_:_:body:maxBytes:)``, again after a second while the relay says it is busy or the account asks
    /// too often (`busy`, `rate_limited`), up to ``attempts`` times.
    func send(_ method: HTTPMethod, _ path: String, body: [UInt8]?, maxBytes: Int) async throws -> ByteBuffer {
        for _ in 1..<Self.attempts {
            do {
                return try await sendOnce(method, path, body: body, maxBytes: maxBytes)
            } catch let error as RelayClientError where ["busy", "rate_limited"].contains(error.code) {
                try await Task.sleep(for: .seconds(1))
            }
        }
        return try await sendOnce(method, path, body: body, maxBytes: maxBytes)
    }

    static let attempts = 10

    func sendOnce(_ method: HTTPMethod, _ path: String, body: [UInt8]?, maxBytes: Int) async throws -> ByteBuffer {
        var request = HTTPClientRequest(url: relay.api(path))
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Parley-Device", value: deviceKey)
        if let body {
            request.headers.add(name: "Content-Type", value: method == .PUT ? "application/octet-stream" : "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(120))
            bytes = try await response.body.collect(upTo: max(maxBytes, 65_536))
        } catch {
            throw RelayClientError.unreachable(relay, error)
        }
        guard (200..<300).contains(response.status.code) else { throw RelayClientError.refused(relay, status: response.status.code, body: bytes) }
        return bytes
    }
}
