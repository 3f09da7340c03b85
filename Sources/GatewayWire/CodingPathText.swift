/// A decoding error's coding path as a person reads it: `issuers[2].audiences`,
/// `items[0].event.reason` (an index follows its array without a dot). Shared by every
/// reader that names the field a bad document got wrong (auth.json, the agent API bodies).
public enum CodingPathText {
    public static func of(_ keys: [any CodingKey]) -> String {
        var out = ""
        for key in keys {
            if let index = key.intValue {
                out += "[\(index)]"
            } else {
                out += (out.isEmpty ? "" : ".") + key.stringValue
            }
        }
        return out
    }
}
