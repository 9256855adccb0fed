import ArgumentParser
import Foundation
import PrefabClient
import PrefabKit
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// `prefab-gateway invoke <name>`: calls a function on a running gateway and shows its run.
struct Invoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Call a function on a running gateway and show its events as they come.",
        discussion: """
            Inputs are typed by the function's parameters: -i n=3 is a number for an integer, \
            -i items='["a","b"]' a JSON array. Questions are asked at the prompt (numbered options), \
            or answered ahead with --answer id=value. Ctrl-C cancels the run on the server. Exit \
            status: 0 done, 1 the function failed, 2 the call was refused, 130 cancelled.
            """
    )

    @Argument(help: "The function to call (prefab-gateway list, or GET /manifest).")
    var function: String

    @Option(name: [.customShort("i"), .customLong("input")], help: "An input as name=value (repeatable).")
    var inputs: [String] = []

    @Option(name: .customLong("inputs-json"), help: "All inputs as one JSON object; - reads it from stdin.")
    var inputsJSON: String?

    @Option(name: .customLong("answer"), help: "Answers a question ahead: questionId=value (repeatable).")
    var answers: [String] = []

    @Option(help: "The gateway (env PREFAB_GATEWAY_URL; default http://127.0.0.1:8080).")
    var url: String?

    @Option(help: "The API key, when the gateway requires one (env PREFAB_GATEWAY_API_KEY, which keeps it out of ps).")
    var apiKey: String?

    @Flag(help: "Print the raw events as JSON lines, for scripts.")
    var json = false

    @Option(help: "Save the output files into this directory.")
    var download: String?

    func run() async throws {
        let client = GatewayClient(
            url: url ?? Environment.value("PREFAB_GATEWAY_URL") ?? "http://127.0.0.1:8080",
            apiKey: apiKey ?? Environment.value("PREFAB_GATEWAY_API_KEY")
        )
        let terminal = Terminal()
        var printer = EventPrinter(
            style: json ? .json : terminal.isInteractive ? .terminal(width: terminal.width) : .plain)
        let callInputs = try await requestInputs(client)
        let reply: GatewayClient.Reply
        do {
            reply = try await client.invoke(function, inputs: callInputs)
        } catch let error as ServerError {
            terminal.error("✘ the call was refused: \(error)")
            throw ExitCode(2)
        } catch {
            terminal.error("✘ cannot reach the gateway at \(client.baseURL): \(error)")
            throw ExitCode(2)
        }

        switch reply {
        case .result(let id, let answer):
            try await finishResult(answer, invocationId: id, client: client, terminal: terminal)
        case .stream(let id, let body):
            let interrupt = CancelOnInterrupt(client: client, invocationId: id, terminal: terminal)
            defer { interrupt.stop() }
            var parser = SSEParser()
            var presetAnswers = try parsedAnswers()
            var files: [JSONValue] = []
            for try await chunk in body {
                for message in parser.feed(chunk.readableBytesView) {
                    guard let event = (try? JSONValue(parsing: message.data)).flatMap(PrefabEvent.init(json:)) else {
                        continue
                    }
                    terminal.write(printer.render(event, raw: message.data))
                    if event.type == PrefabEvent.files { files += event.data?.arrayValue ?? [] }
                    if event.type == PrefabEvent.question, let question = QuestionPrompt(event) {
                        terminal.write([.out(printer.lineStart())])
                        try await ask(
                            question, invocationId: id, client: client, terminal: terminal, presets: &presetAnswers)
                    }
                }
            }
            guard let outcome = printer.outcome else {
                terminal.error("✘ the stream ended without a terminal event (the connection was lost)")
                throw ExitCode(2)
            }
            if outcome == .done, let download {
                try await save(files, into: download, client: client, terminal: terminal)
            }
            if outcome != .done { throw ExitCode(outcome.exitStatus) }
        }
    }

    /// The inputs from `--inputs-json` and `-i`, typed by the function's parameters.
    private func requestInputs(_ client: GatewayClient) async throws -> [String: JSONValue] {
        var base: [String: JSONValue] = [:]
        if let inputsJSON {
            let text =
                inputsJSON == "-"
                ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self) : inputsJSON
            guard let object = try? JSONValue(parsing: text).objectValue else {
                throw ValidationError("--inputs-json must be one JSON object, e.g. '{\"items\": [\"a\"]}'")
            }
            base = object
        }
        guard !inputs.isEmpty else { return base }
        let manifest: JSONValue
        do {
            manifest = try await client.manifest()
        } catch {
            Terminal().error("✘ cannot read \(client.baseURL)/manifest to type the inputs: \(error)")
            throw ExitCode(2)
        }
        guard let arguments = InputArguments(manifest: manifest, function: function) else {
            let names = manifest["functions"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
            Terminal().error(
                "✘ no function '\(function)' on \(client.baseURL); functions: \(names.sorted().joined(separator: ", "))"
            )
            throw ExitCode(2)
        }
        do {
            return try arguments.inputs(inputs, base: base)
        } catch {
            throw ValidationError(error.description)
        }
    }

    private func parsedAnswers() throws -> [String: String] {
        var presets: [String: String] = [:]
        for answer in answers {
            guard let equals = answer.firstIndex(of: "="), equals != answer.startIndex else {
                throw ValidationError("--answer takes questionId=value, not '\(answer)'")
            }
            presets[String(answer[..<equals])] = String(answer[answer.index(after: equals)...])
        }
        return presets
    }

    /// Asks at the prompt (or takes the preset answer) until the gateway accepts an answer.
    private func ask(
        _ question: QuestionPrompt,
        invocationId: String,
        client: GatewayClient,
        terminal: Terminal,
        presets: inout [String: String]
    ) async throws {
        while true {
            let typed: String
            if let preset = presets.removeValue(forKey: question.id) {
                typed = preset
                terminal.prompt(question.lines.joined(separator: "\n") + "\n> " + preset + "\n")
            } else if inputsJSON == "-" {
                terminal.error(
                    "✘ question '\(question.id)' needs an answer: stdin held the inputs, so pass --answer \(question.id)=..."
                )
                try? await client.cancel(invocationId)
                throw ExitCode(2)
            } else {
                terminal.prompt(question.lines.joined(separator: "\n") + "\n> ")
                guard let line = await terminal.readLine() else {
                    terminal.error("✘ no answer to question '\(question.id)' (stdin ended): cancelling")
                    try? await client.cancel(invocationId)
                    return
                }
                typed = line
            }
            guard let value = question.answer(for: typed) else {
                terminal.error("  choose a number from 1 to \(question.options.count), or type an option")
                continue
            }
            do {
                try await client.answer(invocationId, questionId: question.id, value: value)
                return
            } catch let error as ServerError where error.status == 422 || error.status == 400 {
                terminal.error("  \(error.message)")
            } catch let error as ServerError {
                terminal.error("✘ the answer was not taken: \(error)")
                return
            }
        }
    }

    private func finishResult(_ answer: JSONValue, invocationId: String, client: GatewayClient, terminal: Terminal)
        async throws
    {
        if json {
            terminal.write([.out(answer.jsonString + "\n")])
        } else if answer["success"]?.boolValue == true {
            let result = answer["result"] ?? .null
            terminal.write([.out("✔ " + (result.stringValue ?? result.jsonString(pretty: true)) + "\n")])
        } else {
            let error = answer["error"]
            terminal.error(
                "✘ error \(error?["code"]?.stringValue ?? "UNEXPECTED_ERROR"): \(error?["message"]?.stringValue ?? "")")
        }
        let files = answer["files"]?.arrayValue ?? []
        if !json {
            for file in files {
                terminal.write([.out("  \(file["name"]?.stringValue ?? "?")  \(file["url"]?.stringValue ?? "")\n")])
            }
        }
        if let download { try await save(files, into: download, client: client, terminal: terminal) }
        if answer["success"]?.boolValue != true { throw ExitCode(1) }
    }

    private func save(_ files: [JSONValue], into directory: String, client: GatewayClient, terminal: Terminal)
        async throws
    {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for file in files {
            guard let name = file["name"]?.stringValue, let url = file["url"]?.stringValue else { continue }
            // Only the file's own name: a name with a path in it cannot write outside the directory.
            let target = (directory as NSString).appendingPathComponent((name as NSString).lastPathComponent)
            let size = try await client.download(url, to: target)
            terminal.prompt("saved \(target) (\(size) bytes)\n")
        }
    }
}

