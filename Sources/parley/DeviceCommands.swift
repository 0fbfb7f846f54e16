import ArgumentParser
import ParleyClient

struct Device: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Your devices: link another one, list them, remove one.",
        discussion: """
            Linking a new device takes three steps, and no secret key leaves the device it was made on: \
            `parley init --user USER_ID` then `parley device request` on the new device; `parley device link REQUEST` \
            on a device you already use; `parley init --link CODE` on the new device.
            """,
        subcommands: [DeviceRequest.self, DeviceLink.self, DeviceList.self, DeviceRemove.self])
}

struct DeviceRequest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "request", abstract: "Print this new device's request to be linked (`parley device link REQUEST` on your other device).",
        discussion:
            "The request holds this device's user id, its public keys and a one-time secret that the link code must carry back. It holds no secret key, but whoever has it can link this device to rooms of their choosing for an hour: pass it privately, and make sure the request your other device links is this one."
    )
    @OptionGroup var global: GlobalOptions
    @Flag var json = false

    func run() throws {
        let identity = try failing { try Identity.load(home: global.parleyHome) }
        let request = identity.linkRequest(nowMs: Node.systemClock())
        if json {
            printJSON(["request": .string(request.text), "signing_key": .string(identity.signingKeyBase64), "created_ms": .integer(request.createdMs)])
        } else {
            output("device request (run `parley device link REQUEST` on your other device within an hour; pass it privately):")
            output(request.text)
            // The linking device prints the key it bound: the user compares the two.
            output("this device: \(identity.signingKeyBase64)")
        }
    }
}

struct DeviceLink: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "link", abstract: "Link your new device from its request: prints the code it joins your rooms with (`parley init --link CODE` there).",
        discussion: """
            The new device's keys are bound to you in every room this device has joined, and it receives the room keys \
            each room's history setting allows. The code is sealed to the new device and signed by this one: it holds no \
            secret key and opens nowhere else. It expires in 10 minutes.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The new device's request, from `parley device request` there (parley-device:…).") var request: String
    @Flag var json = false

    func run() async throws {
        let node = try global.node()
        let code = try await failingAsync {
            let code = try node.linkDevice(try LinkRequest(parsing: request))
            let client = try bucketClient(node)
            for room in try node.bucketRooms() { _ = try await client.flush(room.roomID) }
            return code
        }
        if json {
            printJSON([
                "link_code": .string(code.text), "signing_key": .string(code.recipientKey), "expires_ms": .integer(code.expiresMs),
            ])
        } else {
            output("linked device \(code.recipientKey)")
            output("link code (run `parley init --link CODE` on the new device within 10 minutes):")
            output(code.text)
        }
    }
}

struct DeviceList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List your devices in the rooms this node holds.")
    @OptionGroup var global: GlobalOptions
    @Flag var json = false

    func run() throws {
        let node = try global.node()
        let devices = try failing { try node.devices() }
        if json {
            printJSON(
                .array(
                    devices.map { device in
                        var object = JSONObject([
                            "signing_key": .string(device.signingKey), "this_device": .bool(device.isThisDevice),
                            "joined_rooms": .array(device.joinedRooms.sorted().map(JSONValue.string)),
                            "invited_rooms": .array(device.invitedRooms.sorted().map(JSONValue.string)),
                        ])
                        object["exchange_key"] = device.exchangeKey.map(JSONValue.string) ?? .null
                        return .object(object)
                    }))
        } else {
            for device in devices {
                let rooms =
                    "\(device.joinedRooms.count) room(s) joined" + (device.invitedRooms.isEmpty ? "" : ", \(device.invitedRooms.count) linked, not joined yet")
                output("\(device.signingKey)  \(rooms)\(device.isThisDevice ? "  (this device)" : "")")
            }
        }
    }
}

struct DeviceRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove", abstract: "Remove another device of yours from every room; encrypted rooms start a new epoch it does not receive.")
    @OptionGroup var global: GlobalOptions
    // Taken even when it starts with '-' (a key pasted in base64url), so the key check can say what it is.
    @Argument(parsing: .allUnrecognized, help: "The device's signing key (from `parley device list`).") var keys: [String]
    var key: String { keys.joined(separator: " ") }
    @Flag var json = false

    func run() async throws {
        let node = try global.node()
        let rooms = try await failingAsync {
            let rooms = try node.removeDevice(key)
            for room in rooms { try await flushIfBucket(node, room) }
            return rooms
        }
        if json {
            printJSON(["removed_from": .array(rooms.map(JSONValue.string))])
        } else {
            output("Removed \(key) from \(rooms.joined(separator: ", "))")
        }
    }
}
