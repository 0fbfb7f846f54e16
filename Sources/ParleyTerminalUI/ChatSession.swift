import Foundation
import ParleyClient
import Synchronization

/// `parley chat`: the terminal UI on a running node's local API. One thread owns the terminal and the model; the API's
/// answers and the stream's messages come to it through an inbox, and wake it through a pipe, so that it sleeps in
/// `poll` while nothing happens.
public final class ChatSession: Sendable {
    let connection: NodeConnection
    let initialRoom: String?
    private let inbox = Mutex<[@Sendable (inout ChatModel, ChatSession) -> Void]>([])
    private let wake: (read: Int32, write: Int32)
    private let quitting = Atomic<Bool>(false)

    public init(connection: NodeConnection, room: String?) {
        self.connection = connection
        self.initialRoom = room
        var fds: [Int32] = [0, 0]
        pipe(&fds)
        _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
        _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)
        wake = (fds[0], fds[1])
    }

    deinit {
        close(wake.read)
        close(wake.write)
    }

    /// Asks the session to end (SIGTERM, SIGHUP): it gives the terminal back and returns.
    public func quit() {
        quitting.store(true, ordering: .relaxed)
        ring()
    }

    /// Runs the UI until the user quits; the terminal is given back before it returns.
    public func run() async {
        let streamTask = Task { await self.keepStream() }
        Task { await self.loadStart() }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let thread = Thread {
                self.loop()
                done.resume()
            }
            thread.name = "parley chat"
            thread.start()
        }
        streamTask.cancel()
    }

    // MARK: The UI thread

    private func loop() {
        let terminal = Terminal()
        terminal.start()
        defer { terminal.stop() }
        var model = ChatModel()
        var controller = ChatController(session: self)
        var lastFrame: Frame?
        while !quitting.load(ordering: .relaxed) {
            for change in inbox.withLock({ changes in
                defer { changes = [] }
                return changes
            }) { change(&model, self) }
            for key in terminal.keys() {
                if key == .resize || key == .control("l") { terminal.invalidate() }
                if controller.handle(key, model: &model) == .quit { return }
            }
            controller.afterChanges(model: &model)
            let (width, height) = terminal.size
            let frame = ChatView.frame(model, width: width, height: height)
            if frame != lastFrame {
                terminal.draw(frame)
                lastFrame = frame
            }
            // Asleep until a key, a message from the node, or a typing notice expiring.
            let timeout: Int32 = model.typing.values.contains { !$0.isEmpty } ? 1_000 : -1
            var fds = [pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0), pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
            _ = poll(&fds, 2, timeout)
            var drain = [UInt8](repeating: 0, count: 64)
            while read(wake.read, &drain, drain.count) > 0 {}
            if fds[0].revents & Int16(POLLHUP | POLLERR) != 0 { return }
        }
    }

    /// Hands `change` to the UI thread.
    func post(_ change: @escaping @Sendable (inout ChatModel, ChatSession) -> Void) {
        inbox.withLock { $0.append(change) }
        ring()
    }

    private func ring() {
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
    }

    // MARK: Work off the UI thread

    /// Runs `request` and hands what it gives to the UI thread; a failure becomes the status line's notice.
    func perform(
        _ request: @escaping @Sendable (NodeConnection) async throws -> (@Sendable (inout ChatModel) -> Void),
        failed: @escaping @Sendable (inout ChatModel) -> Void = { _ in }
    ) {
        Task {
            do {
                let change = try await request(connection)
                post { model, _ in change(&model) }
            } catch {
                post { model, _ in
                    model.say(Self.describe(error), error: true)
                    failed(&model)
                }
            }
        }
    }

    static func describe(_ error: any Error) -> String {
        guard let failure = error as? NodeConnection.Failure else { return "\(error)" }
        return failure.message + (failure.remedy.map { " " + $0 } ?? "")
    }

    func loadStart() async {
        do {
            let me = try await connection.get("/v1/me")["user_id"]?.stringValue ?? ""
            let rooms = try await connection.get("/v1/rooms").arrayValue?.map(ChatRoom.init(json:)) ?? []
            let initial = initialRoom
            post { model, session in
                model.me = me
                model.rooms = rooms
                if let initial {
                    if rooms.contains(where: { $0.id == initial }) {
                        model.select(room: initial)
                    } else {
                        model.say("This node holds no room \(initial): /join CODE, or /create \(initial).", error: true)
                    }
                }
                if model.selectedRoom == nil, let first = rooms.first { model.select(room: first.id) }
                if let room = model.selectedRoom { session.loadPage(room: room, before: nil) }
            }
        } catch {
            post { model, _ in model.say(Self.describe(error), error: true) }
        }
    }

    func reloadRooms() {
        perform { connection in
            let rooms = try await connection.get("/v1/rooms").arrayValue?.map(ChatRoom.init(json:)) ?? []
            return { model in
                model.rooms = rooms
                if model.selectedRoom == nil || !rooms.contains(where: { $0.id == model.selectedRoom }), let first = rooms.first {
                    model.select(room: first.id)
                }
            }
        }
    }

    /// Loads a page of the room: the newest, or the one before `before`.
    func loadPage(room: String, before: String?) {
        perform { connection in
            let query = "limit=100" + (before.map { "&before=" + NodeConnection.query($0) } ?? "")
            let items = try await connection.get("/v1/rooms/\(NodeConnection.segment(room))/timeline?\(query)")["items"]?.arrayValue ?? []
            let page = items.map(ChatItem.init(json:))
            return { model in
                if before == nil { model.items[room] = [] }
                model.prepend(page, room: room, complete: page.count < 100)
            }
        }
    }

    /// Keeps the stream open: reconnects with a growing wait after a failure and reloads what the screen shows.
    private func keepStream() async {
        var wait = 0.5
        while !Task.isCancelled {
            let started = ContinuousClock.now
            do {
                try await connection.stream { message in
                    self.post { model, session in
                        if message["type"]?.stringValue == "ready" {
                            model.connected = true
                            session.reloadRooms()
                            if let room = model.selectedRoom { session.loadPage(room: room, before: nil) }
                        }
                        ChatController.apply(stream: message, to: &model, session: session)
                    }
                }
            } catch {}
            post { model, _ in model.connected = false }
            // A stream that had been up a while starts the waits again from the shortest.
            if ContinuousClock.now - started > .seconds(10) { wait = 0.5 }
            try? await Task.sleep(for: .seconds(wait * Double.random(in: 0.5...1)))
            wait = min(wait * 2, 10)
        }
    }
}