/// The client's terminal: whether it is one, its width, output that appears at once, and lines
/// read without blocking the program.
struct Terminal: Sendable {
    let isInteractive = isatty(STDOUT_FILENO) == 1

    var width: Int {
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        return Int(ProcessInfo.processInfo.environment["COLUMNS"] ?? "") ?? 80
    }

    func write(_ outputs: [EventPrinter.Output]) {
        for output in outputs {
            switch output {
            case .out(let text): FileHandle.standardOutput.write(Data(text.utf8))
            case .err(let text): FileHandle.standardError.write(Data(text.utf8))
            }
        }
    }

    /// A prompt: on the terminal with the events, or on stderr when stdout is a pipe or a file.
    func prompt(_ text: String) {
        write([isInteractive ? .out(text) : .err(text)])
    }

    func error(_ text: String) {
        write([.err(text + "\n")])
    }

    func readLine() async -> String? {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: Swift.readLine()) }
        }
    }
}

/// Ctrl-C cancels the invocation on the server (the stream then ends with `CANCELLED`); a second
/// Ctrl-C quits at once.
final class CancelOnInterrupt: @unchecked Sendable {  // a dispatch source is thread-safe
    private let source: any DispatchSourceSignal

    init(client: GatewayClient, invocationId: String, terminal: Terminal) {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        let pressed = Mutex(false)
        source.setEventHandler {
            if pressed.withLock({ $0 }) { exit(130) }
            pressed.withLock { $0 = true }
            terminal.error("\ncancelling \(invocationId) (Ctrl-C again to quit at once)")
            Task { try? await client.cancel(invocationId) }
        }
        source.resume()
    }

    func stop() {
        source.cancel()
        signal(SIGINT, SIG_DFL)
    }
}
