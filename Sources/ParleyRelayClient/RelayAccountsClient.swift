import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ParleyCore

/// A relay's accounts API (docs/PROTOCOL.md §15.2), as `parley account` uses it.
public struct RelayAccountsClient: Sendable {
    public let relay: RelayURL

    public init(relay: RelayURL) { self.relay = relay }

    /// A live session: its token and when it expires (Unix ms).
    public struct Session: Sendable, Equatable {
        public var token: String
        public var expiresMs: Int64
        public init(token: String, expiresMs: Int64) {
            self.token = token
            self.expiresMs = expiresMs
        }
    }

    public func register(userID: String, password: String, invite: String? = nil) async throws {
        var body = JSONObject(["user_id": .string(userID), "password": .string(password)])
        body["invite"] = invite.map(JSONValue.string)
        _ = try await request(.POST, "accounts", body: .object(body))
    }

    public func login(userID: String, password: String) async throws -> Session {
        let answer = try await request(.POST, "sessions", body: ["user_id": .string(userID), "password": .string(password)])
        guard case .string(let token)? = answer?["token"], case .integer(let expires)? = answer?["expires_ms"] else {
            throw RelayClientError.protocolBroken("Its login answer has no token.", relay: relay)
        }
        return Session(token: token, expiresMs: expires)
    }

    public func logout(token: String) async throws { _ = try await request(.DELETE, "sessions/current", token: token) }
    public func logoutEverywhere(token: String) async throws { _ = try await request(.DELETE, "sessions", token: token) }

    public func changePassword(token: String, old: String, new: String) async throws {
        _ = try await request(.PUT, "accounts/password", token: token, body: ["password": .string(old), "new_password": .string(new)])
    }

    public func deleteAccount(token: String, password: String) async throws {
        _ = try await request(.POST, "accounts/delete", token: token, body: ["password": .string(password)])
    }

    /// Adds a device to the session's account (`userID`'s): asks for a challenge and answers it with `sign` (the
    /// device's signature over the challenge's signing input, §15.3) — only a challenge of this relay, for this
    /// account: a relay handing on another relay's challenge would otherwise get the device bound to an account there.
    public func addDevice(token: String, userID: String, deviceKey: String, sign: @Sendable ([UInt8]) throws -> [UInt8]) async throws {
        let answer = try await request(.POST, "devices/challenge", token: token)
        let challenge: RelayChallenge
        do throws(RelayProtocolError) { challenge = try RelayChallenge(json: answer?["challenge"] ?? .null) } catch {
            throw RelayClientError.protocolBroken("Its challenge is not one: \(error.message)", relay: relay)
        }
        guard challenge.origin == relay.base, challenge.userID == userID else {
            throw RelayClientError(
                code: "relay_refused",
                message: "The relay \(relay) asked this device to sign a challenge for \(challenge.origin) and account \(challenge.userID); it was not signed.",
                remedy: "Reach the relay at the URL it names itself by (its --public-url), and log in as this home's user.")
        }
        let signature = Base64.encode(try sign(challenge.signingInput(deviceKey: deviceKey)))
        _ = try await request(
            .POST, "devices", token: token, body: ["challenge": challenge.json, "device_key": .string(deviceKey), "signature": .string(signature)])
    }

    /// Sends one request and reads its JSON answer (at most 64 KiB).
    /// - Throws: ``RelayClientError``: unreachable, or refused with the relay's code and words.
    func request(_ method: HTTPMethod, _ path: String, token: String? = nil, body: JSONValue? = nil) async throws -> JSONValue? {
        var request = HTTPClientRequest(url: relay.api(path))
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: CanonicalJSON.encode(body)))
        }
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            bytes = try await response.body.collect(upTo: 65_536)
        } catch {
            throw RelayClientError.unreachable(relay, error)
        }
        guard (200..<300).contains(response.status.code) else { throw RelayClientError.refused(relay, status: response.status.code, body: bytes) }
        return bytes.readableBytes == 0 ? nil : try? JSONParser().parse(Array(bytes.readableBytesView))
    }
}

extension RelayClientError {
    /// A relay's refusal: its `{"error": {"code", "message", "remedy"}}`, or the HTTP status when it sent none.
    static func refused(_ relay: RelayURL, status: UInt, body: ByteBuffer) -> RelayClientError {
        let value = body.readableBytes == 0 || body.readableBytes > 65_536 ? nil : try? JSONParser().parse(Array(body.readableBytesView))
        if case .object(let error)? = value?["error"], case .string(let message)? = error["message"] {
            return RelayClientError(
                code: error["code"]?.stringValue ?? "relay_refused", message: "The relay \(relay) refused: \(message)", remedy: error["remedy"]?.stringValue)
        }
        return RelayClientError(code: "relay_refused", message: "The relay \(relay) answered HTTP \(status).", remedy: nil)
    }
}
