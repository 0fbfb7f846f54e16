import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// The browser UI (`parley web`): three files compiled into the binary and served behind the API's token, under a
/// Content-Security-Policy that lets the page run only its own script and reach only this API.
enum WebPage {
    /// A file of the page.
    struct File: Sendable {
        var name: String
        var contentType: String
        var bytes: [UInt8]
    }

    /// The page's files by path.
    static let files: [String: File] = [
        "/": File(name: "index.html", contentType: "text/html; charset=utf-8", bytes: PackageResources.index_html),
        "/app.js": File(name: "app.js", contentType: "text/javascript; charset=utf-8", bytes: PackageResources.app_js),
        "/app.css": File(name: "app.css", contentType: "text/css; charset=utf-8", bytes: PackageResources.app_css),
    ]

    /// No script but the page's own file, no style but its stylesheet, no connection but to this API (its WebSocket
    /// included), no frame, form target or base URL: message text that slipped into markup could still do nothing.
    /// No other page may frame it, but those of `framedBy` (the demo page of `parley web --demo`).
    static func contentSecurityPolicy(framedBy origins: [String] = []) -> String {
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; "
            + "base-uri 'none'; form-action 'none'; frame-ancestors \(origins.isEmpty ? "'none'" : origins.joined(separator: " "))"
    }

    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!

    /// The answer for the file at `path`; read from `folder` at each request when one is given (to work on the
    /// page without rebuilding), else the compiled-in copy.
    static func response(path: String, folder: String?, framedBy origins: [String]) -> Response? {
        guard let file = files[path] else { return nil }
        var bytes = file.bytes
        if let folder, let data = FileManager.default.contents(atPath: (folder as NSString).appendingPathComponent(file.name)) {
            bytes = [UInt8](data)
        }
        let headers: HTTPFields = [
            .contentType: file.contentType,
            .contentSecurityPolicy: contentSecurityPolicy(framedBy: origins),
            .xContentTypeOptions: "nosniff",
            // The first address carries the token: no page the user goes to from here learns it.
            Self.referrerPolicy: "no-referrer",
            .cacheControl: "no-store",
        ]
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

extension WebPage {
    /// What a browser shows at the page's address without a valid token: how to get one.
    static var unauthorized: Response {
        let html = """
            <!doctype html><html lang="en"><meta charset="utf-8"><title>Parley: not signed in</title>
            <h1>This address needs the node's token</h1>
            <p>Run <code>parley web</code> in a terminal and open the address it prints (it ends with <code>?token=…</code>).
            The token stays the same from one start of the node to the next until <code>parley node --new-token</code>
            makes a new one: an address from before that no longer works.</p></html>

            """
        let headers: HTTPFields = [
            .contentType: "text/html; charset=utf-8", .contentSecurityPolicy: contentSecurityPolicy(), .xContentTypeOptions: "nosniff",
            referrerPolicy: "no-referrer", .cacheControl: "no-store",
        ]
        return Response(status: .unauthorized, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }
}

extension LocalAPI {
    /// `/`, `/app.js` and `/app.css`, behind the same gate as the API.
    func addWebRoutes(to router: Router<BasicWebSocketRequestContext>) {
        for path in WebPage.files.keys {
            router.get(RouterPath(path)) { _, _ in
                guard let response = WebPage.response(path: path, folder: self.settings.webAssetsFolder, framedBy: self.framingOrigins.withLock { $0 }) else {
                    throw HTTPError(.notFound)
                }
                return response
            }
        }
    }
}
