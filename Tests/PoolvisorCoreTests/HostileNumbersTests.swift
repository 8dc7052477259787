import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

/// Numbers from a pools file or a queue reading never trap the core: out-of-range values are refused
/// by the decoder, and arithmetic on what gets through saturates.
@Suite struct HostileNumbersTests {
    @Test func saturatingConversions() {
        #expect(Int(saturating: .infinity) == Int.max)
        #expect(Int(saturating: -.infinity) == Int.min)
        #expect(Int(saturating: .nan) == 0)
        #expect(Int(saturating: 1e300) == Int.max)
        #expect(Int(saturating: 9_223_372_036_854_775_807.0) == Int.max)
        #expect(Int(saturating: 42.9) == 42)
        #expect(Int64(saturating: -1e19) == Int64.min)
        #expect(Duration.seconds(Double.infinity) == .nanoseconds(Int64.max))
        #expect(Duration.seconds(1e300).humanReadable.hasSuffix(" h"))
    }

    @Test func cpuQuantitiesHaveARange() {
        #expect(Quantity.cores("500m") == 0.5)
        #expect(Quantity.cores("1m") == 0.001)
        #expect(Quantity.cores("4096") == 4096)
        for bad in ["inf", "1e308", "1e15", "1e400m", "nan", "0", "0.5m", "-1", "4097"] {
            #expect(Quantity.cores(bad) == nil, "\(bad)")
        }
    }

    @Test func aHugeQueueReadingOrATinyTargetScalesToMaxNotToACrash() {
        var spec = AutoscalingSpec(minReplicas: 0, maxReplicas: 5)
        spec.scaleUp = ScalingRules(stabilizationWindow: .zero, policies: [.init(.pods, 100, per: .seconds(1))])
        var scaler = Autoscaler(spec: spec)
        let readings: [TriggerReading] = [.queue(name: "jobs", value: 1e300, target: 1e-300, activation: 0)]
        let decision = scaler.decide(current: 1, readings: readings, at: Instant(nanoseconds: 1_000_000_000))
        #expect(decision.replicas == 5)
        #expect(decision.reason.contains("1e+300"))
        let cpu = scaler.decide(current: 1, readings: [.cpu(utilisation: .infinity, target: 1e-300)], at: Instant(nanoseconds: 2_000_000_000))
        #expect(cpu.replicas == 5)
        #expect(Autoscaler.number(.nan) == "nan")
        #expect(Autoscaler.number(-1e300) == "-1e+300")
    }

    @Test func umaskIntegersMustBeWrittenInOctal() throws {
        let octal = "[pools.a]\ncommand = [\"/bin/true\"]\numask = 0o027\n"
        let pools: ConfigValue = table(["a": table(["command": strings("/bin/true"), "umask": .integer(0o027)])])
        let root = table(["pools": pools]).asTable
        var host = FakeHost()
        host.executables.insert("/bin/true")
        #expect(try #require(decode(octal, root, host: host).file).pools[0].umask == 0o027)
        let decimal = decode("[pools.a]\ncommand = [\"/bin/true\"]\numask = 23\n", root, host: host)
        #expect(decimal.file == nil)
        #expect(
            decimal.diagnostics.errors.map(\.description) == [
                "/etc/poolvisor/pools.toml:3:1: error: 'pools.a.umask' must be octal digits in a string such as \"0027\" or a TOML octal number such as 0o027, not 23 (a decimal integer, 0o27 in octal)"
            ])
    }
}

@Suite struct SourceLocatorLimitsTests {
    @Test func nestingIsMeasuredWithoutRecursingPastTheLimit() {
        let ok = "[pools.a.autoscaling.behavior.scale_up]\npolicies = [{ type = \"Pods\", value = 4 }]\n"
        #expect(SourceLocator(text: ok).tooDeep == nil)
        let dotted = "x = 1\n[env]\na" + String(repeating: ".a", count: 100_000) + " = 1\n"
        #expect(SourceLocator(text: dotted).tooDeep.map { [$0.line, $0.column] } == [3, 1])
        let arrays = "a = " + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(SourceLocator(text: arrays).tooDeep.map { [$0.line, $0.column] } == [1, 36])
        let inline = "a = " + String(repeating: "{ b = ", count: 100_000) + "1" + String(repeating: " }", count: 100_000)
        #expect(SourceLocator(text: inline).tooDeep != nil)
        let header = "[" + Array(repeating: "x", count: SourceLocator.maximumDepth).joined(separator: ".") + "]\n"
        #expect(SourceLocator(text: header).tooDeep == nil)
        #expect(SourceLocator(text: "[y." + header.dropFirst()).tooDeep != nil)
    }

    @Test func quotedKeysWithEscapesAreFound() {
        let text = "[pools.a]\nx = 1\n[pools.\"b\\nc\"]\n\"d\\u202Ee\" = 2\n'f\\n' = 3\n"
        let locator = SourceLocator(text: text)
        #expect(locator.locate(["pools", "b\nc"])?.line == 3)
        #expect(locator.locate(["pools", "b\nc", "d\u{202E}e"])?.line == 4)
        #expect(locator.locate(["pools", "b\nc", "f\\n"])?.line == 5)
    }

    @Test func diagnosticsShowInvisibleCharactersEscaped() {
        let d = Diagnostic(.error, SourceLocation(file: "p.toml", line: 1), key: "pools.a\u{202E}b", "unknown key 'a\u{202E}b\u{0}\u{1B}[2J'")
        #expect(d.description == "p.toml:1: error: unknown key 'a\\u{202e}b\\u{0}\\u{1b}[2J'")
        #expect(d.key == "pools.a\\u{202e}b")
        #expect(Printable.escaped("it's\n") == "it\\'s\\u{a}")
        #expect(Printable.escaped("abcdef", limit: 3) == "abc…")
    }
}

/// The edge spawns a wave a slice at a time, so the reconciler meets events while replicas are still
/// `Pending` (not spawned yet).
@Suite struct SpawnWaveTests {
    @Test func aStopWhileReplicasArePendingStartsNoneOfThemAndFinishes() {
        var reconciler = Reconciler(
            file: PoolsFile(path: "pools.toml", supervisor: SupervisorSpec(), pools: [pool("many", replicas: 5)]),
            notifyDirectory: nil, seed: 1)
        let t0 = Instant(nanoseconds: 1_000_000_000)
        let spawns = reconciler.handle(.start, at: t0).compactMap { if case .spawn(let id) = $0 { return id } else { return nil } }
        #expect(spawns.count == 5)
        // Two were spawned before the stop; three were still waiting in the edge's queue.
        _ = reconciler.handle(.spawned(spawns[0], pid: 100), at: t0)
        _ = reconciler.handle(.spawned(spawns[1], pid: 101), at: t0)
        _ = reconciler.handle(.stopRequested(.terminate), at: t0)
        for id in spawns[2...] { #expect(reconciler.view(id) ?? .exited == .exited, "\(id)") }
        _ = reconciler.handle(.exited(pid: 100, .exited(0)), at: t0)
        let last = reconciler.handle(.exited(pid: 101, .exited(0)), at: t0)
        #expect(last.contains(.exit(code: 0)))
    }
}
