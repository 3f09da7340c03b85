import Crypto
import Foundation
import GatewayAuth
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite struct ConsoleTests {
    /// Text between the first `open` and the following `close`.
    static func between(_ text: String, _ open: String, _ close: String) -> String? {
        guard let start = text.range(of: open), let end = text.range(of: close, range: start.upperBound..<text.endIndex) else { return nil }
        return String(text[start.upperBound..<end.lowerBound])
    }

    static func sha256Source(_ text: String) -> String {
        "'sha256-\(Data(SHA256.hash(data: Data(text.utf8))).base64EncodedString())'"
    }

    /// The CSP's directives by name.
    static func directives(_ csp: String) -> [String: String] {
        var out: [String: String] = [:]
        for part in csp.split(separator: ";") {
            let words = part.trimmingCharacters(in: .whitespaces).split(separator: " ", maxSplits: 1)
            guard let name = words.first else { continue }
            out[String(name)] = words.count > 1 ? String(words[1]) : ""
        }
        return out
    }

    @Test(arguments: ["/console", "/console/"])
    func pageIsServedWithoutCredentialsAndWithStrictHeaders(path: String) async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            try await client.execute(uri: path, method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/html; charset=utf-8")
                #expect(response.headers[.xContentTypeOptions] == "nosniff")
                #expect(response.headers[.init("Referrer-Policy")!] == "no-referrer")
                #expect(response.headers[.cacheControl] == "no-store")
                #expect(response.headers[.init("X-Frame-Options")!] == "DENY")

                let body = String(buffer: response.body)
                #expect(body.hasPrefix("<!doctype html>"))
                let csp = try #require(response.headers[.contentSecurityPolicy])
                #expect(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval") && !csp.contains("*"))
                let d = Self.directives(csp)
                #expect(d["default-src"] == "'none'")
                #expect(d["connect-src"] == "'self'")
                #expect(d["img-src"] == "'self' data:")
                #expect(d["frame-ancestors"] == "'none'")
                #expect(d["base-uri"] == "'none'")
                #expect(d["form-action"] == "'none'")
                // The hashes allow exactly the inline script and style the page carries.
                let script = try #require(Self.between(body, "<script>", "</script>"))
                let style = try #require(Self.between(body, "<style>", "</style>"))
                #expect(d["script-src"] == Self.sha256Source(script))
                #expect(d["style-src"] == Self.sha256Source(style))
                #expect(script == ConsolePage.script)
                #expect(style == ConsolePage.style)
            }
        }
    }

    @Test func pageIsSelfContainedAndBuildsNoMarkupFromData() throws {
        let html = Console.html
        let script = ConsolePage.script
        // One inline script and one inline style; nothing loaded from anywhere.
        #expect(html.components(separatedBy: "<script").count == 2)
        #expect(html.components(separatedBy: "<style").count == 2)
        for needle in ["<link", " src=", "http:", "https:", "@import", "url("] {
            #expect(!ConsolePage.body.contains(needle), "page body contains \(needle)")
            #expect(!ConsolePage.style.contains(needle), "style contains \(needle)")
        }
        // The script fetches only the admin API on this origin and loads nothing else.
        #expect(script.components(separatedBy: "fetch(").count == 2)
        #expect(script.contains("fetch(API + path, init)"))
        for needle in ["import(", "importScripts", ".src =", "Worker(", "XMLHttpRequest", "WebSocket"] {
            #expect(!script.contains(needle), "script contains \(needle)")
        }
        // No inline event-handler attributes (the CSP would block them anyway).
        #expect(ConsolePage.body.range(of: #"\son[a-z]+\s*="#, options: .regularExpression) == nil)

        for forbidden in ["innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "document.write", "new Function", "setTimeout('",
                          "localStorage", "document.cookie"] {
            #expect(!script.contains(forbidden), "script contains \(forbidden)")
        }
        // The token lives in sessionStorage only; every data call goes to the admin API.
        #expect(script.contains("sessionStorage"))
        #expect(script.contains("const API = '/beta/deviceManagement';"))
        #expect(script.contains("'Bearer '"))
        #expect(script.contains("createElementNS('http://www.w3.org/2000/svg'"))
    }

    @Test func consoleOnlyAnswersGetAndTheAdminAPIStillNeedsAToken() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            try await client.execute(uri: "/console", method: .post) { response in
                #expect(response.status == .methodNotAllowed)
            }
            // Nothing below /console is served (no file tree behind it).
            try await client.execute(uri: "/console/app.js", method: .get) { response in
                #expect(response.status == .notFound)
            }
            try await client.execute(uri: "/console/../beta/deviceManagement/microsoftTunnelSites", method: .get) { response in
                #expect(response.status == .badRequest)
            }
            for path in [ControlPlane.sitesPath, ControlPlane.configurationsPath, ControlPlane.thresholdsPath, ControlPlane.logCollectionsPath] {
                let (status, error) = try await client.admin(.get, path, headers: [:])
                #expect(status == .unauthorized, "\(path)")
                #expect(error?.errorCode == "Unauthorized")
            }
        }
    }

    /// The calls the console makes, as it makes them, are accepted by the admin API.
    @Test func theConsolesCallsAreAccepted() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            // Sign-in probe and the lists.
            let (s1, _) = try await client.admin(.get, ControlPlane.sitesPath + "?$top=1&$select=id")
            #expect(s1 == .ok)
            let (cid, sid) = try await Fixtures.siteWithConfiguration(client)
            let (s2, sites) = try await client.admin(.get, ControlPlane.sitesPath + "?$expand=microsoftTunnelConfiguration")
            #expect(s2 == .ok)
            #expect(sites?["value"]?.array.first?["microsoftTunnelConfiguration"]?["displayName"]?.string == "Main")
            let (s3, _) = try await client.admin(.get, ControlPlane.configurationsPath + "?$select=id,displayName")
            #expect(s3 == .ok)
            let (s4, token) = try await client.admin(.post, ControlPlane.sitesPath + "/\(sid)/createJoinToken", #"{"expirationMinutes":60}"#)
            #expect(s4 == .ok)
            #expect(token?["joinToken"]?.string?.hasPrefix("mstj1.") == true)

            // The configuration editor PATCHes back what it read, minus the @odata.* keys.
            let (s5, read) = try await client.admin(.get, ControlPlane.configurationsPath + "/\(cid)")
            #expect(s5 == .ok)
            var object = try #require(read?.objectValue)
            for key in object.keys where key.hasPrefix("@odata.") { object[key] = nil }
            object["listenPort"] = .int(8443)
            let edited = String(decoding: try JSONEncoder().encode(JSONValue.object(object)), as: UTF8.self)
            let (s6, patched) = try await client.admin(.patch, ControlPlane.configurationsPath + "/\(cid)", edited)
            #expect(s6 == .ok)
            #expect(patched?["listenPort"] == .int(8443))
            // A refused write comes back as an OData error the console shows verbatim.
            let (s7, refused) = try await client.admin(.patch, ControlPlane.configurationsPath + "/\(cid)", #"{"listenPort":70000}"#)
            #expect(s7 == .badRequest)
            #expect(refused?.errorMessage.contains("listenPort") == true)

            // Threshold inline edit.
            let (s8, threshold) = try await client.admin(.patch, ControlPlane.thresholdsPath + "/cpuUsage", #"{"healthyThreshold":60,"unhealthyThreshold":85}"#)
            #expect(s8 == .ok)
            #expect(threshold?["healthyThreshold"] == .int(60))
        }
    }
}
