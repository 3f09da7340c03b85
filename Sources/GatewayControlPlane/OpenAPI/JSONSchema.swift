import GatewayAuth

/// Small builders for the JSON Schema (2020-12, as OpenAPI 3.1 uses it) of the published
/// API description. JSONValue has no literal conformances, so these keep the tables in
/// OpenAPIDocument.swift readable.
enum JS {
    static func string(_ description: String? = nil, minLength: Int? = nil, maxLength: Int? = nil, format: String? = nil,
                       pattern: String? = nil, enumeration: [String]? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": .string("string")]
        if let description { o["description"] = .string(description) }
        if let minLength { o["minLength"] = .int(Int64(minLength)) }
        if let maxLength { o["maxLength"] = .int(Int64(maxLength)) }
        if let format { o["format"] = .string(format) }
        if let pattern { o["pattern"] = .string(pattern) }
        if let enumeration { o["enum"] = .array(enumeration.map(JSONValue.string)) }
        return .object(o)
    }

    static func integer(_ description: String? = nil, minimum: Int64 = Int64.min, maximum: Int64 = Int64.max) -> JSONValue {
        var o: [String: JSONValue] = ["type": .string("integer"), "minimum": .int(minimum), "maximum": .int(maximum)]
        o["format"] = .string(minimum >= Int64(Int32.min) && maximum <= Int64(Int32.max) ? "int32" : "int64")
        if let description { o["description"] = .string(description) }
        return .object(o)
    }

    static func number(_ description: String? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": .string("number"), "format": .string("double")]
        if let description { o["description"] = .string(description) }
        return .object(o)
    }

    static let boolean: JSONValue = .object(["type": .string("boolean")])

    static func array(_ items: JSONValue, maxItems: Int? = nil, description: String? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": .string("array"), "items": items]
        if let maxItems { o["maxItems"] = .int(Int64(maxItems)) }
        if let description { o["description"] = .string(description) }
        return .object(o)
    }

    /// `additionalProperties: false` where the server refuses unknown properties (admin
    /// bodies); left open where it ignores them (agent bodies, so newer agents may send more).
    static func object(_ properties: [String: JSONValue], required: [String] = [], closed: Bool = false,
                       description: String? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["type": .string("object"), "properties": .object(properties)]
        if !required.isEmpty { o["required"] = .array(required.sorted().map(JSONValue.string)) }
        if closed { o["additionalProperties"] = .bool(false) }
        if let description { o["description"] = .string(description) }
        return .object(o)
    }

    static func ref(_ name: String) -> JSONValue { .object(["$ref": .string("#/components/schemas/\(name)")]) }

    /// The schema, or null.
    static func nullable(_ schema: JSONValue) -> JSONValue {
        guard case .object(var o) = schema else { return schema }
        if case .string(let type)? = o["type"] {
            o["type"] = .array([.string(type), .string("null")])
            if case .array(let values)? = o["enum"] { o["enum"] = .array(values + [.null]) }
            return .object(o)
        }
        return .object(["anyOf": .array([schema, .object(["type": .string("null")])])])
    }

    static func with(_ schema: JSONValue, _ extra: [String: JSONValue]) -> JSONValue {
        guard case .object(var o) = schema else { return schema }
        for (k, v) in extra { o[k] = v }
        return .object(o)
    }
}
