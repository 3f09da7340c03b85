import Foundation
import GatewayAuth
import Testing

@Suite struct JSONValueTests {
    @Test func numbersBooleansAndStringsStayDistinct() throws {
        let o = try #require(JSONValue.parseObject(Data(#"{"a":1,"b":true,"c":1.5,"d":1800000000,"e":"1","f":null,"g":[1,"x"],"h":1e300}"#.utf8)))
        #expect(o["a"] == .int(1))
        #expect(o["b"] == .bool(true))
        #expect(o["c"] == .double(1.5))
        #expect(o["d"]?.numericDate == 1_800_000_000)
        #expect(o["c"]?.numericDate == 1)
        #expect(o["e"] == .string("1"))
        #expect(o["e"]?.numericDate == nil)
        #expect(o["f"] == .null)
        #expect(o["g"] == .array([.int(1), .string("x")]))
        #expect(o["h"]?.numericDate == nil)
    }

    @Test func onlyObjectsAreObjects() {
        #expect(JSONValue.parseObject(Data("[]".utf8)) == nil)
        #expect(JSONValue.parseObject(Data("\"x\"".utf8)) == nil)
        #expect(JSONValue.parseObject(Data("{".utf8)) == nil)
        #expect(JSONValue.parseObject(Data()) == nil)
    }
}
