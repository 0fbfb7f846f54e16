import ArgumentParser
import Foundation
import ParleyClient
import ParleyTerminalUI
import ServiceLifecycle
import Synchronization

struct Chat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat in the terminal: rooms, the timeline, and a line to type in, on this home's node.",
        discussion: """
            Uses the running node of this home (`parley node` or `parley web`), or runs one for as long as the chat is \
            open (its log goes to chat-node.log in the home; same options as `parley node`). Type a message and press \
            Enter; /help lists the commands and keys. Ctrl-C, Ctrl-D on an empty line or /quit leaves; SIGTERM and \
            SIGHUP too, and the terminal is given back as it was. NO_COLOR=1 draws without colours.
            """)
    @OptionGroup var global: GlobalOptions
    @OptionGroup var options: NodeOptions
    @Argument(help: "The room to open first (default: the most recently active).") var room: String?

    func run() async throws {
        guard isatty(STDIN_FILENO) == 1, isatty(STDOUT_FILENO) == 1 else {
            throw ValidationError("parley chat needs a terminal: run it in one (for scripts, see `parley send` and `parley log`).")
        }
        let home = global.parleyHome
        if let running = RunningNode(infoPath: home.nodeInfoPath) {
            await chat(NodeConnection(url: running.url, token: running.token))
            return
        }
        // No node: one runs here while the chat is open, its log in a file so that it does not draw over the screen.
        let logPath = home.url.appendingPathComponent("chat-node.log").path
        let log = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard log >= 0 else { throw ValidationError("Cannot open \(logPath) for the node's log: \(String(cString: strerror(errno))).") }
        let savedError = dup(STDERR_FILENO)
        dup2(log, STDERR_FILENO)
        close(log)
        defer {
            dup2(savedError, STDERR_FILENO)
            close(savedError)
        }
        let (addresses, continuation) = AsyncStream<RunningNode?>.makeStream()
        let running = RunningServiceGroup()
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                defer {
                    continuation.finish()
                    // A node stopped by a signal (which it may have taken before the chat saw it) ends the chat too.
                    running.session.withLock { $0 }?.quit()
                }
                try await options.runNode(global: global, started: { group in running.group.withLock { $0 = group } }) { _, infoPath in
                    continuation.yield(RunningNode(infoPath: infoPath))
                }
            }
            var iterator = addresses.makeAsyncIterator()
            if let node = await iterator.next() ?? nil {
                let session = ChatSession(connection: NodeConnection(url: node.url, token: node.token), room: room)
                running.session.withLock { $0 = session }
                await chat(session)
                // The node writes what waits in the outbox before it exits.
                await running.group.withLock { $0 }?.triggerGracefulShutdown()
            }
            try await tasks.waitForAll()
        }
    }

    private func chat(_ connection: NodeConnection) async {
        await chat(ChatSession(connection: connection, room: room))
    }

    private func chat(_ session: ChatSession) async {
        // In raw mode Ctrl-C is a key; a signal from outside ends the chat the same way, terminal given back. On Linux
        // a dispatch source catches its signal with a handler of its own (set here, before ncurses starts, so that
        // ncurses leaves it be): the signal must not be ignored.
        let sources = [SIGTERM, SIGHUP, SIGINT].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { session.quit() }
            source.resume()
            return source
        }
        await session.run()
        for source in sources { source.cancel() }
    }
}

/// The node's service group once it runs, to stop it gracefully when the chat ends, and the chat, to end it when the
/// node stops.
final class RunningServiceGroup: Sendable {
    let group = Mutex<ServiceGroup?>(nil)
    let session = Mutex<ChatSession?>(nil)
}
