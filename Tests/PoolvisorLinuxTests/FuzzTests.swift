import Foundation
import Glibc
import PoolvisorConfig
import PoolvisorCore
import Testing

@testable import PoolvisorControl
@testable import PoolvisorDaemon
@testable import PoolvisorLinux
@testable import PoolvisorScalers
@testable import PoolvisorSystem

/// Seeded mutation fuzzing of what poolvisor reads from others: the pools file (text → TOML → spec →
/// a reconciler that starts, runs and reloads it) and the control protocol's request line. A crash is
/// the test process dying; a hang, an input that takes over `maximumSeconds`; a refused file without a
/// located diagnostic, a failure.
///
/// Each run is deterministic for its seed. By default a few seconds each (a smoke test in the suite);
/// `POOLVISOR_FUZZ_SECONDS` sets the time per target and `POOLVISOR_FUZZ_SEED` the seed (scripts/test
/// runs them for longer in a phase of their own; `scripts/fuzz` for as long as you like). A failing
/// input is written to `$TMPDIR/poolvisor-fuzz-*` and its path printed.
@Suite struct FuzzTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let seconds = Double(ProcessInfo.processInfo.environment["POOLVISOR_FUZZ_SECONDS"] ?? "") ?? 3
    static let seed = UInt64(ProcessInfo.processInfo.environment["POOLVISOR_FUZZ_SEED"] ?? "") ?? UInt64(UInt32.random(in: 0...UInt32.max))
    /// The slowest any one input may be (the largest allowed file parses in milliseconds).
    static let maximumSeconds = 2.0

    // MARK: - The pools file

    static var poolsCorpus: [String] {
        var files = [repository + "/pools.toml.example"]
        for dir in ["examples", "Tests/FuzzCorpus/pools"] {
            let base = repository + "/" + dir
            for entry in (try? FileManager.default.subpathsOfDirectory(atPath: base)) ?? [] where entry.hasSuffix(".toml") && !entry.contains(".venv") {
                files.append(base + "/" + entry)
            }
        }
        return files.compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }
    }

    /// Pieces of TOML and of hostile values that mutations insert.
    static let tokens: [String] = [
        "[", "]", "{", "}", "\"", "'", "\"\"\"", "'''", "=", ".", ",", "\n", "#", " ", "\\", "\\u0000", "\\u202E", "\\n",
        "inf", "-inf", "nan", "1e308", "1e400", "-1", "0", "0.0001", "1e-320", "9223372036854775807", "-9223372036854775808",
        "99999999999999999999", "0o777", "0x7fffffff", "1979-05-27T07:32:00Z", "07:32:00", "true", "\"\"", "[]", "{}",
        "\"1e400m\"", "\"500m\"", "\"16Gi\"", "\"9999999Ti\"", "\"100%\"", "\"-5%\"", "\"*/99999999999999999999 * * * *\"",
        "\"/dev/zero\"", "\"/proc/self/environ\"", "\"/\"", "\"relative/path\"", "\"0-4095\"", "\"SIGKILL\"",
        "[pools.x]\ncommand = [\"/bin/true\"]\n", "[[pools]]", "[pools.x.autoscaling]\nmax_replicas = 3\n",
        String(repeating: "[", count: 40), String(repeating: "a.", count: 40) + "a = 1\n", String(repeating: "{a=", count: 40),
        "replicas", "cpu_limit", "cpu_request", "memory_limit", "pids_limit", "drain_seconds", "max_replicas", "min_replicas",
        "polling_interval", "cooldown_period", "target_query_value", "list_length", "stabilization_window_seconds",
        "period_seconds", "value", "initial_seconds", "max_seconds", "umask", "nice", "cpus", "env_file", "control_socket",
        "max_unavailable", "min_available", "watchdog_seconds", "fallback_replicas", "desired_replicas", "start", "end",
        "queues", "serves", "worker_subscribe", "\"arq:queue\"",
    ]

    /// Mutated text through the path a reload takes: the size and depth checks, the parser in its
    /// own process (`poolvisor parse-toml`: toml++ aborts on some inputs, such as `[\\`, in a debug
    /// build, which is what that process is for), the decoder, then a reconciler running the result.
    @Test func poolsFileTexts() throws {
        let corpus = Self.poolsCorpus
        try #require(corpus.count >= 7, "the corpus: pools.toml.example, examples/*/pools.toml, Tests/FuzzCorpus/pools")
        let parser = PoolsFileLoader.Parser.childProcess(executable: try #require(PoolvisorBinary.path, "build poolvisor first"))
        var random = SplitMix64(seed: Self.seed)
        let deadline = Date().addingTimeInterval(Self.seconds)
        var runs = 0
        var refused = 0
        while Date() < deadline || runs < corpus.count {
            let text = runs < corpus.count ? corpus[runs] : Self.mutate(corpus[random.below(corpus.count)], corpus: corpus, &random)
            runs += 1
            let started = Date()
            let result = PoolsFileLoader.load(text: text, path: Self.path, parser: parser)
            if let file = result.file { Self.exercise(file, &random) } else { refused += 1 }
            var problems = Self.problems(with: result, located: true)
            let took = Date().timeIntervalSince(started)
            if took > Self.maximumSeconds { problems.append("took \(took) s") }
            if !problems.isEmpty {
                Issue.record("seed \(Self.seed), run \(runs), input saved to \(Self.save(text, kind: "pools")): \(problems.joined(separator: "; "))")
                return
            }
        }
        print("fuzzed \(runs) pools files in \(Self.seconds) s with seed \(Self.seed): \(refused) refused")
    }

    /// Mutated documents straight into the decoder and a reconciler, in this process and fast: the
    /// corpus parsed once, then values replaced by hostile ones, keys renamed, tables moved and nested.
    @Test func poolsFileDocuments() throws {
        let documents: [ConfigTable] = Self.poolsCorpus.compactMap {
            if case .parsed(let table, _) = TOMLDocument.parse($0) { return table }
            return nil
        }
        try #require(documents.count >= 7)
        var random = SplitMix64(seed: Self.seed)
        let deadline = Date().addingTimeInterval(Self.seconds)
        var runs = 0
        var refused = 0
        while Date() < deadline {
            var document = documents[random.below(documents.count)]
            for _ in 0...random.below(6) { document = Self.mutate(document, depth: 0, &random) }
            runs += 1
            // A crash ends the test process: the document that did it is left here.
            _ = FileManager.default.createFile(atPath: Self.current("document"), contents: Data(ParsedDocument.parsed(document, unreadableKeys: []).wire))
            let started = Date()
            let result = PoolsFileDecoder.decode(document, text: "", file: Self.path, host: LinuxHost())
            if let file = result.file { Self.exercise(file, &random) } else { refused += 1 }
            var problems = Self.problems(with: result, located: false)
            let took = Date().timeIntervalSince(started)
            if took > Self.maximumSeconds { problems.append("took \(took) s") }
            if !problems.isEmpty {
                let json = String(decoding: ParsedDocument.parsed(document, unreadableKeys: []).wire, as: UTF8.self)
                Issue.record("seed \(Self.seed), run \(runs), document saved to \(Self.save(json, kind: "document")): \(problems.joined(separator: "; "))")
                return
            }
        }
        print("fuzzed \(runs) pools documents in \(Self.seconds) s with seed \(Self.seed): \(refused) refused")
    }

    static let path = "/tmp/poolvisor-fuzz/pools.toml"

    /// What is wrong with how a file was refused or accepted.
    static func problems(with result: PoolsFileDecoder.Result, located: Bool) -> [String] {
        var problems: [String] = []
        if result.file == nil && result.diagnostics.errors.isEmpty { problems.append("refused without an error") }
        for d in result.diagnostics.errors {
            if d.location.file != path { problems.append("an error about another file: \(d)") }
            if located && d.location.line == 0 && !fileLevel(d) { problems.append("an error without a line: \(d)") }
        }
        for d in result.diagnostics where d.description.unicodeScalars.contains(where: { $0.value < 0x20 || (0x202A...0x202E).contains($0.value) }) {
            problems.append("an unescaped control character: \(d.description.debugDescription)")
        }
        return problems
    }

    static let hostileValues: [ConfigValue] = [
        .integer(Int.max), .integer(Int.min), .integer(-1), .integer(0), .integer(10_001), .float(.infinity), .float(-.infinity),
        .float(.nan), .float(1e308), .float(.leastNonzeroMagnitude), .float(-0.0), .boolean(true), .string(""), .string("\u{0}"),
        .string("\u{202E}x"), .string("1e400m"), .string("9999999Ti"), .string("-5%"), .string("101%"), .string("/dev/zero"),
        .string("*/99999999999999999999 * * * *"), .string("0-4095"), .string("SIGKILL"), .array([]), .array([.integer(1)]),
        .table(ConfigTable()), .other(typeName: "date"), .string(String(repeating: "x", count: 5000)),
    ]

    static func mutate(_ table: ConfigTable, depth: Int, _ random: inout SplitMix64) -> ConfigTable {
        var entries = table.entries
        guard !entries.isEmpty else { return ConfigTable([("x", hostileValues[random.below(hostileValues.count)])]) }
        let i = random.below(entries.count)
        switch random.below(7) {
        case 0, 1:  // a hostile value
            entries[i].value = hostileValues[random.below(hostileValues.count)]
        case 2:  // into a sub-table
            if case .table(let t) = entries[i].value, depth < 8 {
                entries[i].value = .table(mutate(t, depth: depth + 1, &random))
            } else {
                entries[i].value = hostileValues[random.below(hostileValues.count)]
            }
        case 3:  // rename the key
            entries[i].key = ["pools", "x", "", "\u{0}", "a\nb", "A", "-", entries[i].key + "s", String(repeating: "p", count: 64)][random.below(9)]
        case 4:  // drop it
            entries.remove(at: i)
        case 5:  // a copy of a sibling under another name, or nested in itself
            entries.append((entries[i].key + "2", entries[random.below(entries.count)].value))
        default:  // an array of it
            entries[i].value = .array(Array(repeating: entries[i].value, count: random.below(3) + 1))
        }
        return ConfigTable(entries)
    }

    /// Errors that are about the file as a whole, not a place in it.
    static func fileLevel(_ d: Diagnostic) -> Bool {
        d.key.isEmpty || d.key == "pools"
    }

    /// Starts a reconciler on the file and drives it a while: spawns succeed, workers crash, deadlines
    /// pass, triggers read extreme values, the file is reloaded and scaled, the supervisor stops.
    static func exercise(_ file: PoolsFile, _ random: inout SplitMix64) {
        var reconciler = Reconciler(file: file, notifyDirectory: "/run/poolvisor-fuzz", seed: random.next())
        var now = Instant(nanoseconds: 1_000_000_000)
        var nextPid: Int32 = 1000
        var running: [Int32] = []
        func feed(_ actions: [Action]) {
            var queue = actions
            var steps = 0
            while !queue.isEmpty && steps < 20_000 {
                steps += 1
                switch queue.removeFirst() {
                case .spawn(let id):
                    _ = reconciler.launch(for: id)
                    nextPid += 1
                    running.append(nextPid)
                    queue += reconciler.handle(.spawned(id, pid: nextPid), at: now)
                case .readTriggers(let pool, _):
                    let value = [0, 1, 1e300, .infinity, .nan, -5][random.below(6)]
                    let samples = [
                        TriggerSample(trigger: "queue", reading: .success(.queue(name: "q", value: value, target: [1, 1e-300, 5][random.below(3)], activation: 0))),
                        TriggerSample(trigger: "cpu", reading: .success(.cpu(utilisation: value, target: 70))),
                    ]
                    queue += reconciler.handle(.triggersRead(pool: pool, samples), at: now)
                case .probe(let run):
                    let outcomes: [ProbeOutcome] = [.success, .failure("HTTP 500"), .failure("exit code 1", output: ["x"])]
                    if random.below(4) != 0 { queue += reconciler.handle(.probed(pid: run.pid, run.kind, attempt: run.attempt, outcomes[random.below(3)]), at: now) }
                case .startJob(let job, let run):
                    nextPid += 1
                    if random.below(3) == 0 {
                        queue += reconciler.handle(.jobSpawnFailed(job: job, run: run, reason: "fuzz"), at: now)
                    } else {
                        running.append(nextPid)
                        queue += reconciler.handle(.jobSpawned(job: job, run: run, pid: nextPid), at: now)
                    }
                case .readClock(let job, _):
                    let time = CivilTime(secondsSinceEpoch: Int64(random.below(2_000_000_000)))
                    queue += reconciler.handle(.clockRead(job: job, time, secondsIntoMinute: Double(random.below(60))), at: now)
                case .fleetHeartbeat:
                    // Members come and go, this host among them or not, or the store fails.
                    let me = file.supervisor.fleet?.member ?? "me"
                    let answers: [Result<[String], ScalerError>] = [
                        .success([me]), .success(["a", me, "z"]), .success(["a"]), .success([]), .failure(ScalerError("fuzz")),
                    ]
                    queue += reconciler.handle(.fleetRead(answers[random.below(answers.count)]), at: now)
                case .signal, .log, .tellSystemd, .forget, .poolsInForce, .cancelProbe, .event, .heartbeat, .fleetLeave, .exit:
                    break
                }
            }
        }
        feed(reconciler.handle(.start, at: now))
        for _ in 0..<12 {
            switch random.below(4) {
            case 0 where !running.isEmpty:
                let pid = running.remove(at: random.below(running.count))
                feed(reconciler.handle(.exited(pid: pid, random.below(2) == 0 ? .exited(1) : .signaled(.kill, coreDumped: false)), at: now))
            case 1:
                if let next = reconciler.nextDeadline { now = max(now, next) }
                feed(reconciler.handle(.deadlineReached, at: now))
            case 2:
                let pool = file.pools.isEmpty ? "none" : file.pools[random.below(file.pools.count)].name
                feed(reconciler.perform(.scale(pool: pool, replicas: random.below(5)), at: now).1)
            default:
                feed(reconciler.perform(.reload(.init(file: file, diagnostics: [])), at: now).1)
            }
            now = now + .milliseconds(Int64(random.below(120_000)))
            _ = reconciler.statusReport(at: now, version: "fuzz", pid: 1, pool: nil) { _ in nil }
        }
        feed(reconciler.handle(.stopRequested(.terminate), at: now))
        for pid in running { feed(reconciler.handle(.exited(pid: pid, .exited(0)), at: now)) }
    }

    static func mutate(_ text: String, corpus: [String], _ random: inout SplitMix64) -> String {
        var bytes = Array(text.utf8)
        for _ in 0...random.below(4) {
            let at = bytes.isEmpty ? 0 : random.below(bytes.count + 1)
            switch random.below(8) {
            case 0 where !bytes.isEmpty:  // flip a byte
                bytes[min(at, bytes.count - 1)] ^= UInt8(1 << random.below(8))
            case 1:  // a random byte
                bytes.insert(UInt8(random.below(256)), at: at)
            case 2, 3:  // a token
                bytes.insert(contentsOf: Array(tokens[random.below(tokens.count)].utf8), at: at)
            case 4 where !bytes.isEmpty:  // delete a span
                let end = min(bytes.count, at + random.below(64) + 1)
                if at < end { bytes.removeSubrange(at..<end) }
            case 5 where !bytes.isEmpty:  // repeat a span elsewhere
                let start = random.below(bytes.count)
                let span = Array(bytes[start..<min(bytes.count, start + random.below(200) + 1)])
                bytes.insert(contentsOf: span, at: random.below(bytes.count + 1))
            case 6:  // splice in lines of another file
                let other = Array(corpus[random.below(corpus.count)].split(separator: "\n", omittingEmptySubsequences: false))
                let from = random.below(other.count)
                let lines = other[from..<min(other.count, from + random.below(12) + 1)].joined(separator: "\n")
                bytes.insert(contentsOf: Array(("\n" + lines + "\n").utf8), at: at)
            default:  // replace a number or a string value on some line with a hostile one
                var lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                let n = random.below(lines.count)
                if let eq = lines[n].firstIndex(of: "=") {
                    lines[n] = String(lines[n][...eq]) + " " + tokens[random.below(42)]
                }
                bytes = Array(lines.joined(separator: "\n").utf8)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: - The control protocol

    static var controlCorpus: [String] {
        let base = repository + "/Tests/FuzzCorpus/control"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []
        return names.sorted().compactMap { try? String(contentsOfFile: base + "/" + $0, encoding: .utf8) }
            .flatMap { $0.split(separator: "\n").map(String.init) }
    }

    static let jsonTokens = [
        "{", "}", "[", "]", "\"", ":", ",", "\\", "\\u0000", "\\ud800", "\\u202e", "1e999", "-0", "null", "true",
        "\"command\"", "\"status\"", "\"reload\"", "\"scale\"", "\"restart\"", "\"pool\"", "\"replicas\"", "\"v\"",
        "99999999999999999999", "-1", "1.5", String(repeating: "[", count: 100), String(repeating: "{\"a\":", count: 100),
    ]

    @Test func controlRequests() throws {
        let corpus = Self.controlCorpus
        try #require(corpus.count >= 5, "the corpus: Tests/FuzzCorpus/control")
        var random = SplitMix64(seed: Self.seed)
        let deadline = Date().addingTimeInterval(Self.seconds)
        var runs = 0
        var accepted = 0
        while Date() < deadline || runs < corpus.count {
            var bytes = Array((runs < corpus.count ? corpus[runs] : corpus[random.below(corpus.count)]).utf8)
            if runs >= corpus.count {
                for _ in 0...random.below(4) {
                    let at = random.below(bytes.count + 1)
                    switch random.below(5) {
                    case 0 where !bytes.isEmpty: bytes[min(at, bytes.count - 1)] ^= UInt8(1 << random.below(8))
                    case 1: bytes.insert(UInt8(random.below(256)), at: at)
                    case 2 where !bytes.isEmpty: bytes.removeSubrange(at..<min(bytes.count, at + random.below(16) + 1))
                    default: bytes.insert(contentsOf: Array(Self.jsonTokens[random.below(Self.jsonTokens.count)].utf8), at: at)
                    }
                }
            }
            runs += 1
            _ = FileManager.default.createFile(atPath: Self.current("control"), contents: Data(bytes))
            let started = Date()
            if case .success = ControlProtocol.Request.parse(bytes) { accepted += 1 }
            if Date().timeIntervalSince(started) > Self.maximumSeconds {
                let saved = Self.save(String(decoding: bytes, as: UTF8.self), kind: "control")
                Issue.record("seed \(Self.seed), run \(runs): a request took over \(Self.maximumSeconds) s to parse; saved to \(saved)")
                return
            }
        }
        print("fuzzed \(runs) control requests in \(Self.seconds) s with seed \(Self.seed): \(accepted) accepted")
    }

    /// Where the input being tried is kept, so that the one a crash happened on can be found.
    static func current(_ kind: String) -> String {
        (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/poolvisor-fuzz-\(kind)-current-\(getpid())"
    }

    static func save(_ text: String, kind: String) -> String {
        let path = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/poolvisor-fuzz-\(kind)-\(seed)-\(UInt32.random(in: 0...UInt32.max))"
        if !FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) { return "(could not save it to \(path))" }
        return path
    }
}

/// A small, fast, seedable generator (Steele, Lea and Flood's SplitMix64), so a run can be repeated.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }
}
