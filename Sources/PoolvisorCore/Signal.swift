/// The Linux signal numbers the core talks about (x86_64 and aarch64 agree on all of these).
public struct Signal: Hashable, Sendable, CustomStringConvertible, Codable {
    public var number: Int32
    public init(_ number: Int32) { self.number = number }

    public static let hangup = Signal(1)
    public static let interrupt = Signal(2)
    public static let quit = Signal(3)
    public static let abort = Signal(6)
    public static let kill = Signal(9)
    public static let user1 = Signal(10)
    public static let user2 = Signal(12)
    public static let terminate = Signal(15)

    private static let names: [Int32: String] = [
        1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
        8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
        14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP",
        20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ",
        26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
    ]

    /// "SIGTERM", or "signal 40" for real-time and unknown signals.
    public var description: String { Signal.names[number] ?? "signal \(number)" }

    /// Parses "SIGTERM", "TERM" or "term".
    public init?(name: String) {
        let upper = name.uppercased()
        let full = upper.hasPrefix("SIG") ? upper : "SIG" + upper
        guard let entry = Signal.names.first(where: { $0.value == full }) else { return nil }
        self.number = entry.key
    }
}
