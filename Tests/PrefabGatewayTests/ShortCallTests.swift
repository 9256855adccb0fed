import Testing

@testable import PrefabGateway

/// The pieces of a short call's path that were rewritten for speed keep their meaning.
@Suite struct ShortCallTests {
    /// Ids are 32 lowercase hex digits, the high bits of each half included (a digit written in the
    /// wrong place, or a leading zero dropped, shows in 2,000 ids), and do not repeat.
    @Test func invocationIdsAre32HexDigitsAndDistinct() {
        let ids = (0..<2000).map { _ in InvocationID.make() }
        #expect(ids.allSatisfy { InvocationID.isValid($0) })
        #expect(Set(ids).count == ids.count)
        for position in [0, 16] {
            // 2,000 ids: each of the 16 digits turns up first in a half with near certainty.
            let leading = Set(ids.map { $0.utf8[$0.utf8.index($0.utf8.startIndex, offsetBy: position)] })
            #expect(leading.count == 16)
        }
    }

    @Test(
        arguments: [
            (nil, false),
            ("", false),
            ("*/*", false),
            ("text/event-stream", false),
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("text/html, application/json;q=0.9", true),
            ("application/json, text/event-stream", false),
            ("application/jso", false),
        ] as [(String?, Bool)])
    func anAcceptHeaderAsksForJSONOnlyWithoutAStream(accept: String?, json: Bool) {
        #expect(Gateway.wantsJSON(accept) == json)
    }
}
