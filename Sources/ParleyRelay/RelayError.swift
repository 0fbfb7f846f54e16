import Hummingbird
import ParleyCore

/// A relay's refusal, as an HTTP answer (`{"error":{"code","message","remedy"}}` with the status its code means) and as
/// a WebSocket `error` frame. Its text is safe to show anyone: no password, token or message content.
public struct RelayError: Error, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String
    public var remedy: String?
    public var status: HTTPResponse.Status

    public init(_ code: String, _ message: String, remedy: String? = nil, status: HTTPResponse.Status) {
        self.code = code
        self.message = message
        self.remedy = remedy
        self.status = status
    }

    public var description: String { [message, remedy].compactMap { $0 }.joined(separator: " ") }

    var json: JSONValue {
        var error = JSONObject(["code": .string(code), "message": .string(message)])
        error["remedy"] = remedy.map(JSONValue.string)
        return ["error": .object(error)]
    }

    static func invalidRequest(_ message: String) -> RelayError { RelayError("invalid_request", message, status: .badRequest) }
    static let unauthorized = RelayError(
        "unauthorized", "The request carries no valid session token.", remedy: "Log in again: parley account login --relay URL.", status: .unauthorized)
}

extension RelayError: HTTPResponseError {
    public var headers: HTTPFields { [.contentType: "application/json"] }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = jsonResponse(json, status: status)
        if status == .tooManyRequests { response.headers[.retryAfter] = "60" }
        return response
    }
}

func jsonResponse(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
    Response(
        status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
        body: .init(byteBuffer: ByteBuffer(bytes: CanonicalJSON.encode(value) + [0x0A])))
}
