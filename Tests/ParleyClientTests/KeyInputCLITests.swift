import Foundation
import ParleyCore
import ParleyTesting
import Testing

/// Keys typed or pasted into commands: what was pasted instead of a signing key is named, with where the right one
/// comes from, in every command that takes a key.
@Suite struct KeyInputCLITests {
    /// The commands that take another user's key, with `key` in place.
    static func commands(_ key: String) -> [[String]] {
        [["room", "invite", "r", "bob", "--key", key], ["dm", "bob", "--key", key]]
    }

    func expectRefused(_ node: ParleyCommand, _ key: String, saying message: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for arguments in KeyInputCLITests.commands(key) {
            let result = try node.run(arguments)
            #expect(result.status == 1, "\(arguments[0])", sourceLocation: sourceLocation)
            #expect(result.stderr.contains(message), "\(arguments[0]): \(result.stderr)", sourceLocation: sourceLocation)
            #expect(result.stderr.contains("Ask bob for the `signing key:` line of `parley whoami` on their device"), sourceLocation: sourceLocation)
        }
        #expect(!(try node.run(["dm", "list"]).stdout.contains("dm-")), "a refused key left a direct-message room behind", sourceLocation: sourceLocation)
    }

    @Test func `a key pasted in hex is named as hex`() throws {
        let nodes = try TwoNodes()
        try #require(try nodes.alice.run(["room", "create", "r"]).status == 0)
        let hex = Hex.encode(try #require(Base64.decode(nodes.bobKey)))
        try expectRefused(
            nodes.alice, hex, saying: "The key \"\(hex.prefix(23))…\" is 64 hex digits: Parley writes keys in base64, 44 characters ending in '='.")
    }

    @Test func `an exchange key pasted instead of the signing key is named as such`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("shared")
        try #require(try nodes.alice.run(["room", "create", "r"]).status == 0)
        let bobExchange = try JSONParser().parse(Array(try nodes.bob.run(["whoami", "--json"]).stdout.utf8))["exchange_key"]!.text
        try expectRefused(nodes.alice, bobExchange, saying: "is the exchange key of a device of bob: the signing key is needed")
        let ownExchange = try JSONParser().parse(Array(try nodes.alice.run(["whoami", "--json"]).stdout.utf8))["exchange_key"]!.text
        try expectRefused(nodes.alice, ownExchange, saying: "is the exchange key of this device")
    }

    @Test func `a key of the wrong length, without its padding or in base64url is named as such`() throws {
        let nodes = try TwoNodes()
        try #require(try nodes.alice.run(["room", "create", "r"]).status == 0)
        try expectRefused(nodes.alice, String(nodes.bobKey.dropLast()), saying: "lacks its final '='")
        try expectRefused(nodes.alice, String(nodes.bobKey.prefix(32)), saying: "is 32 characters, 24 bytes: a signing key is 32 bytes, 44 base64 characters")
        let url =
            nodes.bobKey.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            + (nodes.bobKey.contains { "+/".contains($0) } ? "" : "-")
        try expectRefused(nodes.alice, url, saying: "is in base64url ('-' and '_')")
        // A base64url key may start with '-': it is still the key, not an option.
        try expectRefused(nodes.alice, "-" + url.dropFirst(), saying: "is in base64url ('-' and '_')")
        let removal = try nodes.alice.run(["device", "remove", "-" + url.dropFirst()])
        #expect(removal.status == 1 && removal.stderr.contains("base64url"), "\(removal.stderr)")
        try expectRefused(nodes.alice, "parley-device:abc", saying: "is a device request, not a device's signing key.")
    }

    @Test func `a key with spaces or a newline around it is taken`() throws {
        let nodes = try TwoNodes()
        try #require(try nodes.alice.run(["room", "create", "r"]).status == 0)
        let result = try nodes.alice.run(["room", "invite", "r", "bob", "--key", " \(nodes.bobKey)\n"])
        #expect(result.status == 0, "\(result.stderr)")
    }

    @Test func `device remove names a hex key and points to device list`() throws {
        let nodes = try TwoNodes()
        let hex = Hex.encode(try #require(Base64.decode(nodes.bobKey)))
        let result = try nodes.alice.run(["device", "remove", hex])
        #expect(result.status == 1)
        #expect(result.stderr.contains("is 64 hex digits"), "\(result.stderr)")
        #expect(result.stderr.contains("`parley device list` shows the signing keys of your devices."))
    }
}
