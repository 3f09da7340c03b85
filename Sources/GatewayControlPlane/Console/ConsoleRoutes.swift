import Crypto
import Foundation
import Hummingbird
import NIOCore

/// The admin web console: one static page at `/console` (and `/console/`), outside `/beta`
/// and without credentials — it holds no data. The page asks the admin for the local admin
/// token or an admin JWT, keeps it in the tab's sessionStorage and calls the `/beta` admin
/// API with it, like any other client.
///
/// Served with a strict Content-Security-Policy: nothing may load but the inline style and
/// script named by their SHA-256 (computed here from the strings in ConsolePage.swift),
/// fetches only to this origin, no framing, no `<base>`, no form submission.
enum Console {
    static let path = "/console"

    /// The whole document, built once.
    static let html: String = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="referrer" content="no-referrer">
        <title>mstunnel-control · admin console</title>
        <style>\(ConsolePage.style)</style>
        </head>
        <body>
        \(ConsolePage.body)
        <script>\(ConsolePage.script)</script>
        </body>
        </html>

        """

    static let page = ByteBuffer(string: html)

    /// `'sha256-<base64>'` of an inline element's exact text, as CSP source expressions name it.
    static func hashSource(_ text: String) -> String {
        "'sha256-\(Data(SHA256.hash(data: Data(text.utf8))).base64EncodedString())'"
    }

    static let contentSecurityPolicy = [
        "default-src 'none'",
        "script-src \(hashSource(ConsolePage.script))",
        "style-src \(hashSource(ConsolePage.style))",
        "connect-src 'self'",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ].joined(separator: "; ")

    static var headers: HTTPFields {
        var fields = HTTPFields()
        fields[.contentType] = "text/html; charset=utf-8"
        fields[.contentSecurityPolicy] = contentSecurityPolicy
        fields[.xContentTypeOptions] = "nosniff"
        fields[.init("Referrer-Policy")!] = "no-referrer"
        fields[.cacheControl] = "no-store"
        fields[.init("X-Frame-Options")!] = "DENY"
        fields[.init("Cross-Origin-Opener-Policy")!] = "same-origin"
        fields[.init("Cross-Origin-Resource-Policy")!] = "same-origin"
        return fields
    }

    static func response() -> Response {
        Response(status: .ok, headers: headers, body: .init(byteBuffer: page))
    }
}

extension ControlPlane {
    func addConsoleRoutes(_ router: RouteTable) {
        router.route(Console.path, [.get: { _, _ in Console.response() }])
        // A person who types the bare address lands on the console, not on a JSON 404.
        router.route("/", [.get: { _, _ in Response(status: .found, headers: [.location: Console.path, .cacheControl: "no-store"]) }])
    }
}
