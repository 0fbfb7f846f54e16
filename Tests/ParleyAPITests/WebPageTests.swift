import Foundation
import ParleyAPI
import ParleyTesting
import Testing

@Suite struct WebPageTests {
    @Test func `the page and its files are served with the token under a policy that allows only their own script, style and API`() async throws {
        let fixture = try await APIFixture()
        let page = try await fixture.request(.GET, "/?token=\(fixture.token)", token: "")
        #expect(page.status == 200)
        #expect(page.headers["Content-Type"].first == "text/html; charset=utf-8")
        let policy = try #require(page.headers["Content-Security-Policy"].first)
        for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"] {
            #expect(policy.contains(directive), "the policy lacks \(directive)")
        }
        #expect(!policy.contains("unsafe"))
        #expect(page.headers["Referrer-Policy"].first == "no-referrer")
        #expect(page.headers["X-Content-Type-Options"].first == "nosniff")
        #expect(page.headers["Set-Cookie"].first?.hasPrefix("parley_token_\(fixture.port)=\(fixture.token);") == true)
        let html = String(decoding: page.body, as: UTF8.self)
        #expect(html.contains("src=\"/app.js\""))
        #expect(!html.contains("<script>"), "no inline script: the policy would refuse it")
        for (path, type) in [("/app.js", "text/javascript; charset=utf-8"), ("/app.css", "text/css; charset=utf-8")] {
            let file = try await fixture.request(.GET, path, token: "", headers: [("Cookie", "parley_token_\(fixture.port)=\(fixture.token)")])
            #expect(file.status == 200)
            #expect(file.headers["Content-Type"].first == type)
            #expect(file.body.count > 1_000)
        }
    }

    @Test func `the page without the token or with a wrong one is refused with 401 and says how to get in`() async throws {
        let fixture = try await APIFixture()
        for path in ["/", "/?token=\(LocalAPI.newToken())", "/?token=", "/app.js"] {
            let reply = try await fixture.request(.GET, path, token: "")
            #expect(reply.status == 401, "\(path)")
            #expect(reply.headers["Set-Cookie"].isEmpty)
            #expect(String(decoding: reply.body, as: UTF8.self).contains("parley web"))
        }
        let wrongCookie = try await fixture.request(.GET, "/", token: "", headers: [("Cookie", "parley_token_\(fixture.port)=\(LocalAPI.newToken())")])
        #expect(wrongCookie.status == 401)
        #expect(fixture.api.counts.unauthorized == 5)
    }

    @Test func `a page of another origin cannot load the page even with the token`() async throws {
        let fixture = try await APIFixture()
        let reply = try await fixture.request(.GET, "/?token=\(fixture.token)", token: "", headers: [("Origin", "http://evil.example")])
        #expect(reply.status == 403)
        #expect(reply.headers["Set-Cookie"].isEmpty)
    }

    @Test func `a folder given for the page's files is read at each request instead of the compiled-in copies`() async throws {
        let folder = TemporaryDirectory()
        var settings = LocalAPI.Settings()
        settings.webAssetsFolder = folder.path
        let fixture = try await APIFixture(settings: settings)
        try Data("console.log('first')".utf8).write(to: URL(fileURLWithPath: folder.path + "/app.js"))
        let first = try await fixture.request(.GET, "/app.js")
        #expect(String(decoding: first.body, as: UTF8.self) == "console.log('first')")
        try Data("console.log('second')".utf8).write(to: URL(fileURLWithPath: folder.path + "/app.js"))
        let second = try await fixture.request(.GET, "/app.js")
        #expect(String(decoding: second.body, as: UTF8.self) == "console.log('second')")
        // A file the folder lacks comes from the binary.
        let css = try await fixture.request(.GET, "/app.css")
        #expect(css.status == 200 && css.body.count > 1_000)
    }
}
