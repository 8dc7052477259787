import Foundation
import Glibc
import Testing
import TestServers

/// A queue library with an example in examples/<name>/, and what the tests found differs between them.
struct QueueLibrary: Sendable, CustomStringConvertible {
    let name: String
    /// Where `enqueue.py --delay` puts a job.
    let delayed: Delayed
    /// The Redis list where a job stays, never run, when the worker took it off the queue at the very
    /// moment the stop signal came (RQ: the signal finds the worker not yet busy and stops it at once).
    var strandedAtStop: String? = nil
    var description: String { name }

    enum Delayed {
        /// In Redis apart from the ready jobs: `count = "ready+delayed"` adds them.
        case apart
        /// In the queue with the ready ones, until a worker takes and holds it (Celery's countdown).
        case withTheReady
        /// Outside the queue, in a scheduler's keys (TaskIQ): no `count` reaches them.
        case outsideTheQueue
    }

    /// Every library, or those named in POOLVISOR_TEST_EXAMPLES ("arq,rq"), for working on one.
    static var all: [QueueLibrary] {
        guard let only = ProcessInfo.processInfo.environment["POOLVISOR_TEST_EXAMPLES"] else { return known }
        let names = Set(only.split(separator: ",").map(String.init))
        return known.filter { names.contains($0.name) }
    }

    static let known: [QueueLibrary] = [
        QueueLibrary(name: "arq", delayed: .apart),
        QueueLibrary(name: "dramatiq", delayed: .apart),
        QueueLibrary(name: "taskiq", delayed: .outsideTheQueue),
        QueueLibrary(name: "bullmq", delayed: .apart),
        QueueLibrary(name: "celery", delayed: .withTheReady),
        QueueLibrary(name: "rq", delayed: .apart, strandedAtStop: "rq:queue:system:intermediate"),
    ]
}

/// examples/<library>/ run as a test: its own pools.toml (a few values changed for speed, each of
/// which must be in the file exactly once), its app and its venv, against a Redis of the test's.
struct Example {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    let library: QueueLibrary
    let directory: String
    let redis: RedisServer
    /// Values changed in the example's pools.toml, by key.
    var changes: [String: String]

    init(_ library: QueueLibrary, redis: RedisServer, changes: [String: String] = [:]) throws {
        self.library = library
        self.redis = redis
        self.changes = changes
        directory = Self.root + "/examples/" + library.name
        guard access(directory + "/.venv/bin/python", X_OK) == 0 else {
            throw TestServerError("examples/\(library.name)/.venv is missing: scripts/test makes it (or scripts/example \(library.name))")
        }
    }

    /// The example's pools.toml with `changes` applied, run from the example's directory.
    func poolsFile() throws -> String {
        let original = try String(contentsOfFile: directory + "/pools.toml", encoding: .utf8)
        var lines = original.components(separatedBy: "\n")
        for (key, value) in changes.sorted(by: { $0.key < $1.key }) {
            let matches = lines.indices.filter { lines[$0].trimmingCharacters(in: .whitespaces).hasPrefix(key + " ") }
            guard matches.count == 1 else {
                throw TestServerError("examples/\(library.name)/pools.toml has \(matches.count) lines setting '\(key)'; the tests change it, so it must have one")
            }
            lines[matches[0]] = "\(key) = \(value)"
        }
        guard let pool = lines.firstIndex(of: "[pools.system]") else {
            throw TestServerError("examples/\(library.name)/pools.toml has no [pools.system]")
        }
        lines.insert("working_directory = \"\(directory)\"", at: pool + 1)
        return lines.joined(separator: "\n")
    }

    func scenario() throws -> Scenario {
        try Scenario(poolsFile(), files: ["app.env": "REDIS_URL=\(redis.url)\n"])
    }

    /// Writes the pools file again with the current `changes` (for a reload).
    func rewrite(_ s: Scenario) throws {
        s.dir.write("pools.toml", try poolsFile())
    }

    /// enqueue.py: the library's own producer.
    func enqueue(_ count: Int, seconds: Double = 0.5, delay: Double? = nil, hold: Bool = false, prefix: String = "job") throws {
        var argv = [directory + "/.venv/bin/python", directory + "/enqueue.py", "--count", String(count),
                    "--seconds", String(seconds), "--id-prefix", prefix]
        if let delay { argv += ["--delay", String(delay)] }
        if hold { argv.append("--hold") }
        let output = try runCommand(argv, environment: ["REDIS_URL": redis.url, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"],
                                    workingDirectory: directory)
        guard output.succeeded else { throw TestServerError("enqueue.py failed: \(output.diagnostics)") }
    }

    /// One of example_job.py's hashes (started, done, pid, generation): job id → value.
    func jobs(_ hash: String) -> [String: String] {
        // redis-cli, not on a terminal, prints one field per line, unquoted.
        guard let text = try? redis.cli("HGETALL", "example:\(library.name):\(hash)") else { return [:] }
        let fields = text.components(separatedBy: "\n")
        var result: [String: String] = [:]
        var i = 0
        while i + 1 < fields.count {
            result[fields[i]] = fields[i + 1]
            i += 2
        }
        return result
    }

    /// The members of a Redis list.
    func list(_ key: String) -> [String] {
        guard let text = try? redis.cli("LRANGE", key, "0", "-1") else { return [] }
        return text.split(separator: "\n").map(String.init)
    }

    /// Lets held jobs finish.
    func release() throws {
        try redis.cli("SET", "example:\(library.name):release", "1")
    }

    static func ids(_ prefix: String, _ count: Int) -> Set<String> { Set((1...count).map { "\(prefix)-\($0)" }) }

    /// Each of `ids` started once and finished once.
    func ranOnce(_ ids: Set<String>) -> Bool {
        let started = jobs("started").filter { ids.contains($0.key) }
        let done = jobs("done").filter { ids.contains($0.key) }
        return Set(started.keys) == ids && Set(done.keys) == ids
            && started.values.allSatisfy { $0 == "1" } && done.values.allSatisfy { $0 == "1" }
    }

    /// Jobs the library left un-run in its `strandedAtStop` list (none for most libraries).
    var stranded: Set<String> {
        Set(library.strandedAtStop.map { list($0) } ?? []).subtracting(jobs("started").keys)
    }

    /// Each of `ids` ran once, except those stranded by a stop signal, which did not run at all.
    func ranOnceOrStranded(_ ids: Set<String>) -> Bool {
        let stranded = self.stranded
        return ranOnce(ids.subtracting(stranded))
    }

    // MARK: - the pool, as status shows it

    func workers(_ s: Scenario) -> [Int32] {
        s.workers.filter { $0.env["POOLVISOR_POOL"] == "system" }.map(\.pid)
    }

    func pool(_ s: Scenario) -> [String: Any] { (try? s.statusJSON())?.pool("system") ?? [:] }

    func trigger(_ s: Scenario) -> [String: Any] {
        ((pool(s)["autoscaling"] as? [String: Any])?["triggers"] as? [[String: Any]])?.first ?? [:]
    }

    /// The worker (poolvisor's child) a job's process belongs to: itself, or the worker it was forked
    /// from (Celery's pool child, RQ's work horse, Dramatiq's worker process).
    func worker(running pid: Int32, in s: Scenario) -> Int32? {
        var current = pid
        for _ in 0..<8 {
            guard let parent = ProcFS.parent(of: current) else { return nil }
            if parent == s.supervisor.pid { return current }
            current = parent
        }
        return nil
    }
}
