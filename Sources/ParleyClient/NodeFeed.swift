import Foundation
import ParleyStore
import Synchronization

/// Something that happened in a node, as a UI shows it.
public enum NodeActivity: Sendable, Equatable {
    /// Events accepted into a room, from whatever source (this process, another process on the same home, a
    /// transport), in the order they were stored.
    case events(roomID: String, [StoredEventSummary])
    /// A transport confirmed it holds these events of this device: they are IN_TRANSIT.
    case sent(roomID: String, eventIDs: [String], transport: String)
    /// A transport failed to take this device's pending events of a room (the first of them listed); it tries again
    /// at `retryAtMs`.
    case sendFailed(roomID: String, eventIDs: [String], transport: String, reason: String, retryAtMs: Int64)
    /// A transport failed to read a room; it tries again at `retryAtMs`.
    case syncFailed(roomID: String, transport: String, reason: String, retryAtMs: Int64)
    /// A sync of a room through a transport found new events or problems.
    case synced(roomID: String, transport: String, accepted: Int, problems: Int)
    /// Someone started or stopped typing in a room. Ephemeral: never stored; carried by relays (this user's own go to
    /// the room's relay, others' come from it), not by buckets.
    case typing(roomID: String, userID: String, isTyping: Bool)
    /// A read receipt of this device waits for the room's pace: a running node sends it once due.
    case receiptWaiting(roomID: String)
}

/// The node's activity, for subscribers. Events are announced from one watermark over the store's rows, so every
/// accepted event is announced once, whichever process stored it: this process announces its own at once, and a
/// running node (``NodeRunner``) looks for other processes' every ``NodeRunner/Settings/localCheckMs``.
public final class NodeFeed: Sendable {
    /// One subscriber's view: its activity, and whether it was cut off for falling behind.
    public struct Subscription: Sendable {
        /// Ends when the subscriber stops iterating, or after it fell more than its backlog behind.
        public let activity: AsyncStream<NodeActivity>
        let state: SubscriberBox

        /// Whether the stream ended because the subscriber fell behind.
        public var wasCutOff: Bool { state.state.withLock { $0.cutOff } }

        /// Returns once the subscriber fell behind and was cut off, or once the task is cancelled.
        public func waitUntilCutOff() async {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let now = state.state.withLock { state in
                        if state.cutOff || state.ended { return true }
                        state.waiter = continuation
                        return false
                    }
                    if now { continuation.resume() }
                }
            } onCancel: {
                state.state.withLock { state in
                    state.ended = true
                    return state.waiter.take()
                }?.resume()
            }
        }
    }

    final class SubscriberBox: Sendable {
        let state = Mutex(SubscriberState())
    }

    struct SubscriberState: Sendable {
        var cutOff = false
        var ended = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private struct Subscriber {
        var continuation: AsyncStream<NodeActivity>.Continuation
        var state: SubscriberBox
    }

    private let store: EventStore
    private let subscribers = Mutex<[UInt64: Subscriber]>([:])
    private let nextID = Atomic<UInt64>(0)
    /// Where announcing has got to in the store; held while announcing, so announcements keep the store's order.
    private let watermark: Mutex<EventStore.FeedPosition>

    init(store: EventStore) throws {
        self.store = store
        watermark = Mutex(try store.newestFeedPosition())
    }

    /// Activity from now on. A subscriber that falls more than `backlog` items behind is cut off: its stream ends and
    /// ``Subscription/wasCutOff`` says so, so a UI that stops reading costs the node a bounded amount of memory.
    public func subscribe(backlog: Int = 1_000) -> Subscription {
        let id = nextID.add(1, ordering: .relaxed).newValue
        let state = SubscriberBox()
        let (stream, continuation) = AsyncStream.makeStream(of: NodeActivity.self, bufferingPolicy: .bufferingOldest(backlog))
        continuation.onTermination = { [weak self] _ in
            _ = self?.subscribers.withLock { $0.removeValue(forKey: id) }
            state.state.withLock { state in
                state.ended = true
                return state.waiter.take()
            }?.resume()
        }
        subscribers.withLock { $0[id] = Subscriber(continuation: continuation, state: state) }
        return Subscription(activity: stream, state: state)
    }

    /// How many subscribers are listening.
    public var subscriberCount: Int { subscribers.withLock { $0.count } }

    /// Tells every subscriber.
    public func post(_ activity: NodeActivity) {
        for subscriber in subscribers.withLock({ Array($0.values) }) {
            if case .dropped = subscriber.continuation.yield(activity) {
                subscriber.state.state.withLock { $0.cutOff = true }
                subscriber.continuation.finish()
            }
        }
    }

    /// Announces the events stored since the last announcement, by room.
    /// - Throws: the store's error; nothing is skipped then, the next call announces it.
    public func catchUp() throws {
        try watermark.withLock { watermark in
            while true {
                let (events, upTo) = try store.feedEvents(after: watermark, limit: 500)
                if upTo == watermark { return }
                watermark = upTo
                var start = events.startIndex
                while start < events.endIndex {
                    let roomID = events[start].roomID
                    let end = events[start...].firstIndex { $0.roomID != roomID } ?? events.endIndex
                    post(.events(roomID: roomID, Array(events[start..<end])))
                    start = end
                }
            }
        }
    }
}
