import ArgumentParser
import Foundation
import PrefabGateway
import PrefabKit

/// `prefab-gateway new <name> --language swift|python`: scaffolds a prefab folder (manifest, code and
/// a unit test) that validates and passes its own test as it is.
struct New: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a prefab folder with its manifest, code and a unit test, ready to build and test.",
        discussion: """
            The prefab is one streaming function named <name>, with the parameters items (array, required) \
            and delay_ms (integer, default 0): it yields start, a progress event per item, then done. \
            Swift: <prefabs>/<name>/<TypeName>.swift and <tests>/<TypeName>Tests.swift. \
            Python: <prefabs>/<name>/main.py and test_main.py. Nothing is overwritten.
            """
    )

    enum Language: String, CaseIterable, ExpressibleByArgument {
        case swift, python
    }

    @Argument(
        help: "The function's name, also the prefab folder's: letters, digits and '_', starting with a letter.")
    var name: String

    @Option(
        help: ArgumentHelp(
            "swift (compiled into the gateway) or python (a generator run as a child process).",
            valueName: "swift|python"))
    var language: Language

    @OptionGroup var prefabs: PrefabsOptions

    @Option(
        help: ArgumentHelp(
            "Where the Swift unit test goes (default: Tests/PrefabsTests beside the prefabs directory).",
            valueName: "dir"))
    var tests: String?

    @Option(help: ArgumentHelp("The prefab's and the function's description in the manifest.", valueName: "text"))
    var description: String?

    @Flag(help: "Use the prefab folder if it already exists and is empty.")
    var force = false

    func validate() throws {
        if let problem = ScaffoldName.problem(name, language: language) {
            throw ValidationError(problem)
        }
    }

    func run() throws {
        let scaffold = Scaffold(
            name: name,
            language: language,
            prefabsDirectory: prefabs.url.standardizedFileURL,
            testsDirectoryOption: tests.map { URL(fileURLWithPath: $0).standardizedFileURL },
            description: description ?? "Processes each item in turn, streaming a progress event per item.",
            force: force
        )
        do throws(ScaffoldError) {
            try scaffold.checkConflicts(catalog: prefabs.loadCatalog())
            try scaffold.write()
        } catch {
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode.failure
        }
        scaffold.printSummary(servePrefabsOption: prefabs.directory != nil)
    }
}

/// A refusal of `new`: printed as `error: <message>`, exit status 1.
private struct ScaffoldError: Error {
    var message: String

    init(_ message: String) { self.message = message }
}

/// Which names `new` accepts, and the Swift names it derives from them.
private enum ScaffoldName {
    /// Longest name accepted, so every generated Swift line stays within the 120 columns of `.swift-format`.
    static let maximumLength = 64

    /// Why `name` cannot name a scaffolded prefab, or nil when it can.
    static func problem(_ name: String, language: New.Language) -> String? {
        guard FunctionManifest.isValidName(name) else {
            return "'\(name)' is not a valid function name (letters, digits, '_' and '-', not starting with a digit)"
        }
        guard let first = name.unicodeScalars.first, isASCIILetter(first),
            name.unicodeScalars.allSatisfy({ isASCIILetter($0) || ("0"..."9").contains($0) || $0 == "_" })
        else {
            var message =
                "'\(name)' cannot name a scaffolded prefab: it is also the folder and a Python or Swift identifier,"
                + " so use letters, digits and '_', starting with a letter"
            let suggestion = name.lowercased().replacingOccurrences(of: "-", with: "_")
            if suggestion != name, problem(suggestion, language: language) == nil {
                message += " (e.g. \(suggestion))"
            }
            return message
        }
        guard name.count <= maximumLength else {
            return "'\(name)' is too long for a scaffold: at most \(maximumLength) characters"
        }
        switch language {
        case .python:
            if pythonReserved.contains(name) {
                return "'\(name)' is a Python keyword or a module main.py imports: choose another name"
            }
        case .swift:
            if swiftKeywords.contains(member(name)) {
                return "'\(name)' would make the Swift function '\(member(name))', a Swift keyword: choose another name"
            }
            if swiftReservedTypes.contains(type(name)) {
                return "'\(name)' would make the Swift type '\(type(name))', which the generated code or the "
                    + "registry already uses: choose another name"
            }
        }
        return nil
    }

    private static func isASCIILetter(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
    }

    static func type(_ name: String) -> String { SwiftName.type(name) }

    static func member(_ name: String) -> String { SwiftName.member(name) }

