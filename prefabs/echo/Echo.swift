import PrefabKit

enum Echo {
    static func echo(_ inputs: PrefabInputs, _ context: PrefabContext) throws -> JSONValue {
        let text = try inputs.string("text")
        return ["text": .string(text), "length": .int(text.count)]
    }
}
