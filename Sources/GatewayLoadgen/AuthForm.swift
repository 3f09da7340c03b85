import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// A gateway's XML login answer (`config-auth` of type `auth-request` or `complete`),
/// reduced to what a non-interactive client acts on. Parsed with a real XML parser:
/// servers differ in whitespace and element order.
public struct AuthPage: Sendable, Equatable {
    public struct Input: Sendable, Equatable {
        public var type: String
        public var name: String
        public var value: String?
    }

    public struct Select: Sendable, Equatable {
        public var name: String
        /// Option values with their `selected` flag, in document order.
        public var options: [(value: String, selected: Bool)]

        public static func == (a: Select, b: Select) -> Bool {
            a.name == b.name && a.options.map(\.value) == b.options.map(\.value) && a.options.map(\.selected) == b.options.map(\.selected)
        }
    }

    /// The `type` attribute of `<config-auth>` (nil for a bare `<auth>` root).
    public var rootType: String?
    public var authId: String?
    public var formAction: String?
    public var formMethod: String?
    public var inputs: [Input] = []
    public var selects: [Select] = []
    public var message: String?
    public var error: String?
    public var sessionToken: String?
    /// The `<opaque>` element exactly as sent: it goes back verbatim in the reply.
    public var opaque: String?

    public var isSuccess: Bool { authId == "success" || (rootType == "complete" && authId == nil) }

    /// nil when the body is not a `<config-auth>` or `<auth>` XML document.
    public static func parse(_ body: [UInt8]) -> AuthPage? {
        guard !body.isEmpty, body.count <= HTTPResponseParser.maxBodyBytes else { return nil }
        // FoundationXML traps (force-unwraps) on an element or attribute name that is not
        // valid UTF-8, so such a body never reaches it; real gateways send UTF-8.
        guard String(validating: body, as: UTF8.self) != nil else { return nil }
        let delegate = Delegate()
        let parser = XMLParser(data: Data(body))
        parser.shouldResolveExternalEntities = false
        parser.delegate = delegate
        guard parser.parse(), delegate.rootClosed else { return nil }
        var page = delegate.page
        page.opaque = rawElement("opaque", in: body)
        return page
    }

    /// The first `<name …>…</name>` of `body`, byte for byte.
    static func rawElement(_ name: String, in body: [UInt8]) -> String? {
        let open = Array("<\(name)".utf8)
        let close = Array("</\(name)>".utf8)
        guard let start = find(open, in: body, from: 0) else { return nil }
        let after = start + open.count
        // `<opaqueX` is another element.
        guard after < body.count, body[after] == UInt8(ascii: ">") || body[after] == UInt8(ascii: " ")
                || body[after] == UInt8(ascii: "\t") || body[after] == UInt8(ascii: "\n") || body[after] == UInt8(ascii: "\r") else { return nil }
        guard let end = find(close, in: body, from: after) else { return nil }
        return String(decoding: body[start..<end + close.count], as: UTF8.self)
    }

    static func find(_ needle: [UInt8], in hay: [UInt8], from: Int) -> Int? {
        guard !needle.isEmpty, hay.count >= needle.count else { return nil }
        var i = from
        while i + needle.count <= hay.count {
            if hay[i] == needle[0], Array(hay[i..<i + needle.count]) == needle { return i }
            i += 1
        }
        return nil
    }

    private final class Delegate: NSObject, XMLParserDelegate {
        var page = AuthPage()
        var rootClosed = false
        private var stack: [String] = []
        private var text = ""
        private var currentSelect: Select?
        private var currentOption: (value: String?, selected: Bool)?

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            if stack.isEmpty {
                guard name == "config-auth" || name == "auth" else {
                    parser.abortParsing()
                    return
                }
                if name == "config-auth" { page.rootType = attributes["type"] }
            }
            stack.append(name)
            text = ""
            let inAuth = stack.contains("auth")
            switch name {
            case "auth":
                if page.authId == nil { page.authId = attributes["id"] }
            case "form" where inAuth:
                page.formAction = attributes["action"]
                page.formMethod = attributes["method"]
            case "input" where inAuth:
                if let n = attributes["name"] {
                    page.inputs.append(Input(type: (attributes["type"] ?? "text").lowercased(), name: n, value: attributes["value"]))
                }
            case "select" where inAuth:
                currentSelect = Select(name: attributes["name"] ?? "", options: [])
            case "option" where currentSelect != nil:
                currentOption = (attributes["value"], attributes["selected"]?.lowercased() == "true")
            default:
                break
            }
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            text += string
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            let inAuth = stack.contains("auth")
            switch name {
            case "message" where inAuth: page.message = text
            case "error" where inAuth: page.error = text
            case "session-token": page.sessionToken = text.trimmingCharacters(in: .whitespacesAndNewlines)
            case "option":
                if let o = currentOption {
                    // Without a value attribute the option's text is its value.
                    currentSelect?.options.append((o.value ?? text, o.selected))
                }
                currentOption = nil
            case "select":
                if let s = currentSelect { page.selects.append(s) }
                currentSelect = nil
            default:
                break
            }
            if stack.count == 1 { rootClosed = true }
            if !stack.isEmpty { stack.removeLast() }
            text = ""
        }
    }
}

