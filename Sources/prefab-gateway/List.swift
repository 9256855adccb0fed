import ArgumentParser
import Foundation
import PrefabGateway
import PrefabKit

/// `prefab-gateway list`: the functions the gateway would serve, as a table.
struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the functions of the prefabs directory as a table.")

    @OptionGroup var prefabs: PrefabsOptions

    func run() throws {
        let catalog = prefabs.loadCatalog()
        let rows = catalog.functions.values.sorted { $0.manifest.name < $1.manifest.name }.map { function in
            [
                function.manifest.name,
                function.prefab,
                function.manifest.streaming ? "yes" : "no",
                function.manifest.parameters.map { $0.name + ($0.required ? "*" : "") }.joined(separator: ", "),
                function.manifest.description ?? "",
            ]
        }
        print(
            Table.render(
                header: ["FUNCTION", "PREFAB", "STREAMING", "PARAMETERS (* required)", "DESCRIPTION"], rows: rows))
        for problem in catalog.problems {
            FileHandle.standardError.write(Data("not loaded: \(problem)\n".utf8))
        }
    }
}

/// A plain text table with columns padded to their widest cell.
enum Table {
    static func render(header: [String], rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
