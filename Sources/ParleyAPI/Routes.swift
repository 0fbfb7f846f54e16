import Foundation
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import ParleyClient

extension LocalAPI {
    /// The endpoints of docs/API.md.
    func addRoutes(to router: Router<BasicWebSocketRequestContext>) {
        let v1 = router.group("v1")
        addFileRoutes(to: v1)
        v1.get("me") { _, _ in
            jsonResponse(["user_id": .string(self.node.identity.userID), "signing_key": .string(self.node.identity.signingKeyBase64)])
        }
        v1.get("rooms") { _, _ in
            try await call { .array(try self.node.roomSummaries().map(Self.summaryJSON)) }
        }
        v1.post("rooms") { request, _ in
            let body = try await self.body(of: request)
            let roomID = try body.string("room_id")
            let name = try body.optionalString("name")
            let encryption: RoomEncryptionOption? = try body.optionalBool("encrypted") == true ? .epochs(history: .shared) : nil
            let bucket = try body.optionalString("bucket")
            return try await callAsync(status: .created) {
                if let bucket {
                    _ = try await self.client.createRoom(roomID, bucket: try BucketURL(bucket), name: name, encryption: encryption, createBucket: false)
                } else {
                    _ = try self.node.createRoom(roomID, name: name, encryption: encryption)
                }
                return Self.summaryJSON(try self.node.roomSummary(roomID))
            }
        }
        v1.get("rooms/:room") { _, context in
            let roomID = try context.parameters.require("room")
            return try await call {
                var object = JSONOutput.state(
                    try self.node.roomState(roomID), forks: try self.node.forkProofs(roomID), collisions: try self.node.eventIDCollisions(roomID),
                    heldBack: try self.node.heldBackCount(roomID)
                ).objectValue!
                object["summary"] = Self.summaryJSON(try self.node.roomSummary(roomID))
                return .object(object)
            }
        }
        v1.get("rooms/:room/timeline") { request, context in
            let roomID = try context.parameters.require("room")
            let limit = try Self.limit(request)
            let before = request.uri.queryParameters.get("before")
            return try await call {
                let items = try self.node.timeline(roomID, limit: limit, before: before)
                let me = self.node.identity.signingKeyBase64
                let sentUpTo = items.contains { $0.senderKey == me } ? try self.node.sentUpToSeq(roomID) : nil
                let marks = try self.node.deliveryMarks(roomID, items: items)
                return [
                    "items": .array(
                        items.map { item in
                            var json = JSONOutput.item(item).objectValue ?? JSONObject()
                            // This device's own, not yet taken by any transport: a UI marks it as waiting.
                            if let sentUpTo, item.senderKey == me, item.seq > sentUpTo { json["pending"] = .bool(true) }
                            if let mark = marks[item.eventID] { json["delivery"] = JSONOutput.deliveryMark(mark) }
                            return .object(json)
                        })
                ]
            }
        }
        v1.post("rooms/:room/messages") { request, context in
            let roomID = try context.parameters.require("room")
            let body = try await self.body(of: request)
            let text = try body.string("text")
            let kind =
                try body.optionalString("msgtype").map { raw in
                    guard let kind = MessageKind(rawValue: raw), kind != .file else {
                        throw APIError(ClientError(.invalidArgument, "msgtype must be text, notice or emote; it was \(raw)."))
                    }
                    return kind
                } ?? .text
            let replyTo = try body.optionalString("reply_to")
            let priority = try body.priority()
            return try await call(status: .created) {
                let parent = try replyTo.map { try self.node.resolveEventID($0, in: roomID) }
                return Self.eventJSON(try self.node.send(roomID, text: text, kind: kind, replyTo: parent, priority: priority))
            }
        }
        v1.post("rooms/:room/events/:event/forward") { request, context in
            let (roomID, reference) = (try context.parameters.require("room"), try context.parameters.require("event"))
            let body = try await self.body(of: request)
            let target = try body.string("to")
            let priority = try body.priority()
            let allowClear = try body.optionalBool("allow_clear") ?? false
            return try await call(status: .created) {
                let eventID = try self.node.resolveEventID(reference, in: roomID)
                return Self.eventJSON(try self.node.forward(eventID: eventID, to: target, priority: priority, allowClear: allowClear))
            }
        }
        v1.post("rooms/:room/events/:event/edit") { request, context in
            let (roomID, reference) = (try context.parameters.require("room"), try context.parameters.require("event"))
            let text = try await self.body(of: request).string("text")
            return try await call(status: .created) {
                Self.eventJSON(try self.node.edit(roomID, eventID: try self.node.resolveEventID(reference, in: roomID), text: text))
            }
        }
        v1.post("rooms/:room/events/:event/reactions") { request, context in
            let (roomID, reference) = (try context.parameters.require("room"), try context.parameters.require("event"))
            let key = try await self.body(of: request).string("key")
            return try await call(status: .created) {
                Self.eventJSON(try self.node.react(roomID, eventID: try self.node.resolveEventID(reference, in: roomID), key: key))
            }
        }
        v1.post("rooms/:room/events/:event/reactions/remove") { request, context in
            let (roomID, reference) = (try context.parameters.require("room"), try context.parameters.require("event"))
            let key = try await self.body(of: request).string("key")
            return try await call {
                let redactions = try self.node.removeReaction(roomID, eventID: try self.node.resolveEventID(reference, in: roomID), key: key)
                return ["redactions": .array(redactions.map(Self.eventJSON))]
            }
        }
        v1.post("rooms/:room/events/:event/redact") { request, context in
            let (roomID, reference) = (try context.parameters.require("room"), try context.parameters.require("event"))
            let body = try await self.body(of: request)
            let (reason, allCopies) = (try body.optionalString("reason"), try body.optionalBool("all_copies") ?? false)
            return try await call(status: .created) {
                Self.eventJSON(try self.node.redact(roomID, eventID: try self.node.resolveEventID(reference, in: roomID), reason: reason, allCopies: allCopies))
            }
        }
        v1.get("rooms/:room/events/:event/status") { _, context in
            let (roomID, reference) = (try context.parameters.require("room"), try context.parameters.require("event"))
            return try await call { JSONOutput.delivery(try self.node.deliveryStatus(roomID, eventID: try self.node.resolveEventID(reference, in: roomID))) }
        }
        v1.post("rooms/:room/read") { request, context in
            let roomID = try context.parameters.require("room")
            let reference = try await self.body(of: request).string("event_id")
            return try await call {
                let eventID = try self.node.resolveEventID(reference, in: roomID)
                let receipt = try self.node.markRead(roomID, eventID: eventID)
                return ["read_marker": .string(eventID), "receipt": receipt.map(Self.eventJSON) ?? .null]
            }
        }
        v1.post("rooms/:room/typing") { request, context in
            let roomID = try context.parameters.require("room")
            let typing = try await self.body(of: request).bool("typing")
            return try await call {
                try self.node.setTyping(roomID, typing)
                return ["typing": .bool(typing)]
            }
        }
        v1.post("rooms/:room/invite") { request, context in
            let roomID = try context.parameters.require("room")
            let body = try await self.body(of: request)
            let (userID, key) = (try body.string("user_id"), try body.string("signing_key"))
            return try await callAsync(status: .created) {
                let event = try self.node.invite(roomID, userID: userID, key: key)
                var object = Self.eventJSON(event).objectValue!
                if let code = try self.client.inviteCode(roomID) {
                    _ = try await self.client.flush(roomID)
                    object["invite_code"] = .string(code.text)
                }
                return .object(object)
            }
        }
        v1.post("rooms/:room/leave") { _, context in
            let roomID = try context.parameters.require("room")
            return try await callAsync(status: .created) {
                let event = try self.node.leave(roomID)
                // In a bucket room the others learn it at once.
                if try self.client.inviteCode(roomID) != nil { _ = try await self.client.flush(roomID) }
                return Self.eventJSON(event)
            }
        }
        v1.post("dms") { request, _ in
            let body = try await self.body(of: request)
            let (userID, key, bucket) = (try body.string("user_id"), try body.optionalString("signing_key"), try body.optionalString("bucket"))
            return try await callAsync(status: .created) {
                let started = try await self.client.startDirectMessage(with: userID, key: key, bucket: try bucket.map { try BucketURL($0) })
                var object = JSONObject(["room_id": .string(started.roomID), "user_id": .string(userID), "existing": .bool(started.existing)])
                object["invite_code"] = started.inviteCode.map { .string($0.text) } ?? .null
                return .object(object)
            }
        }
        v1.post("join") { request, _ in
            let code = try await self.body(of: request).string("code")
            return try await callAsync(status: .created) {
                let invite = try InviteCode(pasted: code)
                guard !invite.needsPassphrase else {
                    throw ClientError(
                        .invalidArgument, "This room's key comes from a passphrase, which the local API does not take.",
                        remedy: "Join it with `parley room join`.")
                }
                let event = try await self.client.join(invite, at: try invite.bucket())
                var object = Self.eventJSON(event).objectValue!
                object["room_id"] = .string(event.event.roomID)
                return .object(object)
            }
        }
        v1.get("search") { request, _ in
            guard let query = request.uri.queryParameters.get("q"), !query.isEmpty else {
                throw APIError(ClientError(.invalidArgument, "Say what to search for: ?q=WORDS."))
            }
            let room = request.uri.queryParameters.get("room")
            let limit = try Self.limit(request)
            return try await call {
                .array(
                    try self.node.search(query, roomID: room, limit: limit).map { hit in
                        var item = JSONOutput.item(hit.item).objectValue!
                        item["room_id"] = .string(hit.roomID)
                        return .object(item)
                    })
            }
        }
        v1.get("metrics") { _, _ in
            let text = try await offPool { try self.node.metrics().text }
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        v1.get("query") { request, _ in
            let parameters = request.uri.queryParameters.map { (name: String($0.key), value: String($0.value)) }
            return try await call {
                let (hits, next) = try self.node.query(try EventQuery(parameters: parameters))
                return ["events": .array(hits.map(JSONOutput.queryHit)), "next_cursor": next.map { .string($0.text) } ?? .null]
            }
        }
        v1.ws("stream") { inbound, outbound, _ in
            try await self.stream(inbound: inbound, outbound: outbound)
        }
    }

    static func limit(_ request: Request) throws -> Int {
        guard let text = request.uri.queryParameters.get("limit") else { return 50 }
        guard let limit = Int(text), (1...1_000).contains(limit) else {
            throw APIError(ClientError(.invalidArgument, "limit must be a number from 1 to 1000; it was \(text)."))
        }
        return limit
    }

    /// The request's body as a JSON object, read up to ``Settings/maxBodyBytes``.
    func body(of request: Request) async throws -> Fields {
        try await Fields(of: request, maxBytes: settings.maxBodyBytes)
    }

    static func eventJSON(_ event: VerifiedEvent) -> JSONValue {
        ["event_id": .string(event.event.eventID), "event_hash": .string(event.hash), "seq": .integer(event.event.seq)]
    }

    static func summaryJSON(_ room: RoomSummary) -> JSONValue {
        var object = JSONObject()
        object["room_id"] = .string(room.roomID)
        object["name"] = room.name.map(JSONValue.string) ?? .null
        object["topic"] = room.topic.map(JSONValue.string) ?? .null
        object["encrypted"] = .bool(room.isEncrypted)
        object["members"] = .integer(Int64(room.members))
        object["membership"] = room.membership.map { .string($0.rawValue) } ?? .null
        object["direct_peer"] = room.directPeer.map(JSONValue.string) ?? .null
        object["unread"] = .integer(Int64(room.unread))
        object["mentions"] = .integer(Int64(room.mentions))
        object["last"] = room.last.map(JSONOutput.item) ?? .null
        return .object(object)
    }
}

/// A request body's members, each checked for its type.
struct Fields {
    var object: JSONObject