    private static let pythonReserved: Set<String> = [
        "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
        "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda",
        "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
        // main.py imports these: a function of the same name would hide them.
        "json", "time",
    ]

    private static let swiftKeywords: Set<String> = [
        "associatedtype", "borrowing", "class", "consuming", "deinit", "enum", "extension", "fileprivate", "func",
        "import", "init", "inout", "internal", "let", "nonisolated", "open", "operator", "private",
        "precedencegroup", "protocol", "public", "rethrows", "static", "struct", "subscript", "typealias", "var",
        "break", "case", "catch", "continue", "default", "defer", "do", "else", "fallthrough", "for", "guard", "if",
        "in", "repeat", "return", "throw", "switch", "where", "while", "as", "await", "false", "is", "nil", "self",
        "super", "throws", "true", "try", "any", "some",
    ]

    /// Types the generated files and the generated registry name: a prefab type of the same name would
    /// hide them.
    private static let swiftReservedTypes: Set<String> = [
        "Duration", "Foundation", "Int", "JSONValue", "PrefabContext", "PrefabError", "PrefabEvent", "PrefabFunction",
        "PrefabInputs", "PrefabKit", "PrefabRegistry", "Prefabs", "StreamingFunction", "String", "Suite", "Swift",
        "Test", "Testing",
    ]
}

/// One `new` run: what it would create, the checks before, the writing and the summary after.
private struct Scaffold {
    var name: String
    var language: New.Language
    var prefabsDirectory: URL
    /// `--tests`, when given.
    var testsDirectoryOption: URL?
    var description: String
    var force: Bool

    var folder: URL { prefabsDirectory.appendingPathComponent(name) }
    var typeName: String { ScaffoldName.type(name) }
    var memberName: String { ScaffoldName.member(name) }
    var testTypeName: String { typeName + "Tests" }

    /// `Tests/PrefabsTests` beside the prefabs directory unless `--tests` says otherwise.
    var testsDirectory: URL {
        testsDirectoryOption
            ?? prefabsDirectory.deletingLastPathComponent().appendingPathComponent("Tests/PrefabsTests")
            .standardizedFileURL
    }

    /// The files to write, in order: the code and its test first, the manifest last, so that a folder
    /// is never left with a manifest and no code.
    var files: [(url: URL, text: String)] {
        switch language {
        case .swift:
            return [
                (folder.appendingPathComponent("\(typeName).swift"), ScaffoldTemplate.swiftCode(self)),
                (testsDirectory.appendingPathComponent("\(testTypeName).swift"), ScaffoldTemplate.swiftTest(self)),
                (folder.appendingPathComponent("prefab-manifest.json"), ScaffoldTemplate.manifest(self)),
            ]
        case .python:
            return [
                (folder.appendingPathComponent("main.py"), ScaffoldTemplate.pythonCode(self)),
                (folder.appendingPathComponent("test_main.py"), ScaffoldTemplate.pythonTest(self)),
                (folder.appendingPathComponent("prefab-manifest.json"), ScaffoldTemplate.manifest(self)),
            ]
        }
    }

    // MARK: Checks

    func checkConflicts(catalog: PrefabCatalog) throws(ScaffoldError) {
        let fileManager = FileManager.default
        guard isDirectory(prefabsDirectory) else {
            throw ScaffoldError(
                "no prefabs directory at \(display(prefabsDirectory)) (create it, or pass --prefabs DIR)")
        }
        if fileManager.fileExists(atPath: folder.path) {
            guard isDirectory(folder) else {
                throw ScaffoldError("\(display(folder)) already exists and is not a folder")
            }
            let contents = (try? fileManager.contentsOfDirectory(atPath: folder.path)) ?? []
            if !contents.isEmpty {
                throw ScaffoldError("\(display(folder)) already exists and is not empty: choose another name")
            }
            if !force {
                throw ScaffoldError("\(display(folder)) already exists (it is empty: --force uses it)")
            }
        }
        let folders = ((try? fileManager.contentsOfDirectory(atPath: prefabsDirectory.path)) ?? []).sorted()
            .filter {
                !$0.hasPrefix(".") && !$0.hasPrefix("_") && isDirectory(prefabsDirectory.appendingPathComponent($0))
            }
        if let other = folders.first(where: { $0 != name && $0.lowercased() == name.lowercased() }) {
            throw ScaffoldError("prefab folder '\(other)' differs from '\(name)' only in case: choose another name")
        }
        if let existing = catalog.functions[name] {
            throw ScaffoldError("prefab '\(existing.prefab)' already has a function '\(name)': choose another name")
        }
        // Functions of manifests that did not load (a Swift prefab not built yet, say) count too.
        for other in folders {
            let manifestURL = prefabsDirectory.appendingPathComponent(other).appendingPathComponent(
                "prefab-manifest.json")
            guard let data = fileManager.contents(atPath: manifestURL.path),
                let manifest = try? PrefabManifest(parsing: data)
            else { continue }
            if manifest.functions.contains(where: { $0.name == name }) {
                throw ScaffoldError("\(display(manifestURL)) already has a function '\(name)': choose another name")
            }
        }
        if language == .swift {
            try checkSwiftNames(folders: folders)
        }
    }

