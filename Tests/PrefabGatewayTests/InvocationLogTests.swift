import Testing

@testable import PrefabGateway

/// The invocation log line's `duration_ms`, written without Foundation's `String(format:)`: the
/// same text `"%.1f"` gives.
@Suite struct InvocationLogTests {
    @Test func durationsAreMillisecondsWithOneDecimal() {
        let cases: [(Duration, String)] = [
            (.zero, "0.0"), (.microseconds(40), "0.0"), (.microseconds(60), "0.1"), (.microseconds(5_740), "5.7"),
            (.microseconds(5_760), "5.8"), (.microseconds(9_960), "10.0"), (.milliseconds(250), "250.0"),
            (.seconds(3_600), "3600000.0"),
        ]
        for (duration, text) in cases {
            #expect(Gateway.millisecondsText(duration) == text, "\(duration)")
        }
    }
}