    /// The body of `request`, a JSON object of at most `maxBytes`.
    init(of request: Request, maxBytes: Int) async throws {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: maxBytes)
        } catch is NIOTooManyBytesError {
            let limit = maxBytes % (1 << 20) == 0 ? "\(maxBytes >> 20) MiB" : "\(maxBytes) bytes"
            throw APIError(ClientError(.tooLarge, "The request body is larger than \(limit).", remedy: "Send at most \(limit)."))
        }
        let value: JSONValue
        do {
            value = try JSONParser(maxDepth: 8, maxBytes: maxBytes, keysWithinBMP: false).parse(buffer.readableBytesView)
        } catch {
            throw APIError(ClientError(.invalidArgument, "The request body is not JSON: \(error.description).", remedy: "Send a JSON object."))
        }
        guard case .object(let object) = value else { throw APIError(ClientError(.invalidArgument, "The request body must be a JSON object.")) }
        self.object = object
    }

    func string(_ key: String) throws -> String {
        guard let value = try optionalString(key) else { throw APIError(ClientError(.invalidArgument, "The body needs \"\(key)\", a string.")) }
        return value
    }

    func optionalString(_ key: String) throws -> String? {
        guard let value = object[key], value != .null else { return nil }
        guard let text = value.stringValue else { throw APIError(ClientError(.invalidArgument, "\"\(key)\" must be a string.")) }
        return text
    }

    /// `"priority"`: `low`, `normal`, `high` or `urgent`; normal when absent.
    func priority() throws -> MessagePriority {
        guard let name = try optionalString("priority") else { return .normal }
        guard let priority = MessagePriority(rawValue: name) else {
            throw APIError(ClientError(.invalidArgument, "priority must be low, normal, high or urgent; it was \(name)."))
        }
        return priority
    }

    func bool(_ key: String) throws -> Bool {
        guard let value = try optionalBool(key) else { throw APIError(ClientError(.invalidArgument, "The body needs \"\(key)\", true or false.")) }
        return value
    }

    func optionalBool(_ key: String) throws -> Bool? {
        guard let value = object[key], value != .null else { return nil }
        guard let flag = value.boolValue else { throw APIError(ClientError(.invalidArgument, "\"\(key)\" must be true or false.")) }
        return flag
    }
}