    /// The Swift type must be new to the Prefabs module and to the code that imports it, and the test
    /// must have somewhere to go.
    private func checkSwiftNames(folders: [String]) throws(ScaffoldError) {
        if let other = folders.first(where: { $0 != name && ScaffoldName.type($0) == typeName }) {
            throw ScaffoldError(
                "prefab folder '\(other)' already makes the Swift type '\(typeName)': choose another name")
        }
        guard isDirectory(testsDirectory) else {
            throw ScaffoldError(
                "no tests directory at \(display(testsDirectory)) for \(testTypeName).swift (pass --tests DIR)")
        }
        let testFile = testsDirectory.appendingPathComponent("\(testTypeName).swift")
        if FileManager.default.fileExists(atPath: testFile.path) {
            throw ScaffoldError("\(display(testFile)) already exists: choose another name")
        }
        var roots = [prefabsDirectory, testsDirectory]
        let package = prefabsDirectory.deletingLastPathComponent()
        if FileManager.default.fileExists(atPath: package.appendingPathComponent("Package.swift").path) {
            roots += [package.appendingPathComponent("Sources"), package.appendingPathComponent("Tests")]
        }
        for file in swiftFiles(under: roots) {
            guard let text = try? String(contentsOf: file, encoding: .utf8) else { continue }
            let words = Self.identifiers(inSwift: text)
            for word in [typeName, testTypeName] where words.contains(word) {
                throw ScaffoldError(
                    "the Swift name '\(word)' is already used in \(display(file)): choose another name")
            }
        }
    }

    /// The identifiers of Swift source, leaving out comments and string literals: a capitalised word in
    /// a comment ("Start the server") is no use of a type.
    static func identifiers(inSwift source: String) -> Set<String> {
        let bytes = Array(source.utf8)
        var names = Set<String>()
        var index = 0
        func isAt(_ text: String) -> Bool {
            let pattern = Array(text.utf8)
            return index + pattern.count <= bytes.count && bytes[index..<index + pattern.count].elementsEqual(pattern)
        }
        func isIdentifier(_ byte: UInt8) -> Bool {
            byte >= 0x80 || byte == UInt8(ascii: "_") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
        }
        while index < bytes.count {
            if isAt("//") {
                while index < bytes.count, bytes[index] != UInt8(ascii: "\n") { index += 1 }
            } else if isAt("/*") {
                var depth = 0
                repeat {
                    if isAt("/*") {
                        depth += 1
                        index += 2
                    } else if isAt("*/") {
                        depth -= 1
                        index += 2
                    } else {
                        index += 1
                    }
                } while depth > 0 && index < bytes.count
            } else if bytes[index] == UInt8(ascii: "#") || bytes[index] == UInt8(ascii: "\"") {
                // A string literal, raw (#"..."#) or not, one line or multi-line: skipped whole.
                var hashes = 0
                while index + hashes < bytes.count, bytes[index + hashes] == UInt8(ascii: "#") { hashes += 1 }
                index += hashes
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { continue }
                let quote = isAt("\"\"\"") ? "\"\"\"" : "\""
                let close = quote + String(repeating: "#", count: hashes)
                index += quote.utf8.count
                while index < bytes.count, !isAt(close) {
                    if quote == "\"", bytes[index] == UInt8(ascii: "\n") { break }
                    index += hashes == 0 && bytes[index] == UInt8(ascii: "\\") ? 2 : 1
                }
                index += close.utf8.count
            } else if isIdentifier(bytes[index]) {
                let start = index
                while index < bytes.count, isIdentifier(bytes[index]) { index += 1 }
                names.insert(String(decoding: bytes[start..<index], as: UTF8.self))
            } else {
                index += 1
            }
        }
        return names
    }

