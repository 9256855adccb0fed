import PrefabClient
import PrefabKit
import Testing

@Suite struct EventPrinterTests {
    static func progress(_ current: Int, of total: Int, _ message: String? = nil) -> PrefabEvent {
        .progress(current: current, total: total, message: message)
    }

    @Test func theBarShowsPercentageCountAndMessageWithinTheWidth() {
        let bar = ProgressBar(data: Self.progress(9, of: 20, "item 9").data)
        #expect(bar.render(width: 80, barWidth: 10) == "[████░░░░░░]  45%  9/20  item 9")
        #expect(bar.render(width: 20, barWidth: 10).count == 20)
        #expect(bar.render(width: 20, barWidth: 10).hasSuffix("…"))
        #expect(bar.plain == "progress 45% 9/20 item 9")
    }

    @Test func aPercentageIsComputedWhenMissingAndClamped() {
        #expect(ProgressBar(data: ["current": 1, "total": 4]).percentage == 25)
        #expect(ProgressBar(data: ["percentage": 250]).percentage == 100)
        #expect(ProgressBar(data: nil).percentage == 0)
    }

    @Test func inATerminalTheBarIsRedrawnInPlaceAndErasedForText() {
        var printer = EventPrinter(style: .terminal(width: 60))
        let first = printer.render(Self.progress(1, of: 2), raw: "")
        #expect(first == [.out("\r\u{1B}[2K" + ProgressBar(data: Self.progress(1, of: 2).data).render(width: 60))])
        // Streamed text first erases the bar; the next bar starts on a new line.
        #expect(printer.render(.content("hello"), raw: "") == [.out("\r\u{1B}[2Khello")])
        #expect(
            printer.render(Self.progress(2, of: 2), raw: "").first
                == .out("\n\r\u{1B}[2K" + ProgressBar(data: Self.progress(2, of: 2).data).render(width: 60)))
        #expect(printer.render(.done(["ok": true]), raw: "") == [.out("\r\u{1B}[2K✔ done {\"ok\":true}\n")])
        #expect(printer.outcome == .done)
    }

    @Test func pipedOutputIsPlainLines() {
        var printer = EventPrinter(style: .plain)
        #expect(printer.render(.start(["total": 2]), raw: "") == [.out("started {\"total\":2}\n")])
        #expect(printer.render(Self.progress(1, of: 2), raw: "") == [.out("progress 50% 1/2\n")])
        #expect(
            printer.render(.error("disk full", code: "DISK_FULL"), raw: "") == [
                .out(""), .err("error DISK_FULL: disk full\n"),
            ])
        #expect(printer.outcome == .failed(code: "DISK_FULL"))
        #expect(printer.outcome?.exitStatus == 1)
    }

    @Test func jsonStylePrintsTheRawEventUnchanged() {
        var printer = EventPrinter(style: .json)
        let raw = #"{"type":"progress","data":{"current":1,"total":2}}"#
        #expect(printer.render(Self.progress(1, of: 2), raw: raw) == [.out(raw + "\n")])
        _ = printer.render(.error("stop", code: "CANCELLED"), raw: "{}")
        #expect(printer.outcome == .cancelled)
        #expect(printer.outcome?.exitStatus == 130)
    }

    @Test func filesAreListedWithTheirURLs() {
        var printer = EventPrinter(style: .plain)
        let files = PrefabEvent.files([["name": "a.csv", "size": 3, "url": "http://x/files/1/a.csv"]])
        #expect(printer.render(files, raw: "") == [.out("files:\n  a.csv (3 bytes)  http://x/files/1/a.csv\n")])
    }

    @Test func aQuestionIsShownWithNumberedOptionsAndAnsweredByNumberOrText() throws {
        let question = try #require(QuestionPrompt(.question("Template?", id: "template", options: ["cli", "web"])))
        #expect(question.lines == ["? Template?", "  1) cli", "  2) web"])
        #expect(question.answer(for: "2") == "web")
        #expect(question.answer(for: " cli ") == "cli")
        #expect(question.answer(for: "3") == nil)
        #expect(question.answer(for: "java") == nil)
        let open = try #require(QuestionPrompt(.question("Name?", id: "name")))
        #expect(open.answer(for: "my project ") == "my project")
        #expect(QuestionPrompt(PrefabEvent("question", data: "no id")) == nil)
    }
}
