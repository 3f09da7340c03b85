import Foundation
import GatewayAuth
import Testing

/// The strict parser agrees with RFC 8259 on what is JSON, and reads numbers exactly.
struct StrictJSONTests {
    @Test(arguments: [
        (#"{}"#, JSONValue.object([:])),
        (#" { "a" : [1, -2, 3.5, 1e3, true, false, null, "x"] } "#,
         .object(["a": .array([.int(1), .int(-2), .double(3.5), .double(1000), .bool(true), .bool(false), .null, .string("x")])])),
        (#"{"exp":4102444800}"#, .object(["exp": .int(4_102_444_800)])),
        (#"{"big":92233720368547758070}"#, .object(["big": .double(9.223372036854776e19)])),
        (#"{"s":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}"#, .object(["s": .string("\"\\/\u{08}\u{0C}\n\r\té😀")])),
        (#"[]"#, .array([])),
        (#""only a string""#, .string("only a string")),
    ])
    func parsesJSON(text: String, expected: JSONValue) throws {
        #expect(try StrictJSON.parse(Array(text.utf8)) == expected)
    }

    @Test(arguments: [
        "", " ", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "[1 2]", "{'a':1}", "{a:1}",
        "01", "-", "1.", ".5", "1e", "+1", "NaN", "Infinity", "tru", "nul", "\"abc", "\"\\x\"",
        "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"a\u{01}b\"", "{} {}", "1e400", "[\"\\ud83dx\"]",
    ])
    func refusesWhatIsNotJSON(text: String) {
        #expect(throws: StrictJSON.Failure.self) { try StrictJSON.parse(Array(text.utf8)) }
    }

    @Test func refusesInvalidUTF8InStrings() {
        #expect(throws: StrictJSON.Failure.self) { try StrictJSON.parse([0x22, 0xC3, 0x28, 0x22]) }
        #expect(throws: StrictJSON.Failure.self) { try StrictJSON.parse([0x22, 0xED, 0xA0, 0x80, 0x22]) }
    }

    @Test func boundsNesting() throws {
        let ok = String(repeating: "[", count: StrictJSON.maxDepth) + String(repeating: "]", count: StrictJSON.maxDepth)
        #expect(throws: Never.self) { try StrictJSON.parse(Array(ok.utf8)) }
        let deep = String(repeating: "[", count: StrictJSON.maxDepth + 1) + String(repeating: "]", count: StrictJSON.maxDepth + 1)
        #expect(throws: StrictJSON.Failure.tooDeep) { try StrictJSON.parse(Array(deep.utf8)) }
        let hostile = String(repeating: "{\"a\":", count: 100_000)
        #expect(throws: StrictJSON.Failure.tooDeep) { try StrictJSON.parse(Array(hostile.utf8)) }
    }

    /// Whatever Foundation can parse as an object, the strict parser reads the same way
    /// (for documents without repeated names).
    @Test func agreesWithFoundationOnRealDocuments() throws {
        let text = #"{"keys":[{"kty":"RSA","use":"sig","kid":"k1","n":"AQAB","e":"AQAB"}],"n":-0.5,"t":true}"#
        let strict = try StrictJSON.parse(Array(text.utf8))
        let foundation = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(strict == foundation)
    }
}
