import Foundation
import GatewayAuth

/// The OData query options a collection or entity GET understands: `$select`, `$filter`,
/// `$top`, `$expand` (only what the route allows). Anything else starting with `$` is
/// refused, so a client never silently gets an unfiltered answer.
struct ODataQuery: Sendable {
    var select: [String]?
    var filter: ODataFilter?
    var top: Int?
    var expand: [String] = []

    static let maxTop = 1000

    init(parameters: [(String, String)], schema: GraphSchema, expandable: [String] = []) throws(GraphError) {
        for (rawName, value) in parameters {
            let name = rawName.lowercased()
            guard name.hasPrefix("$") else { continue }
            switch name {
            case "$select":
                let names = value.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                // An empty name (`$select=`, `$select=id,`) is refused: it used to select
                // nothing and answer an empty entity.
                if names.contains(where: \.isEmpty) {
                    throw GraphError.unsupportedQuery("$select: empty property name in '\(value.prefix(200))'")
                }
                let unknown = names.filter { schema.field($0) == nil && !expandable.contains($0) }
                if !unknown.isEmpty {
                    throw GraphError.unsupportedQuery("$select: unknown propert\(unknown.count == 1 ? "y" : "ies") \(unknown.map { "'\($0)'" }.joined(separator: ", ")) of \(schema.entityType)")
                }
                select = names
            case "$filter":
                filter = try ODataFilter.parse(value, schema: schema)
            case "$top":
                guard let n = Int(value), n >= 0, n <= Self.maxTop else {
                    throw GraphError.unsupportedQuery("$top must be an integer in 0...\(Self.maxTop)")
                }
                top = n
            case "$expand":
                let names = value.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                // `$expand=` used to be accepted and expand nothing (found by the API prober).
                if names.contains(where: \.isEmpty) {
                    throw GraphError.unsupportedQuery("$expand: empty navigation property name in '\(value.prefix(200))'")
                }
                for n in names where !expandable.contains(n) {
                    throw GraphError.unsupportedQuery(expandable.isEmpty
                        ? "$expand is not supported on \(schema.entityType)"
                        : "$expand: '\(n)' cannot be expanded (supported: \(expandable.joined(separator: ", ")))")
                }
                expand = names
            default:
                throw GraphError.unsupportedQuery("query option '\(rawName)' is not supported (supported: $select, $filter, $top\(expandable.isEmpty ? "" : ", $expand"))")
            }
        }
    }

    /// Filters, limits and projects a collection.
    func apply(to items: [[String: JSONValue]]) -> [[String: JSONValue]] {
        var out = items
        if let filter { out = out.filter { filter.matches($0) } }
        if let top { out = Array(out.prefix(top)) }
        return out.map(project)
    }

    func project(_ item: [String: JSONValue]) -> [String: JSONValue] {
        guard let select else { return item }
        var out: [String: JSONValue] = [:]
        for name in select { out[name] = item[name] ?? .null }
        return out
    }
}

