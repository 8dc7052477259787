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

/// Reading a pools file or env file never blocks or grows without bound, and the parser process's
/// failures (a crash, a hang, nonsense) come back as messages, never as the supervisor's own death.
@Suite struct PoolsFileReadingTests {
    let dir: String

    init() throws {
        var template = Array("/tmp/poolvisor-reading-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
        dir = String(cString: made)
    }

    func write(_ name: String, _ text: String, mode: mode_t = 0o644) -> String {
        let path = dir + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        precondition(fd >= 0, "cannot create \(path)")
        let bytes = Array(text.utf8)
        precondition(bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count)
        close(fd)
        return path
    }

    /// A script as the parser. Other tests fork all the time, and a fork that happens while the script
    /// is open for writing holds it open until its exec: exec(2) then fails with ETXTBSY for a moment.
    func parse(with script: String, timeout: Duration = ParserProcess.defaultTimeout) -> Result<ParsedDocument, ParserProcess.Failure> {
        let parser = write("parser-\(UInt32.random(in: 0...UInt32.max)).sh", script, mode: 0o755)
        let deadline = MonotonicClock.now() + .seconds(10)
        while true {
            let result = ParserProcess.parse("[pools.a]\n", executable: parser, timeout: timeout)
            guard result.failure?.message.contains("Text file busy") == true, MonotonicClock.now() < deadline else { return result }
        }
    }

    @Test func aFIFOIsRefusedWithoutWaitingForAWriter() throws {
        let fifo = dir + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        // Would block in open(2) forever without O_NONBLOCK: the test then never ends.
        #expect(LinuxHost().readTextFile(fifo).failure?.message == "not a regular file (a FIFO)")
    }

    @Test func devicesDirectoriesAndOversizedFilesAreRefused() throws {
        #expect(LinuxHost().readTextFile("/dev/zero").failure?.message == "not a regular file (a character device)")
        #expect(LinuxHost().readTextFile(dir).failure?.message == "not a regular file (a directory)")
        let big = write("big.env", String(repeating: "x", count: PoolsFileLoader.maximumFileBytes + 1), mode: 0o600)
        #expect(LinuxHost().readTextFile(big).failure?.message == "larger than 1 MiB, the limit for an env file")
        let exact = write("exact.env", String(repeating: "x", count: PoolsFileLoader.maximumFileBytes), mode: 0o600)
        #expect(LinuxHost().readTextFile(exact).success?.utf8.count == PoolsFileLoader.maximumFileBytes)
    }

    @Test func aParserThatCrashesIsAMessage() throws {
        let result = parse(with: "#!/bin/sh\nkill -SEGV $$\n")
        #expect(result.failure?.message == "could not parse the pools file: the TOML parser crashed (SIGSEGV) on it; nothing was changed")
    }

    @Test func aParserThatHangsIsKilledAtItsDeadline() throws {
        let started = MonotonicClock.now()
        let result = parse(with: "#!/bin/sh\nexec sleep 1000\n", timeout: .milliseconds(300))
        #expect(result.failure?.message == "could not parse the pools file: the parser took longer than 300 ms and was killed; nothing was changed")
        #expect(MonotonicClock.now().since(started) < .seconds(5))
    }

    @Test func aParserThatAnswersNonsenseIsAMessage() throws {
        let message = try #require(parse(with: "#!/bin/sh\necho '{\"parsed\": 42}'\n").failure?.message)
        #expect(message.hasPrefix("could not parse the pools file: the parser's answer was not understood"))
    }

    @Test func theSameDocumentInAChildAsInProcess() throws {
        let binary = try #require(PoolvisorBinary.path, "build poolvisor first")
        let text = """
            [supervisor]
            name = "x"
            [pools.a]
            command = ["/bin/sleep", "1"]
            ratio = inf
            nan = nan
            big = 9223372036854775807
            when = 1979-05-27
            nested = { a = [1, [2.5, "three"]], b = { c = true } }
            "\\u202E" = "shown escaped"
            """
        let inProcess = TOMLDocument.parse(text)
        let child = try ParserProcess.parse(text, executable: binary).get()
        // NaN is not equal to itself: compare the wire form.
        #expect(child.wire == inProcess.wire)
        guard case .parsed(let table, let unreadable) = child else { Issue.record("\(child)"); return }
        #expect(unreadable.isEmpty)
        guard case .table(let pools)? = table["pools"], case .table(let a)? = pools["a"] else { Issue.record("no pools.a"); return }
        #expect(a["ratio"] == .float(.infinity))
        #expect(a["big"] == .integer(Int.max))
        #expect(a["when"] == .other(typeName: "date"))
        #expect(a["\u{202E}"] == .string("shown escaped"))
    }

    @Test func aSyntaxErrorKeepsItsPosition() throws {
        let binary = try #require(PoolvisorBinary.path, "build poolvisor first")
        let result = try ParserProcess.parse("[pools.a]\ncommand = ]\n[b]\n", executable: binary).get()
        guard case .syntaxError(let line, _, let message) = result else { Issue.record("\(result)"); return }
        #expect(line == 2)
        #expect(message.hasPrefix("invalid TOML"))
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let f) = self { return f }
        return nil
    }
}

/// The poolvisor built beside this test bundle.
enum PoolvisorBinary {
    static let path: String? = {
        let bundle = Bundle.main.bundlePath
        for dir in [bundle, (bundle as NSString).deletingLastPathComponent, ProcessInfo.processInfo.arguments.first.map { ($0 as NSString).deletingLastPathComponent } ?? ""] {
            let candidate = dir + "/poolvisor"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }()
}
