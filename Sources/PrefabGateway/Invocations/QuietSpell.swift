/// Tells when the gateway has gone quiet: no call running and none started for `after`. Fed the
/// gateway's call activity now and then, it says once per quiet spell that the spell has begun, so
/// that the memory a busy spell brought in can be given back while nothing needs it.
public struct QuietSpell: Sendable {
    /// Calls started so far, and those running.
    public struct Activity: Equatable, Sendable {
        public var started: Int
        public var running: Int

        public init(started: Int, running: Int) {
            self.started = started
            self.running = running
        }
    }

    public let after: Duration
    private var last: Activity?
    private var quietSince: ContinuousClock.Instant?
    private var noticed = false

    public init(after: Duration) {
        self.after = after
    }

    /// True once per quiet spell: the first time `activity` has not changed, with no call running,
    /// for `after`. Any call started since the last look ends the spell.
    public mutating func hasBegun(_ activity: Activity, at now: ContinuousClock.Instant = .now) -> Bool {
        defer { last = activity }
        guard activity.running == 0, activity == last, let quietSince else {
            quietSince = activity.running == 0 ? now : nil
            noticed = false
            return false
        }
        guard !noticed, now - quietSince >= after else { return false }
        noticed = true
        return true
    }
}