    private func swiftFiles(under roots: [URL]) -> [URL] {
        var seen = Set<String>()
        var files: [URL] = []
        for root in roots where isDirectory(root) {
            let enumerator = FileManager.default.enumerator(
                at: root, includingPropertiesForKeys: nil, options: [.skipsHiddenFiles])
            while let url = enumerator?.nextObject() as? URL {
                if url.pathExtension == "swift", seen.insert(url.standardizedFileURL.path).inserted {
                    files.append(url)
                }
            }
        }
        return files
    }

    private func isDirectory(_ url: URL) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    // MARK: Writing

    /// Writes every file, never over an existing one; on any failure removes what it wrote.
    func write() throws(ScaffoldError) {
        let fileManager = FileManager.default
        var written: [URL] = []
        var createdFolder = false
        do {
            if !fileManager.fileExists(atPath: folder.path) {
                try fileManager.createDirectory(at: folder, withIntermediateDirectories: false)
                createdFolder = true
            }
            for file in files {
                try Data(file.text.utf8).write(to: file.url, options: .withoutOverwriting)
                written.append(file.url)
            }
        } catch {
            for url in written.reversed() { try? fileManager.removeItem(at: url) }
            if createdFolder, (try? fileManager.contentsOfDirectory(atPath: folder.path))?.isEmpty == true {
                try? fileManager.removeItem(at: folder)
            }
            throw ScaffoldError("cannot write the prefab, nothing was created: \(error.localizedDescription)")
        }
    }

    // MARK: Summary

    func printSummary(servePrefabsOption: Bool) {
        let isManifest = { (file: (url: URL, text: String)) in file.url.lastPathComponent == "prefab-manifest.json" }
        for file in files.filter(isManifest) + files.filter({ !isManifest($0) }) {
            print("created \(display(file.url))")
        }
        var steps: [String]
        switch language {
        case .swift:
            steps = ["swift build", "swift test --filter \(testTypeName)"]
        case .python:
            steps = ["cd \(display(folder)) && python3 -m pytest"]
        }
        steps.append(
            "swift run prefab-gateway serve" + (servePrefabsOption ? " --prefabs \(display(prefabsDirectory))" : ""))
        steps.append(#"curl -N -X POST localhost:8080/invoke/\#(name) -d '{"inputs":{"items":["a","b","c"]}}'"#)
        print("\nnext steps:")
        for step in steps { print("  \(step)") }
        print(
            language == .swift
                ? "(the build registers the new folder; restart a running gateway to serve it)"
                : "(restart a running gateway to serve it)")
        print("then make it yours: the code, its test, and the manifest's parameters and descriptions.")
    }

    /// `url` relative to the working directory when it is inside it.
    func display(_ url: URL) -> String {
        let path = url.standardizedFileURL.path
        let current = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).standardizedFileURL.path
        if path == current { return "." }
        return path.hasPrefix(current + "/") ? String(path.dropFirst(current.count + 1)) : path
    }
}

/// The generated files. Every Swift line is formatted as `swift format` would (names are at most
/// `ScaffoldName.maximumLength` long), so CI's lint passes on them as they are.
private enum ScaffoldTemplate {
    static func manifest(_ scaffold: Scaffold) -> String {
        let name = JSONValue.string(scaffold.name).jsonString
        let description = JSONValue.string(scaffold.description).jsonString
        return """
            {
              "name": \(name),
              "version": "0.1.0",
              "description": \(description),
              "functions": [
                {
                  "name": \(name),
                  "description": \(description),
                  "streaming": true,
                  "parameters": [
                    { "name": "items", "type": "array", "required": true, "description": "The items to process." },
                    { "name": "delay_ms", "type": "integer", "required": false, "default": 0, "description": "Time spent on each item, in milliseconds." }
                  ],
                  "returns": { "type": "object", "description": "done carries {\\"total\\", \\"results\\"}: one result per item." }
                }
              ]
            }

            """
    }

    static func swiftCode(_ scaffold: Scaffold) -> String {
        """
        import PrefabKit

        /// The `\(scaffold.name)` prefab, made by `prefab-gateway new`.
        /// Replace the example work with yours. The registry finds this type by the prefab folder's name
        /// and the function by its name in the manifest, so keep the names in step.
        enum \(scaffold.typeName) {
            /// A streaming function ("streaming": true): it yields its events through `context`. The inputs
            /// arrive checked against the manifest's parameters, with their defaults applied.
            static func \(scaffold.memberName)(
                _ inputs: PrefabInputs, _ context: PrefabContext
            ) throws {
                let items = try inputs.array("items")
                let delay = try inputs.int("delay_ms")
                try context.yield(.start(["total": .int(items.count)]))
                var results: [JSONValue] = []
                for (index, item) in items.enumerated() {
                    // A sleep that a cancel, or the client leaving, interrupts by throwing.
                    try context.sleep(for: .milliseconds(delay))
                    // Do the real work on one item here; throw PrefabError("MY_CODE", "why") to fail the call.
                    let result = item
                    results.append(result)
                    try context.yield(
                        .progress(
                            current: index + 1, total: items.count, message: "processed \\(item.jsonString)",
                            extra: ["item": item])
                    )
                }
                // The done event's data is the result the client receives.
                try context.yield(.done(["total": .int(items.count), "results": .array(results)]))
            }
        }

        """
    }

