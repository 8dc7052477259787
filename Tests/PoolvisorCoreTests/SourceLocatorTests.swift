import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

@Suite struct SourceLocatorTests {
    let text = """
        # comment with [brackets] and key = value
        [supervisor]
        name = "x"   # trailing

        [pools.default]
        command = [
          "/usr/bin/python3",   # [not a table]
          "-m", "app",
        ]
          replicas = 2
        env = { FOO = "1", "BAR.BAZ" = "2", nested = { deep = 3 } }
        notes = \"\"\"
        [pools.fake]
        looks = "like a key"
        \"\"\"
        [pools."quoted name".env]
        A = 1
        """

    @Test func findsHeadersKeysAndInlineTableKeys() {
        let l = SourceLocator(text: text)
        #expect(l.locate(["supervisor"])! == (2, 1))
        #expect(l.locate(["supervisor", "name"])! == (3, 1))
        #expect(l.locate(["pools", "default"])! == (5, 1))
        #expect(l.locate(["pools", "default", "command"])! == (6, 1))
        #expect(l.locate(["pools", "default", "replicas"])! == (10, 3))
        #expect(l.locate(["pools", "default", "env", "FOO"])! == (11, 9))
        #expect(l.locate(["pools", "default", "env", "BAR.BAZ"])! == (11, 20))
        #expect(l.locate(["pools", "default", "env", "nested", "deep"])! == (11, 48))
        #expect(l.locate(["pools", "quoted name", "env", "A"])! == (17, 1))
    }

    @Test func ignoresLookalikesInsideStringsAndFallsBackToTheTable() {
        let l = SourceLocator(text: text)
        // Not the lookalike in a string: where [pools] is first named.
        #expect(l.locate(["pools", "fake"])! == (5, 1))
        #expect(l.locate(["pools", "default", "missing"])! == (5, 1))
        #expect(l.locate(["pools", "default", "looks"])! == (5, 1))
    }
}
