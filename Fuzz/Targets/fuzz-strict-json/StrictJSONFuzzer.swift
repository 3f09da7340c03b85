import Foundation
import FuzzSupport
import GatewayAuth

/// StrictJSON.parse (GatewayAuth/StrictJSON.swift): the hand-written JSON parser every
/// token header and payload and every JWKS goes through. Input: a JSON text.
///
/// Invariants:
/// - differential: whatever StrictJSON accepts, Foundation's JSONDecoder (into JSONValue,
///   the parser the validator used before) accepts too and reads as the same value,
///   numbers compared by value; so no component that reads a token with Foundation (or
///   jwt-kit) can see other claims than the validator did;
/// - whatever it accepts, encoded again by JSONEncoder, parses to the same value;
/// - it never accepts an object that repeats a member name, nesting deeper than maxDepth,
///   or text that is not UTF-8;
/// - parseObject accepts exactly the accepted texts whose value is an object.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = Array(UnsafeBufferPointer(start: data, count: size))
    let strict: JSONValue
    do {
        strict = try StrictJSON.parse(text)
    } catch {
        invariant((try? StrictJSON.parseObject(text)) == nil, "parseObject accepts what parse refuses")
        return 0
    }
    invariant(String(validating: text, as: UTF8.self) != nil, "accepted text that is not UTF-8")
    invariant(depth(strict) <= StrictJSON.maxDepth, "accepted nesting of \(depth(strict)) levels")
    let isObject: Bool = if case .object = strict { true } else { false }
    invariant(((try? StrictJSON.parseObject(text)) != nil) == isObject, "parseObject disagrees with parse")
    invariant(!repeatsName(text), "accepted an object that repeats a member name: \(String(decoding: text.prefix(300), as: UTF8.self))")

    // Foundation reads the same text as the same value.
    do {
        let foundation = try JSONDecoder().decode(JSONValue.self, from: Data(text))
        invariant(same(strict, foundation), "StrictJSON and Foundation disagree on \(String(decoding: text.prefix(300), as: UTF8.self)):\n \(strict)\n \(foundation)")
    } catch {
        // Foundation has a nesting limit of its own (512), far above ours; anything else it
        // refuses that we accept is a difference worth knowing.
        invariant(false, "StrictJSON accepts what Foundation refuses (\(error)): \(String(decoding: text.prefix(300), as: UTF8.self))")
    }

    // Round trip through Foundation's encoder.
    if let encoded = try? JSONEncoder().encode(strict) {
        do {
            let again = try StrictJSON.parse(Array(encoded))
            invariant(same(strict, again), "round trip changed the value:\n \(strict)\n \(again)")
        } catch {
            invariant(false, "StrictJSON refuses JSONEncoder's text \(String(decoding: encoded.prefix(300), as: UTF8.self)): \(error)")
        }
    }
    return 0
}

private func depth(_ v: JSONValue) -> Int {
    switch v {
    case .array(let a): return 1 + (a.map(depth).max() ?? 0)
    case .object(let o): return 1 + (o.values.map(depth).max() ?? 0)
    default: return 0
    }
}

/// Equal as JSON values: numbers by value (an integral double equals the int; past 2^53
/// within one ulp), strings and
/// member names by their bytes (not Swift's canonical equivalence).
private func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case (.null, .null): return true
    case (.bool(let x), .bool(let y)): return x == y
    case (.string(let x), .string(let y)): return Array(x.utf8) == Array(y.utf8)
    case (.int(let x), .int(let y)): return x == y
    case (.double(let x), .double(let y)): return x == y
    case (.int(let x), .double(let y)), (.double(let y), .int(let x)):
        // Past 2^53 a double holds no fraction and not every integer: for a text such as
        // -9800348312076389.5 Foundation answers the integer -9800348312076389 while
        // StrictJSON answers the nearest double, -9800348312076390. Both are that text read
        // to the precision a double has (within one ulp); no claim check can tell them apart.
        return Double(x) == y || (abs(y) >= 9_007_199_254_740_992 && abs(Double(x) - y) <= y.ulp)
    case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy(same)
    case (.object(let x), .object(let y)):
        guard x.count == y.count else { return false }
        let xs = x.map { (Array($0.key.utf8), $0.value) }.sorted { $0.0.lexicographicallyPrecedes($1.0) }
        let ys = y.map { (Array($0.key.utf8), $0.value) }.sorted { $0.0.lexicographicallyPrecedes($1.0) }
        return zip(xs, ys).allSatisfy { $0.0 == $1.0 && same($0.1, $1.1) }
    default: return false
    }
}

/// Whether any object in the text repeats a member name (by the decoded name's bytes): a
/// small scanner of its own, independent of both parsers, for texts already known to be JSON.
private func repeatsName(_ t: [UInt8]) -> Bool {
    var i = 0
    var stack: [Set<[UInt8]>?] = []  // nil: an array
    var expectName = false
    func skip() { while i < t.count, [0x20, 0x09, 0x0A, 0x0D].contains(t[i]) { i += 1 } }
    func string() -> [UInt8] {
        i += 1
        var out: [UInt8] = []
        while i < t.count, t[i] != 0x22 {
            if t[i] == 0x5C {
                i += 1
                guard i < t.count else { break }
                switch t[i] {
                case UInt8(ascii: "u"):
                    let hexText = String(decoding: t[(i + 1)..<min(t.count, i + 5)], as: UTF8.self)
                    var v = UInt32(hexText, radix: 16) ?? 0
                    i += 4
                    if (0xD800...0xDBFF).contains(v), i + 6 < t.count, t[i + 1] == 0x5C, t[i + 2] == UInt8(ascii: "u") {
                        let low = UInt32(String(decoding: t[(i + 3)..<(i + 7)], as: UTF8.self), radix: 16) ?? 0
                        v = 0x10000 + ((v - 0xD800) << 10) + (low &- 0xDC00)
                        i += 6
                    }
                    if let s = Unicode.Scalar(v) { out += Array(String(s).utf8) }
                case UInt8(ascii: "b"): out.append(8)
                case UInt8(ascii: "f"): out.append(12)
                case UInt8(ascii: "n"): out.append(10)
                case UInt8(ascii: "r"): out.append(13)
                case UInt8(ascii: "t"): out.append(9)
                default: out.append(t[i])
                }
                i += 1
            } else {
                out.append(t[i])
                i += 1
            }
        }
        i += 1
        return out
    }
    while i < t.count {
        skip()
        guard i < t.count else { break }
        switch t[i] {
        case UInt8(ascii: "{"):
            stack.append([])
            expectName = true
            i += 1
        case UInt8(ascii: "["):
            stack.append(nil)
            expectName = false
            i += 1
        case UInt8(ascii: "}"), UInt8(ascii: "]"):
            _ = stack.popLast()
            i += 1
        case UInt8(ascii: ","):
            expectName = stack.last.map { $0 != nil } ?? false
            i += 1
        case UInt8(ascii: ":"):
            expectName = false
            i += 1
        case 0x22:
            let s = string()
            if expectName, let top = stack.last, var names = top {
                if !names.insert(s).inserted { return true }
                stack[stack.count - 1] = names
                expectName = false
            }
        default:
            i += 1
        }
    }
    return false
}

/// The entry point a debug build links as `main` (see CFuzzDriver/include/fuzz_driver.h).
@_cdecl("fuzz_strict_json_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runLibFuzzer(argc, argv)
}
