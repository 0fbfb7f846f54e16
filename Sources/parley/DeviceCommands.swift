import ArgumentParser
import ParleyClient
import ParleyCore

struct Device: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Your devices: link another one, list them, remove one.",
        subcommands: [DeviceLink.self, DeviceList.self, DeviceRemove.self])
}

struct DeviceLink: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "link", abstract: "Make a one-time code that sets up another device of yours (`parley init --link CODE` there).",
        discussion: """
            The new device's keys are bound to you in every room this device has joined, and it receives the room keys \
            each room's history setting allows. The code holds the new device's secret keys: pass it on privately. It \
            expires in 10 minutes.
            """)
    @OptionGroup var global: GlobalOptions
    @Flag var json = false

    func run() async throws {
        let node = try global.node()
        let code = try await failingAsync {
            let code = try node.linkDevice()
            let client = try bucketClient(node)
            for room in try node.store.bucketRooms() { _ = try await client.flush(room.roomID) }
            return code
        }
        if json {
            printJSON([
                "link_code": .string(code.text), "signing_key": .string(code.device.signingKeyBase64), "expires_ms": .integer(code.expiresMs),
            ])
        } else {
            print("link code (run `parley init --link CODE` on the new device within 10 minutes):")
            print(code.text)
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
            printJSON(.array(devices.map { device in
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
                let rooms = "\(device.joinedRooms.count) room(s) joined" + (device.invitedRooms.isEmpty ? "" : ", \(device.invitedRooms.count) linked, not joined yet")
                print("\(device.signingKey)  \(rooms)\(device.isThisDevice ? "  (this device)" : "")")
            }
        }
    }
}

struct DeviceRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove", abstract: "Remove another device of yours from every room; encrypted rooms start a new epoch it does not receive.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The device's signing key (from `parley device list`).") var key: String
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
            print("Removed \(key) from \(rooms.joined(separator: ", "))")
        }
    }
}