/// What to do after one login response.
public enum LoginStep: Sendable, Equatable {
    /// Logged in: CONNECT with this `webvpn` cookie.
    case connect(cookie: String)
    /// Post this body to this path next.
    case post(path: String, body: String)
    /// Give up, with a reason for the report.
    case fail(String)
}

/// openconnect's non-interactive form logic for `--user`/`--password`: a field named
/// `username` gets the user, the first password field the password (once: a second
/// password prompt means the password was wrong), hidden fields go back unchanged.
public struct PasswordLogin: Sendable {
    public let user: String
    public let password: String
    public private(set) var passwordSent = false
    public private(set) var rounds = 0
    public static let maxRounds = 10

    public init(user: String, password: String) {
        self.user = user
        self.password = password
    }

    public mutating func next(page: AuthPage?, cookies: CookieJar, target: URLTarget) -> LoginStep {
        rounds += 1
        if let done = loggedIn(page: page, cookies: cookies) { return done }
        guard let page else { return .fail("200 response that is not config-auth XML") }
        guard let authId = page.authId else { return .fail("config-auth without <auth>") }
        guard rounds < Self.maxRounds else { return .fail("more than \(Self.maxRounds) login forms") }
        if page.inputs.isEmpty, page.selects.isEmpty {
            return .fail("form '\(authId)' without fields: \(Self.summary(page))")
        }
        if let method = page.formMethod, method.lowercased() != "post" { return .fail("form method '\(method)' is not POST") }
        var fields: [(name: String, value: String)] = []
        var groupSelect: String?
        for input in page.inputs {
            switch input.type {
            case "text":
                guard input.name == "username" else { return .fail("form asks for '\(input.name)', which a non-interactive login cannot fill") }
                fields.append((Self.replyName(input.name), user))
            case "password":
                if ["verify_pin", "verify_password"].contains(input.name) { continue }
                if passwordSent { return .fail("password asked again (login failed): \(Self.summary(page))") }
                fields.append((Self.replyName(input.name), password))
                passwordSent = true
            case "hidden":
                fields.append((Self.replyName(input.name), input.value ?? ""))
            case "sso":
                return .fail("the form wants single sign-on (a browser)")
            default:
                continue
            }
        }
        for s in page.selects {
            let v = (s.options.first { $0.selected } ?? s.options.first)?.value ?? ""
            if s.name == "group_list" { groupSelect = v } else { fields.append((Self.replyName(s.name), v)) }
        }
        for f in fields where !Self.isElementName(f.name) { return .fail("form field name '\(f.name.prefix(40))' is not usable") }
        let body = LoginRequests.authReplyBody(fields: fields, groupSelect: groupSelect, opaque: page.opaque)
        return .post(path: Self.actionPath(page.formAction), body: body)
    }

    /// The cookie when the page says `success` (or the server sent `webvpn` without a form).
    public static func loggedInCookie(page: AuthPage?, cookies: CookieJar) -> String? {
        if let page, !page.isSuccess, page.authId != nil { return nil }
        if let token = page?.sessionToken, !token.isEmpty { return token }
        return cookies.value("webvpn")
    }

    func loggedIn(page: AuthPage?, cookies: CookieJar) -> LoginStep? {
        if let c = Self.loggedInCookie(page: page, cookies: cookies) { return .connect(cookie: c) }
        if let page, page.isSuccess { return .fail("login complete but no webvpn cookie") }
        return nil
    }

    /// openconnect's renames: these fields are all sent as `<password>`.
    static func replyName(_ name: String) -> String {
        ["answer", "whichpin", "new_password"].contains(name) ? "password" : name
    }

    static func isElementName(_ n: String) -> Bool {
        guard let f = n.unicodeScalars.first, f.properties.isAlphabetic || f == "_" else { return false }
        return n.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" || $0 == ".") }
    }

    /// The form's `action` as a request path (default `/`, as openconnect).
    static func actionPath(_ action: String?) -> String {
        guard var a = action?.trimmingCharacters(in: .whitespaces), !a.isEmpty else { return "/" }
        if a.lowercased().hasPrefix("https://"), let t = try? URLTarget.parse(a) { a = t.path }
        if !a.hasPrefix("/") { a = "/" + a }
        return a.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) ? a : "/"
    }

    static func summary(_ page: AuthPage) -> String {
        let text = [page.error, page.message].compactMap { $0 }.joined(separator: " / ")
        let flat = text.replacingOccurrences(of: "\n", with: " ").trimmingCharacters(in: .whitespaces)
        return flat.isEmpty ? "no message" : String(flat.prefix(120))
    }
}

/// The answer to a Bearer `GET /`: the `webvpn` cookie or a reason.
public enum BearerLogin {
    public static func step(page: AuthPage?, cookies: CookieJar) -> LoginStep {
        if let c = PasswordLogin.loggedInCookie(page: page, cookies: cookies) { return .connect(cookie: c) }
        if let page, page.authId != nil, !page.isSuccess {
            return .fail("the token was answered with a login form: \(PasswordLogin.summary(page))")
        }
        return .fail("200 without a webvpn cookie")
    }
}
