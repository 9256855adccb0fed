import PrefabKit
import Testing

@testable import Prefabs

@Suite("wizard prefab")
struct WizardTests {
    @Test("asks the name, then the template among three options, and finishes with both")
    func answered() throws {
        let events = try collect(Wizard.wizard) { question in
            question.data?.objectValue?["questionId"] == "name" ? "demo" : "web"
        }
        #expect(events.map(\.type) == ["start", "question", "question", "done"])
        #expect(events[1] == .question("What is the project called?", id: "name"))
        #expect(events[2] == .question("Which template for demo?", id: "template", options: ["cli", "web", "library"]))
        #expect(events.last == .done(["name": "demo", "template": "web"]))
    }

    @Test("a blank name ends the run with INVALID_INPUTS before the second question")
    func blankName() throws {
        let events = try collect(Wizard.wizard) { _ in "  " }
        #expect(events.map(\.type) == ["start", "question", "error"])
        #expect(events.last?.errorCode == "INVALID_INPUTS")
    }

}
