import HummingbirdWSClient
import Logging
import NIOCore
import NIOPosix
import ParleyCore
import ParleySync
import Synchronization

/// A relay's address: its base URL (`http://` or `https://`, host, optional port and path), from which the accounts
/// API (`…/v1/…`) and the WebSocket endpoint (`…/v1/ws`, over `ws://` or `wss://`) follow.
public struct RelayURL: Sendable, Hashable, CustomStringConvertible {
    /// The base URL without a trailing `/`.
    public let base: String

    /// Reads a relay URL: `https://` or `http://` (or `wss://`/`ws://`, taken as the same relay), a host, an optional
    /// port and path; no user information, query or fragment.
    /// - Throws: ``TransportError`` `invalid_argument` saying what is wrong.
    public init(_ text: String) throws {
        var rest = Substring(text)
        var scheme = ""
        for (prefix, name) in [("https://", "https"), ("http://", "http"), ("wss://", "https"), ("ws://", "http")] where rest.hasPrefix(prefix) {
            scheme = name
            rest = rest.dropFirst(prefix.count)
            break
        }
        guard !scheme.isEmpty else {
            throw TransportError(
                code: TransportError.invalidArgument, "\(text) is not a relay URL.", remedy: "Give it as https://HOST[:PORT] (or http:// on this machine).")
        }
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        let authority = rest.prefix { $0 != "/" }
        guard !authority.isEmpty, !rest.contains("@"), !rest.contains("?"), !rest.contains("#"),
            rest.utf8.allSatisfy({ (0x21...0x7E).contains($0) })
        else {
            throw TransportError(
                code: TransportError.invalidArgument, "\(text) is not a relay URL: it needs a host, and no user name, query or fragment.",
                remedy: "Give it as https://HOST[:PORT][/PATH].")
        }
        base = "\(scheme)://\(rest)"
    }

    /// Whether the relay is reached without TLS.
    public var isPlainHTTP: Bool { base.hasPrefix("http://") }
    /// The WebSocket endpoint.
    public var webSocket: String { (isPlainHTTP ? "ws://" : "wss://") + base.drop { $0 != ":" }.dropFirst(3) + "/v1/ws" }
    /// The URL of an accounts API path (`sessions`, `devices/challenge`).
    public func api(_ path: String) -> String { "\(base)/v1/\(path)" }

    public var description: String { base }
}

/// One live WebSocket connection to a relay, authenticated as a device of an account (docs/PROTOCOL.md §15.4): frames
/// go out with ``send(_:)`` and come in with ``next()``.
public final class RelayChannel: Sendable {
    private let outbound: WebSocketOutboundWriter
    private let mailbox = Mailbox()
    /// The account and device the relay took the token for.
    public let userID: String

    private init(outbound: WebSocketOutboundWriter, userID: String) {
        self.outbound = outbound
        self.userID = userID
    }

    /// Connects to `relay`, authenticates with `token` as `deviceKey`, and runs `body` with the channel; the
    /// connection closes when `body` returns or throws.
    /// - Throws: ``RelayClientError`` when the relay cannot be reached or refuses the session; what `body` throws.
    public static func open<T: Sendable>(
        _ relay: RelayURL, token: String, deviceKey: String, logger: Logger, body: @escaping @Sendable (RelayChannel) async throws -> T
    ) async throws -> T {
        let result = ResultBox<T>()
        var configuration = WebSocketClientConfiguration(maxFrameSize: RelayFrame.maxFrameBytes, autoPing: .enabled(timePeriod: .seconds(30)))
        configuration.validateUTF8 = true
        do {
            try await WebSocketClient.connect(url: relay.webSocket, configuration: configuration, logger: logger) { inbound, outbound, _ in
                var messages = inbound.messages(maxSize: RelayFrame.maxFrameBytes).makeAsyncIterator()
                do {
                    try await outbound.write(.text(RelayFrame.auth(token: token, deviceKey: deviceKey).text))
                    let first = try Self.frame(from: try await messages.next())
                    guard case .ready(let userID, _) = first else {
                        if case .error(let code, let message, _) = first { throw RelayClientError.refused(code: code, message: message, relay: relay) }
                        throw RelayClientError.protocolBroken("The relay answered auth with a \(first?.type ?? "closed connection").", relay: relay)
                    }
                    let channel = RelayChannel(outbound: outbound, userID: userID)
                    await withTaskGroup(of: Void.self) { group in
                        group.addTask {
                            do {
                                let value = try await body(channel)
                                result.set(.success(value))
                            } catch {
                                result.set(.failure(error))
                            }
                            // Closing ends the reader below once the relay answers the close.
                            channel.mailbox.close(nil)
                            try? await outbound.close(.normalClosure, reason: nil)
                        }
                        // The reader stays in this task, which owns the stream; each frame waits until the body takes it.
                        do {
                            while let frame = try Self.frame(from: try await messages.next()) {
                                guard await channel.mailbox.put(frame) else { break }
                            }
                            channel.mailbox.close(nil)
                        } catch {
                            channel.mailbox.close(error)
                        }
                        await group.waitForAll()
                    }
                } catch {
                    result.set(.failure(error))
                    try? await outbound.close(.normalClosure, reason: nil)
                }
            }
        } catch {
            if let failure = result.value { return try failure.get() }
            throw RelayClientError.unreachable(relay, error)
        }
        guard let outcome = result.value else {
            throw RelayClientError.protocolBroken("The relay closed the connection before answering auth.", relay: relay)
        }
        return try outcome.get()
    }

