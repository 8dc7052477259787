import Foundation
import Glibc
import TestServers
import Testing

/// A queue library with an example in examples/<name>/, and what the tests found differs between them.
struct QueueLibrary: Sendable, CustomStringConvertible {
    let name: String
    /// Where `enqueue.py --delay` puts a job.
    let delayed: Delayed
    /// Where a job stays, not run, when a worker took it at the very instant of its stop signal.
    var stranding: Stranding = .never
    var description: String { name }

    enum Delayed {
        /// In Redis apart from the ready jobs: `count = "ready+delayed"` adds them.
        case apart
        /// In the queue with the ready ones, until a worker takes and holds it (Celery's countdown).
        case withTheReady
        /// Outside the queue, in a scheduler's keys (TaskIQ): no `count` reaches them.
        case outsideTheQueue
    }

    enum Stranding {
        /// Every job a worker takes is run, or given back when it stops.
        case never
        /// RQ: the signal finds the worker not yet busy and stops it at once; the job it has just moved
        /// into this list is failed by maintenance a minute later.
        case inList(String)
        /// TaskIQ: the worker cancels its read after Redis delivered the entry; it stays pending in the
        /// group until another worker claims it (after idle_timeout, 10 minutes).
        case pendingInStream(String, group: String)
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
        QueueLibrary(name: "taskiq", delayed: .outsideTheQueue, stranding: .pendingInStream("system", group: "taskiq")),
        QueueLibrary(name: "bullmq", delayed: .apart),
        QueueLibrary(name: "celery", delayed: .withTheReady),
        QueueLibrary(name: "rq", delayed: .apart, stranding: .inList("rq:queue:system:intermediate")),
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
        var argv = [
            directory + "/.venv/bin/python", directory + "/enqueue.py", "--count", String(count),
            "--seconds", String(seconds), "--id-prefix", prefix,
        ]
        if let delay { argv += ["--delay", String(delay)] }
        if hold { argv.append("--hold") }
        let output = try runCommand(
            argv, environment: ["REDIS_URL": redis.url, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"],
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

    /// Which of `ids` never started and are held where the library strands a job taken at the instant
    /// of a stop signal (see `QueueLibrary.Stranding`).
    func stranded(among ids: Set<String>) -> Set<String> {
        let waiting = ids.subtracting(jobs("started").keys)
        switch library.stranding {
        case .never:
            return []
        case .inList(let key):
            let members = (try? redis.cli("LRANGE", key, "0", "-1"))?.split(separator: "\n").map(String.init) ?? []
            return waiting.intersection(members)
        case .pendingInStream(let stream, let group):
            // XPENDING prints id, consumer, idle time and deliveries per entry; the entry's data holds
            // the job's arguments as JSON, its id among them.
            let pending =
                (try? redis.cli("XPENDING", stream, group, "-", "+", "1000"))?.split(separator: "\n")
                .filter { $0.contains("-") && $0.allSatisfy { $0.isNumber || $0 == "-" } } ?? []
            let data = pending.compactMap { try? redis.cli("XRANGE", stream, String($0), String($0)) }.joined(separator: "\n")
            return waiting.filter { data.contains("\"\($0)\"") }
        }
    }

    /// A line per key the library keeps in Redis: its type and size, for a failure's message.
    var redisKeys: String {
        let keys = ((try? redis.cli("KEYS", "*"))?.split(separator: "\n").map(String.init) ?? [])
            .filter { !$0.hasPrefix("example:") }.sorted()
        return keys.map { key in
            let type = (try? redis.cli("TYPE", key)) ?? "?"
            let size: String? =
                switch type {
                case "list": try? redis.cli("LLEN", key)
                case "zset": try? redis.cli("ZCARD", key)
                case "hash": try? redis.cli("HLEN", key)
                case "set": try? redis.cli("SCARD", key)
                case "stream": try? redis.cli("XLEN", key)
                default: nil
                }
            return "\(key) (\(type)\(size.map { " \($0)" } ?? ""))"
        }.joined(separator: ", ")
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

    /// Each of `ids` ran once, except those stranded by a stop signal, which did not run at all. (A job
    /// taken but not yet started looks stranded for a moment too; the reload test checks all its jobs
    /// again at its end.)
    func ranOnceOrStranded(_ ids: Set<String>) -> Bool {
        ranOnce(ids) || ranOnce(ids.subtracting(stranded(among: ids)))
    }

    /// What a failed wait for jobs prints.
    func progress(_ ids: Set<String>) -> String {
        let started = jobs("started"), done = jobs("done")
        return "not started: \(ids.subtracting(started.keys).sorted()), started but not done: \(Set(started.keys).subtracting(done.keys).sorted()), "
            + "more than once: \(started.merging(done) { a, b in a == "1" ? b : a }.filter { $0.value != "1" }.keys.sorted()), "
            + "stranded: \(stranded(among: ids).sorted()); Redis: \(redisKeys)"
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
