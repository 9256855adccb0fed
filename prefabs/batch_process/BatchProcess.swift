import PrefabKit

enum BatchProcess {
    static func batchProcess(_ inputs: PrefabInputs, _ context: PrefabContext) throws {
        let items = try inputs.array("items")
        let delay = try inputs.int("delay_ms")
        try context.yield(.start(["total": .int(items.count)]))
        var results: [JSONValue] = []
        for (index, item) in items.enumerated() {
            try context.sleep(for: .milliseconds(delay))
            let result = item.stringValue.map { JSONValue.string($0.uppercased()) } ?? item
            results.append(result)
            try context.yield(
                .progress(
                    current: index + 1, total: items.count, message: "processed \(item.jsonString)",
                    extra: ["item": item])
            )
        }
        try context.yield(.done(["total": .int(items.count), "results": .array(results)]))
    }
}
