import PrefabKit

enum Wizard {
    static let templates: [JSONValue] = ["cli", "web", "library"]

    /// Asks two questions, each blocking until the caller answers (`POST
    /// /invocations/<id>/messages`, or the WebSocket), and finishes with both answers.
    static func wizard(_ inputs: PrefabInputs, _ context: PrefabContext) throws {
        let greeting = inputs["greeting"]?.stringValue ?? "Let's set up a project."
        try context.yield(.start(["message": .string(greeting)]))
        let name = try context.ask("What is the project called?", id: "name").stringValue ?? ""
        guard !name.allSatisfy(\.isWhitespace) else {
            throw PrefabError(.invalidInputs, "the project name must be a non-empty string")
        }
        // With options, the gateway accepts only one of them as the answer.
        let template = try context.ask("Which template for \(name)?", options: templates, id: "template")
        try context.yield(.done(["name": .string(name), "template": template]))
    }
}