    static func frame(from message: WebSocketMessage?) throws -> RelayFrame? {
        guard let message else { return nil }
        guard case .text(let text) = message else { throw RelayProtocolError(.malformedFrame, "The relay sent a binary frame.") }
        return try RelayFrame(parsing: Array(text.utf8), from: .relay)
    }

    /// Sends a frame.
    public func send(_ frame: RelayFrame) async throws { try await outbound.write(.text(frame.text)) }

    /// The next frame from the relay; `nil` once the connection closed. One reader at a time.
    /// - Throws: what ended the connection, if it was not a close.
    public func next() async throws -> RelayFrame? {
        // Cancelled, the reader stops waiting (and the connection is done with: nothing more is taken from it).
        try await withTaskCancellationHandler {
            try await mailbox.take()
        } onCancel: {
            mailbox.close(CancellationError())
        }
    }
}

/// The first outcome of a connection's body.
private final class ResultBox<T: Sendable>: Sendable {
    private let state = Mutex<Result<T, any Error>?>(nil)
    func set(_ result: Result<T, any Error>) { state.withLock { $0 = $0 ?? result } }
    var value: Result<T, any Error>? { state.withLock { $0 } }
}

/// Hands frames from the connection's reader to its one consumer, one at a time: a consumer that is busy holds the
/// reader back (and the relay, through TCP), so nothing piles up in memory.
private final class Mailbox: Sendable {
    private struct State {
        var frame: RelayFrame?
        var putter: CheckedContinuation<Bool, Never>?
        var taker: CheckedContinuation<RelayFrame?, any Error>?
        var closed = false
        var failure: (any Error)?
    }

    private let state = Mutex(State())

    /// Offers a frame; returns once it is taken (`true`) or the mailbox closed (`false`).
    func put(_ frame: RelayFrame) async -> Bool {
        await withCheckedContinuation { continuation in
            let taker: CheckedContinuation<RelayFrame?, any Error>? = state.withLock { state in
                if state.closed {
                    continuation.resume(returning: false)
                    return nil
                }
                if let taker = state.taker {
                    state.taker = nil
                    continuation.resume(returning: true)
                    return taker
                }
                state.frame = frame
                state.putter = continuation
                return nil
            }
            taker?.resume(returning: frame)
        }
    }

    func take() async throws -> RelayFrame? {
        try await withCheckedThrowingContinuation { continuation in
            let putter: CheckedContinuation<Bool, Never>? = state.withLock { state in
                if let frame = state.frame {
                    state.frame = nil
                    continuation.resume(returning: frame)
                    defer { state.putter = nil }
                    return state.putter
                }
                if state.closed {
                    if let failure = state.failure { continuation.resume(throwing: failure) } else { continuation.resume(returning: nil) }
                    return nil
                }
                state.taker = continuation
                return nil
            }
            putter?.resume(returning: true)
        }
    }

    func close(_ failure: (any Error)?) {
        let (putter, taker) = state.withLock { state in
            state.closed = true
            state.failure = state.failure ?? failure
            defer {
                state.putter = nil
                state.taker = nil
            }
            return (state.putter, state.taker)
        }
        putter?.resume(returning: false)
        if let taker {
            if let failure { taker.resume(throwing: failure) } else { taker.resume(returning: nil) }
        }
    }
}

/// A relay that could not be used: unreachable, refusing, or speaking another protocol.
public struct RelayClientError: Error, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String
    public var remedy: String?

    public var description: String { [message, remedy].compactMap { $0 }.joined(separator: " ") }

    static func unreachable(_ relay: RelayURL, _ error: any Error) -> RelayClientError {
        RelayClientError(
            code: "relay_unreachable", message: "Cannot reach the relay \(relay): \(error).",
            remedy: "Check the URL and that the relay runs; events wait in the outbox until it answers.")
    }

    static func refused(code: String, message: String, relay: RelayURL) -> RelayClientError {
        let remedy: String? =
            switch code {
            case "unauthorized": "Log in again: parley account login --relay \(relay)."
            case "unknown_device": "Add this device: parley account login --relay \(relay) adds it."
            default: nil
            }
        return RelayClientError(code: "relay_refused", message: "The relay \(relay) refused the connection: \(message)", remedy: remedy)
    }

    static func protocolBroken(_ message: String, relay: RelayURL) -> RelayClientError {
        RelayClientError(code: "relay_protocol", message: "The relay \(relay) broke the protocol: \(message)", remedy: "Check that the URL is a Parley relay.")
    }
}
