import Foundation
import PrefabKit
import Testing

@testable import Prefabs

@Suite("report prefab")
struct ReportTests {
    /// Month 1..3: units 10 + (month * 37) % 90 = 47, 84, 31; revenue is 12 per unit.
    static let csv = "month,units,revenue\n1,47,564\n2,84,1008\n3,31,372\n"
    static let markdown = "# Q3 sales\n\n3 months, total revenue **1944**.\n\nSee `report.csv` for the rows.\n"

    private func scratchDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("report-tests-\(UUID().uuidString)")
    }

    @Test("progress per row, then a files event listing report.csv and report.md, then done")
    func events() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let events = try collect(Report.report, inputs: ["title": "Q3 sales", "rows": 3], outputDirectory: directory)
        try #require(events.count == 6)
        #expect(
            Array(events[0..<4]) == [
                .start(["title": "Q3 sales"]),
                .progress(current: 1, total: 3, message: "row 1"),
                .progress(current: 2, total: 3, message: "row 2"),
                .progress(current: 3, total: 3, message: "row 3"),
            ]
        )
        #expect(events[1].data?["percentage"] == 33)
        #expect(events[2].data?["percentage"] == 66)
        #expect(events[3].data?["percentage"] == 100)
        #expect(events[5] == .done(["rows": 3, "total": 1944]))

        let files = events[4]
        #expect(files.type == "files")
        let entries = try #require(files.data?.arrayValue)
        #expect(entries.map { $0["name"] } == ["report.csv", "report.md"])
        #expect(entries.map { $0["size"] } == [.int(Self.csv.utf8.count), .int(Self.markdown.utf8.count)])
        #expect(entries.map { $0["size"] } == [48, 78])
        #expect(entries.map { $0["content_type"] } == ["text/csv; charset=utf-8", "text/markdown; charset=utf-8"])
    }

    @Test("the files hold the table and the summary")
    func fileContents() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let events = try collect(Report.report, inputs: ["title": "Q3 sales", "rows": 3], outputDirectory: directory)
        #expect(try String(contentsOf: directory.appendingPathComponent("report.csv"), encoding: .utf8) == Self.csv)
        #expect(try String(contentsOf: directory.appendingPathComponent("report.md"), encoding: .utf8) == Self.markdown)

        let entries = try #require(events.first { $0.type == "files" }?.data?.arrayValue)
        let urls = entries.compactMap { $0["url"]?.stringValue.flatMap(URL.init(string:)) }
        try #require(urls.count == 2)
        #expect(urls.allSatisfy { $0.isFileURL })
        #expect(try urls.map { try String(contentsOf: $0, encoding: .utf8) } == [Self.csv, Self.markdown])
    }

    @Test("the total is the sum of the revenue column", arguments: [1, 5, 12, 90])
    func total(rows: Int) throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let events = try collect(Report.report, inputs: ["title": "T", "rows": .int(rows)], outputDirectory: directory)
        let csv = try String(contentsOf: directory.appendingPathComponent("report.csv"), encoding: .utf8)
        let lines = csv.split(separator: "\n").dropFirst()
        #expect(lines.count == rows)
        let revenue = lines.compactMap { $0.split(separator: ",").last.flatMap { Int($0) } }.reduce(0, +)
        #expect(events.last == .done(["rows": .int(rows), "total": .int(revenue)]))
        #expect(events.filter { $0.type == "progress" }.count == rows)
    }

    @Test("rows out of range is INVALID_INPUTS before anything is written", arguments: [0, -1, 10_001])
    func rowsOutOfRange(rows: Int) throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let events = try collect(Report.report, inputs: ["title": "T", "rows": .int(rows)], outputDirectory: directory)
        #expect(events == [.error("rows must be between 1 and 10000, got \(rows)", code: "INVALID_INPUTS")])
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }

    @Test("the manifest defaults title and rows")
    func manifestDefaults() throws {
        let function = try #require(try exampleManifest("report").functions.first)
        #expect(try function.validate([:]).get() == ["title": "Sales report", "rows": 5])
    }
}
