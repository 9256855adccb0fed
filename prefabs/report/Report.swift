import Foundation
import PrefabKit

enum Report {
    static func report(_ inputs: PrefabInputs, _ context: PrefabContext) throws {
        let title = try inputs.string("title")
        let rows = try inputs.int("rows")
        guard (1...10_000).contains(rows) else {
            throw PrefabError(.invalidInputs, "rows must be between 1 and 10000, got \(rows)")
        }
        try context.yield(.start(["title": .string(title)]))
        var csv = "month,units,revenue\n"
        var total = 0
        for row in 1...rows {
            let units = 10 + (row * 37) % 90
            total += units * 12
            csv += "\(row),\(units),\(units * 12)\n"
            try context.yield(.progress(current: row, total: rows, message: "row \(row)"))
        }
        let directory = try context.outputDirectory
        try csv.write(to: directory.appendingPathComponent("report.csv"), atomically: true, encoding: .utf8)
        let markdown = "# \(title)\n\n\(rows) months, total revenue **\(total)**.\n\nSee `report.csv` for the rows.\n"
        try markdown.write(to: directory.appendingPathComponent("report.md"), atomically: true, encoding: .utf8)
        try context.yield(.done(["rows": .int(rows), "total": .int(total)]))
    }
}