/// Runs a node call on a thread of its own, answering its result as JSON, or its error with the status its code means.
/// Node calls block (SQLite, the home's publishing lock, which another `parley` process may hold for a while, and a
/// send waiting for the one publishing its burst): off the cooperative pool, a wait never stalls the node's other
/// tasks. A serial queue of its own runs on libdispatch's overcommitting pool, which starts a thread when none is free;
/// `DispatchQueue.global()` keeps to one per core and would leave a call queued behind calls that wait.
func call(status: HTTPResponse.Status = .ok, _ body: @escaping @Sendable () throws -> JSONValue) async throws -> Response {
    jsonResponse(try await offPool(body), status: status)
}

/// Runs a blocking node call on a thread of its own (see ``call(status:_:)``), its error made an ``APIError``.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, any Error>, Never>) in
        DispatchQueue(label: "parley.api.call").async { continuation.resume(returning: Result { try body() }) }
    }
    do {
        return try result.get()
    } catch let error as APIError {
        throw error
    } catch {
        throw APIError(ClientError(describing: error))
    }
}

func callAsync(status: HTTPResponse.Status = .ok, _ body: () async throws -> JSONValue) async throws -> Response {
    do {
        return jsonResponse(try await body(), status: status)
    } catch let error as APIError {
        throw error
    } catch {
        throw APIError(ClientError(describing: error))
    }
}