    static func swiftTest(_ scaffold: Scaffold) -> String {
        // `swift format` breaks this line before the member when it is too long.
        var function = "    let function = \(scaffold.typeName).\(scaffold.memberName)"
        if function.count > 120 {
            function = "    let function = \(scaffold.typeName)\n        .\(scaffold.memberName)"
        }
        return """
            import PrefabKit
            import Testing

            @testable import Prefabs

            /// Tests of the `\(scaffold.name)` prefab.
            /// Made by `prefab-gateway new`: keep them in step with the code.
            @Suite("\(scaffold.name) prefab")
            struct \(scaffold.testTypeName) {
            \(function)

                @Test("start, a progress event per item, then done with the results")
                func progressPerItem() throws {
                    let events = try collect(function, inputs: ["items": ["a", "b", "c"], "delay_ms": 0])
                    #expect(events.map(\\.type) == ["start", "progress", "progress", "progress", "done"])
                    #expect(events.dropFirst().prefix(3).map { $0.data?["percentage"] } == [33, 66, 100])
                    #expect(events[2].data?["message"] == #"processed "b""#)
                    #expect(events.last?.data == ["total": 3, "results": ["a", "b", "c"]])
                }

                @Test("no items: start, then done with no results")
                func noItems() throws {
                    let events = try collect(function, inputs: ["items": [], "delay_ms": 0])
                    #expect(events == [.start(["total": 0]), .done(["total": 0, "results": []])])
                }

                @Test("missing items ends the call with an INVALID_INPUTS error")
                func missingItems() throws {
                    let events = try collect(function, inputs: ["delay_ms": 0])
                    #expect(events == [.error("input 'items' is missing", code: "INVALID_INPUTS")])
                }
            }

            """
    }

    static func pythonCode(_ scaffold: Scaffold) -> String {
        """
        \"\"\"The `\(scaffold.name)` prefab, made by `prefab-gateway new`: replace the example work with yours.

        The gateway calls the function with the inputs as keyword arguments (checked against
        prefab-manifest.json, defaults applied) and sends each dict it yields as an event.
        \"\"\"

        import json
        import time


        def \(scaffold.name)(items, delay_ms=0):
            \"\"\"Yields start, a progress event per item, then done with the results.\"\"\"
            total = len(items)
            yield {"type": "start", "data": {"total": total}}
            results = []
            for current, item in enumerate(items, 1):
                time.sleep(delay_ms / 1000)
                # Do the real work on one item here; an exception with an error_code attribute fails the call.
                result = item
                results.append(result)
                yield {
                    "type": "progress",
                    "data": {
                        "current": current,
                        "total": total,
                        "percentage": current * 100 // total,
                        "message": f"processed {json.dumps(item)}",
                        "item": item,
                    },
                }
            # The done event's data is the result the client receives.
            yield {"type": "done", "data": {"total": total, "results": results}}

        """
    }

    static func pythonTest(_ scaffold: Scaffold) -> String {
        // pytest would collect an imported function whose name starts with "test" as a test.
        let (importLine, function) =
            scaffold.name.hasPrefix("test")
            ? ("import main", "main.\(scaffold.name)") : ("from main import \(scaffold.name)", scaffold.name)
        return """
            \(importLine)


            def test_yields_start_a_progress_per_item_and_done():
                events = list(\(function)(["a", "b", "c"]))
                assert [event["type"] for event in events] == ["start", "progress", "progress", "progress", "done"]
                assert [event["data"]["percentage"] for event in events[1:4]] == [33, 66, 100]
                assert events[2]["data"]["message"] == 'processed "b"'
                assert events[-1] == {"type": "done", "data": {"total": 3, "results": ["a", "b", "c"]}}


            def test_no_items_yields_start_and_done():
                assert list(\(function)([])) == [
                    {"type": "start", "data": {"total": 0}},
                    {"type": "done", "data": {"total": 0, "results": []}},
                ]

            """
    }
}
