import ArgumentParser
import Foundation
import ParleyClient

struct Web: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat in a browser: the node's web page, with a one-time address that lets this browser in.",
        discussion: """
            When this home's node runs already (`parley node`), prints the address of its page and opens it. Otherwise \
            runs the node here, as `parley node` does (same options; SIGINT or SIGTERM stops it), and prints and opens \
            the address once it listens. The address carries the node's token, which the page turns into a cookie and \
            takes off the address bar: give it to no one. The page is opened with xdg-open when there is a desktop \
            (DISPLAY or WAYLAND_DISPLAY), through a file readable only by you, so that the token does not show in the \
            process list; --no-open only prints it.

            --demo runs two nodes here instead, Alice's and Bob's, each with its own home, sharing a folder bucket, and \
            opens a page with both chats side by side and the traffic between them: every request each node makes of \
            the bucket, and each event's time from one store to the other. A switch takes either node offline. Their \
            homes and bucket are in --demo-dir (a new folder in the temporary folder by default), kept after exit: give \
            the same --demo-dir to take the demo up again. --demo-relay runs a relay here too (its data in the demo \
            folder): both nodes log in there and the room travels through it as well as through the bucket, and the page \
            shows which one brought each event; the switch then cuts a node's bucket only.
            """)
    @OptionGroup var global: GlobalOptions
    @OptionGroup var options: NodeOptions
    @Flag(name: .customLong("no-open"), help: "Print the address without opening a browser.") var noOpen = false
    @Flag(help: "Run Alice's and Bob's nodes on one folder bucket and show both chats and their traffic on one page.") var demo = false
    @Option(name: .customLong("demo-dir"), help: "With --demo: the folder of the two homes and the bucket (default: a new one in the temporary folder).")
    var demoDirectory: String?
    @Flag(name: .customLong("demo-relay"), help: "With --demo: run a relay here too and carry the room through it as well.") var demoRelay = false

    func validate() throws {
        if demoDirectory != nil, !demo { throw ValidationError("--demo-dir goes with --demo.") }
        if demoRelay, !demo { throw ValidationError("--demo-relay goes with --demo.") }
    }

    func run() async throws {
        if demo {
            let directory =
                demoDirectory.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
                ?? FileManager.default.temporaryDirectory.appendingPathComponent("parley-demo-\(UUID().uuidString.prefix(8).lowercased())").path
            printError(
                "Demo folder: \(directory) (kept after exit; `parley web --demo\(demoRelay ? " --demo-relay" : "") --demo-dir \(directory)` takes it up again)")
            let home = ParleyHome(path: directory)
            try await WebDemo(directory: directory, withRelay: demoRelay).run { url in show(page: url, home: home, what: "Demo page") }
            return
        }
        let home = global.parleyHome
        if let running = RunningNode(infoPath: home.nodeInfoPath) {
            show(page: running.pageURL, home: home)
            return
        }
        try await options.runNode(global: global) { url, infoPath in
            guard let running = RunningNode(infoPath: infoPath) else {
                printError("Local API: \(url), but \(infoPath) could not be read: the page's address needs the token it holds.")
                return
            }
            show(page: running.pageURL, home: home)
        }
    }

    func show(page: String, home: ParleyHome, what: String = "Web page") {
        printError("\(what): \(page)")
        guard !noOpen else { return }
        let environment = ProcessInfo.processInfo.environment
        guard environment["DISPLAY"].map({ !$0.isEmpty }) == true || environment["WAYLAND_DISPLAY"].map({ !$0.isEmpty }) == true else {
            printError("No desktop here (DISPLAY and WAYLAND_DISPLAY are unset): open the address above in a browser.")
            return
        }
        // A page that forwards to the address, readable only by this user: the token never appears on a command line.
        let opener = home.url.appendingPathComponent("web-open.html").path
        let html = "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url=\(page)\"><title>Parley</title>\n"
        do {
            try home.replaceFile(atPath: opener, contents: Array(html.utf8), mode: 0o600)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["xdg-open", opener]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
        } catch {
            printError("Could not open a browser (\(error.localizedDescription)): open the address above in one.")
        }
    }
}

/// The node serving this home, as its node.json describes it, if its process is alive.
struct RunningNode {
    var url: String
    var token: String

    init?(infoPath: String) {
        guard let data = FileManager.default.contents(atPath: infoPath),
            let info = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let url = info["url"] as? String, let token = info["token"] as? String, let pid = info["pid"] as? Int,
            kill(pid_t(pid), 0) == 0 || errno == EPERM, Self.answers(url)
        else { return nil }
        self.url = url
        self.token = token
    }

    /// Whether something listens at the URL's loopback port: a node that died without removing node.json, or one
    /// stopping, is not taken for a running one.
    static func answers(_ url: String) -> Bool {
        guard let port = URLComponents(string: url)?.port, let host = URLComponents(string: url)?.host else { return false }
        return !LocalAPIAccess.isFree(port: port, host: host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")))
    }

    /// The page's address with the token, which the page exchanges for a cookie at once.
    var pageURL: String { "\(url)/?token=\(token)" }
}