/// A parsed `$filter`: comparisons (`eq ne gt ge lt le`) of a property with a literal,
/// `startswith(prop,'x')`, `contains(prop,'x')`, joined with `and`, `or`, `not`, parentheses.
/// A comparison of a dateTime property with a date-time literal (unquoted, as OData writes
/// it: `lastCheckinDateTime gt 2026-11-01T00:00:00Z`, or quoted) compares instants.
indirect enum ODataFilter: Sendable, Equatable {
    case compare(property: String, op: Operator, literal: JSONValue)
    case compareDate(property: String, op: Operator, date: Date)
    case function(name: String, property: String, argument: String)
    case and(ODataFilter, ODataFilter)
    case or(ODataFilter, ODataFilter)
    case not(ODataFilter)

    enum Operator: String, Sendable { case eq, ne, gt, ge, lt, le }

    static let maxLength = 2048

    static func parse(_ text: String, schema: GraphSchema) throws(GraphError) -> ODataFilter {
        guard text.count <= maxLength else { throw GraphError.unsupportedQuery("$filter is longer than \(maxLength) characters") }
        var parser = Parser(tokens: try tokenize(text), schema: schema)
        let result = try parser.parseOr()
        if parser.position < parser.tokens.count {
            throw GraphError.unsupportedQuery("$filter: unexpected '\(parser.tokens[parser.position].text)'")
        }
        return result
    }

    /// The string `property` must equal for the filter to match, when the filter is that
    /// comparison or an `and` containing it (so the store can narrow the query with it).
    func requiredEquality(property: String) -> String? {
        switch self {
        case .compare(property, .eq, .string(let value)): return value
        case .and(let a, let b): return a.requiredEquality(property: property) ?? b.requiredEquality(property: property)
        default: return nil
        }
    }

    func matches(_ item: [String: JSONValue]) -> Bool {
        switch self {
        case .and(let a, let b): return a.matches(item) && b.matches(item)
        case .or(let a, let b): return a.matches(item) || b.matches(item)
        case .not(let a): return !a.matches(item)
        case .function(let name, let property, let argument):
            guard let value = item[property]?.stringValue?.lowercased() else { return false }
            let arg = argument.lowercased()
            switch name {
            case "startswith": return value.hasPrefix(arg)
            case "endswith": return value.hasSuffix(arg)
            default: return value.contains(arg)
            }
        case .compareDate(let property, let op, let date):
            guard let text = item[property]?.stringValue, let value = GraphDateParsing.parse(text) else { return op == .ne }
            let order = value < date ? -1 : (value > date ? 1 : 0)
            return Self.holds(op, order)
        case .compare(let property, let op, let literal):
            let value = item[property] ?? .null
            switch op {
            case .eq: return Self.equal(value, literal)
            case .ne: return !Self.equal(value, literal)
            default:
                guard let order = Self.order(value, literal) else { return false }
                return Self.holds(op, order)
            }
        }
    }

    /// Whether `op` holds for a comparison result (-1, 0, 1).
    static func holds(_ op: Operator, _ order: Int) -> Bool {
        switch op {
        case .eq: return order == 0
        case .ne: return order != 0
        case .gt: return order > 0
        case .ge: return order >= 0
        case .lt: return order < 0
        case .le: return order <= 0
        }
    }

    /// Strings compare case-insensitively, as Graph's `eq` does on display names.
    static func equal(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.string(let x), .string(let y)): return x.caseInsensitiveCompare(y) == .orderedSame
        case (.int(let x), .double(let y)), (.double(let y), .int(let x)): return Double(x) == y
        default: return a == b
        }
    }

    static func order(_ a: JSONValue, _ b: JSONValue) -> Int? {
        func number(_ v: JSONValue) -> Double? {
            switch v {
            case .int(let i): return Double(i)
            case .double(let d): return d
            default: return nil
            }
        }
        if let x = number(a), let y = number(b) { return x < y ? -1 : (x > y ? 1 : 0) }
        if case .string(let x) = a, case .string(let y) = b {
            // ISO 8601 dates in UTC compare correctly as text.
            return x < y ? -1 : (x > y ? 1 : 0)
        }
        return nil
    }

    // MARK: - Tokens

    struct Token: Equatable {
        enum Kind { case word, string, number, dateTime, open, close, comma }
        var kind: Kind
        var text: String
    }

    static func tokenize(_ text: String) throws(GraphError) -> [Token] {
        var tokens: [Token] = []
        let chars = Array(text)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c.isWhitespace { i += 1; continue }
            if c == "(" { tokens.append(Token(kind: .open, text: "(")); i += 1; continue }
            if c == ")" { tokens.append(Token(kind: .close, text: ")")); i += 1; continue }
            if c == "," { tokens.append(Token(kind: .comma, text: ",")); i += 1; continue }
            if c == "'" {
                var s = ""
                i += 1
                var closed = false
                while i < chars.count {
                    if chars[i] == "'" {
                        // '' inside a literal is an escaped quote.
                        if i + 1 < chars.count, chars[i + 1] == "'" { s.append("'"); i += 2; continue }
                        closed = true
                        i += 1
                        break
                    }
                    s.append(chars[i])
                    i += 1
                }
                if !closed { throw GraphError.unsupportedQuery("$filter: unterminated string literal") }
                tokens.append(Token(kind: .string, text: s))
                continue
            }
            // An unquoted date-time literal: starts `dddd-dd-dd`, runs over [0-9A-Za-z:.+-].
            if i + 10 <= chars.count, (0..<10).allSatisfy({ k in k == 4 || k == 7 ? chars[i + k] == "-" : (chars[i + k].isASCII && chars[i + k].isNumber) }) {
                var s = ""
                while i < chars.count, chars[i].isASCII, chars[i].isLetter || chars[i].isNumber || ":.+-".contains(chars[i]) {
                    s.append(chars[i])
                    i += 1
                }
                tokens.append(Token(kind: .dateTime, text: s))
                continue
            }
            if c.isNumber || c == "-" {
                var s = String(c)
                i += 1
                while i < chars.count, chars[i].isNumber || chars[i] == "." { s.append(chars[i]); i += 1 }
                tokens.append(Token(kind: .number, text: s))
                continue
            }
            if c.isLetter || c == "_" || c == "@" {
                var s = ""
                while i < chars.count, chars[i].isLetter || chars[i].isNumber || chars[i] == "_" || chars[i] == "@" || chars[i] == "." || chars[i] == "/" {
                    s.append(chars[i])
                    i += 1
                }
                tokens.append(Token(kind: .word, text: s))
                continue
            }
            throw GraphError.unsupportedQuery("$filter: unexpected character '\(c)'")
        }
        return tokens
    }

    struct Parser {
        var tokens: [Token]
        var schema: GraphSchema
        var position = 0
        var depth = 0

        mutating func next() -> Token? {
            guard position < tokens.count else { return nil }
            defer { position += 1 }
            return tokens[position]
        }

        func peekWord(_ word: String) -> Bool {
            position < tokens.count && tokens[position].kind == .word && tokens[position].text.lowercased() == word
        }

        mutating func parseOr() throws(GraphError) -> ODataFilter {
            var left = try parseAnd()
            while peekWord("or") {
                position += 1
                left = .or(left, try parseAnd())
            }
            return left
        }

        mutating func parseAnd() throws(GraphError) -> ODataFilter {
            var left = try parseUnary()
            while peekWord("and") {
                position += 1
                left = .and(left, try parseUnary())
            }
            return left
        }

        mutating func parseUnary() throws(GraphError) -> ODataFilter {
            depth += 1
            defer { depth -= 1 }
            // Bounds recursion so a hostile filter of a thousand '(' cannot exhaust the stack.
            if depth > 32 { throw GraphError.unsupportedQuery("$filter is nested too deeply") }
            if peekWord("not") {
                position += 1
                return .not(try parseUnary())
            }
            guard let token = next() else { throw GraphError.unsupportedQuery("$filter ends too early") }
            if token.kind == .open {
                let inner = try parseOr()
                guard next()?.kind == .close else { throw GraphError.unsupportedQuery("$filter: missing ')'") }
                return inner
            }
            guard token.kind == .word else { throw GraphError.unsupportedQuery("$filter: expected a property name, got '\(token.text)'") }
            let lower = token.text.lowercased()
            if ["startswith", "endswith", "contains"].contains(lower), position < tokens.count, tokens[position].kind == .open {
                position += 1
                guard let prop = next(), prop.kind == .word else { throw GraphError.unsupportedQuery("$filter: \(lower)( needs a property name") }
                try checkProperty(prop.text)
                guard next()?.kind == .comma, let arg = next(), arg.kind == .string, next()?.kind == .close else {
                    throw GraphError.unsupportedQuery("$filter: use \(lower)(property,'text')")
                }
                return .function(name: lower, property: prop.text, argument: arg.text)
            }
            try checkProperty(token.text)
            guard let opToken = next(), opToken.kind == .word else {
                throw GraphError.unsupportedQuery("$filter: expected an operator after '\(token.text)'")
            }
            guard let op = Operator(rawValue: opToken.text.lowercased()) else {
                throw GraphError.unsupportedQuery("$filter: operator '\(opToken.text)' is not supported (supported: eq, ne, gt, ge, lt, le, and, or, not, startswith, endswith, contains)")
            }
            guard let lit = next() else { throw GraphError.unsupportedQuery("$filter: expected a value after '\(opToken.text)'") }
            let isDateTimeField = schema.field(token.text)?.type == .dateTime
            if lit.kind == .dateTime {
                guard isDateTimeField else {
                    throw GraphError.unsupportedQuery("$filter: '\(token.text)' is not a dateTime property; quote text literals ('\(lit.text)')")
                }
                guard let date = GraphDateParsing.parse(lit.text) else {
                    throw GraphError.unsupportedQuery("$filter: '\(lit.text)' is not an ISO 8601 date-time with a zone (e.g. 2026-11-01T00:00:00Z; send '+' as %2B)")
                }
                return .compareDate(property: token.text, op: op, date: date)
            }
            // A quoted date-time compared with a dateTime property compares instants too.
            if isDateTimeField, lit.kind == .string, let date = GraphDateParsing.parse(lit.text) {
                return .compareDate(property: token.text, op: op, date: date)
            }
            return .compare(property: token.text, op: op, literal: try literal(lit))
        }

        func checkProperty(_ name: String) throws(GraphError) {
            guard schema.field(name) != nil else {
                throw GraphError.unsupportedQuery("$filter: '\(name)' is not a property of \(schema.entityType) (filterable: \(schema.fieldNames.joined(separator: ", ")))")
            }
        }

        func literal(_ token: Token) throws(GraphError) -> JSONValue {
            switch token.kind {
            case .string: return .string(token.text)
            case .number:
                if let i = Int64(token.text) { return .int(i) }
                if let d = Double(token.text) { return .double(d) }
                throw GraphError.unsupportedQuery("$filter: '\(token.text)' is not a number")
            case .word:
                switch token.text.lowercased() {
                case "true": return .bool(true)
                case "false": return .bool(false)
                case "null": return .null
                default: throw GraphError.unsupportedQuery("$filter: '\(token.text)' is not a literal (quote strings: 'text')")
                }
            default:
                throw GraphError.unsupportedQuery("$filter: unexpected '\(token.text)'")
            }
        }
    }
}
