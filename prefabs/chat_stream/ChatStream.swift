import PrefabKit

enum ChatStream {
    static func chatStream(_ inputs: PrefabInputs, _ context: PrefabContext) throws {
        let prompt = try inputs.string("prompt")
        let delay = try inputs.int("delay_ms")
        // Optional: callers that predate it (and unit tests that give inputs directly) leave it out.
        let failAfter = inputs["fail_after"]?.intValue ?? 0
        try context.yield(.start(["model": "echo-bot"]))
        let tokens = reply(to: prompt)
        for (index, token) in tokens.enumerated() {
            if failAfter > 0, index == failAfter {
                throw PrefabError("REPLY_FAILED", "the reply failed after \(failAfter) tokens, as asked (fail_after)")
            }
            try context.sleep(for: .milliseconds(delay))
            try context.yield(.content(token))
        }
        try context.yield(.done(["tokens": .int(tokens.count), "text": .string(tokens.joined())]))
    }

    /// The reply split into tokens: words that keep their following space, as model tokens do.
    static func reply(to prompt: String) -> [String] {
        let text = "You said: \(prompt). This reply arrives one token at a time, the way a language model streams."
        var tokens: [String] = []
        var current = ""
        for character in text {
            current.append(character)
            if character == " " {
                tokens.append(current)
                current = ""
            }
        }
        if !current.isEmpty { tokens.append(current) }
        return tokens
    }
}
