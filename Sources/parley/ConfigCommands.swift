import ArgumentParser
import Foundation
import ParleyClient

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Show the node's settings and where each comes from.", subcommands: [ConfigShow.self])
}

struct ConfigShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print the effective configuration, and where each value came from: a flag, a PARLEY_* environment variable, config.toml or the default.",
        discussion: """
            Each setting is taken from the first of: the command's flag, its PARLEY_* environment variable, its key in \
            $PARLEY_HOME/config.toml (TOML: `interval = 5` under `[sync]`), its default. The home itself comes from \
            --home, else PARLEY_HOME, else ~/.parley: config.toml is found in it. Secrets never go in config.toml: S3 \
            credentials come from the AWS_* environment variables.

            Settings, as KEY (ENVIRONMENT VARIABLE, FLAG): DEFAULT:
            \(Setting.all.map { setting in
                "  \(setting.key) (\(setting.environmentVariable)\(setting.flag.map { ", \($0)" } ?? "")): \(setting.defaultValue)\n    \(setting.summary)"
            }.joined(separator: "\n"))
            """)
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print as JSON.") var json = false

    func run() throws {
        let home = Configuration.home(flag: global.home)
        let configuration = try global.configuration()
        for (variable, near) in configuration.misspelledVariables {
            printError("note: \(variable) is not a setting, and is ignored; did you mean \(near.joined(separator: " or "))?")
        }
        if json {
            printConfigurationJSON(configuration, homeOrigin: home.origin)
            return
        }
        output("home: \(configuration.home.path) (\(home.origin); config.toml cannot set it)")
        output("config file: \(configuration.filePath)\(configuration.fileExists ? "" : " (none)")")
        let width = Setting.all.map(\.key.count).max() ?? 0
        let valueWidth = Setting.all.map { "\(configuration[$0])".count }.max() ?? 0
        for setting in Setting.all {
            let value = "\(configuration[setting])"
            output("\(pad(setting.key, width))  \(pad(value, valueWidth))  \(configuration.origin(of: setting))")
        }
    }

    func pad(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(0, width - text.count)) }

    /// One JSON document. Written with Foundation's encoder, not `printJSON`: intervals are fractional seconds, which
    /// canonical JSON (integers only) cannot hold.
    func printConfigurationJSON(_ configuration: Configuration, homeOrigin: SettingOrigin) {
        func described(_ origin: SettingOrigin) -> [String: Any] {
            var object: [String: Any] = ["source": origin.kind]
            if let name = origin.name { object["from"] = name }
            return object
        }
        var settings: [String: Any] = [:]
        for setting in Setting.all {
            var object = described(configuration.origin(of: setting))
            object["environment"] = setting.environmentVariable
            if let flag = setting.flag { object["flag"] = flag }
            switch configuration[setting] {
            case .boolean(let value): object["value"] = value
            case .seconds(let value): object["value"] = value
            case .integer(let value): object["value"] = value
            case .text(let value): object["value"] = value
            case .retention: object["value"] = "\(configuration[setting])"
            case .unset: object["value"] = NSNull()
            }
            settings[setting.key] = object
        }
        var home = described(homeOrigin)
        home["value"] = configuration.home.path
        let document: [String: Any] = [
            "home": home, "file": ["path": configuration.filePath, "exists": configuration.fileExists], "settings": settings,
        ]
        let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        print(String(decoding: data, as: UTF8.self))
    }
}
