import Glibc
import PoolvisorCore

/// Relays each worker's stdout and stderr to the supervisor's stdout line by line, prefixed with
/// `pool.replica |` (coloured per pool on a terminal), without ever blocking on a worker.
public final class OutputRelay {
    private final class Stream {
        let fd: Int32
        let prefix: [UInt8]
        var partial: [UInt8] = []
        var registration: EventLoop.Registration?

        init(fd: Int32, prefix: [UInt8]) {
            self.fd = fd
            self.prefix = prefix
        }
    }

    /// Longer lines are cut and relayed in pieces.
    static let maximumLine = 16 * 1024

    private let loop: EventLoop
    private let out: Int32
    private let colour: Bool
    private var prefixWidth: Int
    private var poolColours: [String: Int] = [:]
    private var streams: [Int32: Stream] = [:]  // by worker pid
    private var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    private var writeBuffer: [UInt8] = []

    public init(loop: EventLoop, out: Int32 = 1, colour: Bool, pools: [PoolSpec]) {
        self.loop = loop
        self.out = out
        self.colour = colour
        prefixWidth = 0
        update(pools: pools)
    }

    /// Colours and the prefix width for the pools of a (re)loaded file; running workers keep theirs.
    public func update(pools: [PoolSpec]) {
        let palette = [36, 33, 35, 32, 34, 31, 96, 93, 95, 92, 94, 91]
        for pool in pools where poolColours[pool.name] == nil {
            poolColours[pool.name] = palette[poolColours.count % palette.count]
        }
        prefixWidth = max(prefixWidth, pools.map { "\($0.name).\(max($0.replicas - 1, 0))".count }.max() ?? 0)
    }

    /// Starts relaying `fd` (the read end of the worker's pipe); the relay owns and closes it.
    /// Worker pipes being relayed: one open file each.
    public var streamCount: Int { streams.count }

    public func attach(_ fd: Int32, worker pid: Int32, replica: ReplicaID) {
        var label = "\(replica.pool).\(replica.index)"
        if label.count < prefixWidth { label += String(repeating: " ", count: prefixWidth - label.count) }
        label += " | "
        if colour, let c = poolColours[replica.pool] { label = "\u{1B}[\(c)m\(label)\u{1B}[0m" }
        let stream = Stream(fd: fd, prefix: Array(label.utf8))
        do {
            stream.registration = try loop.add(fd) { [unowned self, unowned stream] _ in self.pump(stream, pid: pid) }
            streams[pid] = stream
        } catch {
            close(fd)
        }
    }

    /// Relays whatever the worker wrote before it exited, so its last lines come before the exit is logged.
    public func drain(worker pid: Int32) {
        if let stream = streams[pid] { pump(stream, pid: pid) }
    }

    /// One relayed pipe as an in-place upgrade hands it over: the fd stays open across the exec.
    public struct Handover: Sendable, Codable {
        public var pid: Int32
        public var fd: Int32
        public var prefix: [UInt8]
        /// What the worker wrote after its last newline: the new image goes on with the line.
        public var partial: [UInt8]

        public init(pid: Int32, fd: Int32, prefix: [UInt8], partial: [UInt8]) {
            self.pid = pid
            self.fd = fd
            self.prefix = prefix
            self.partial = partial
        }

        private enum CodingKeys: String, CodingKey { case pid, fd, prefix, partial }

        // The prefix as text (a pool's name and a replica number; colour codes are ASCII too), not as
        // one number per byte: an upgrade's handover holds one per worker.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            pid = try c.decode(Int32.self, forKey: .pid)
            fd = try c.decode(Int32.self, forKey: .fd)
            prefix = Array(try c.decode(String.self, forKey: .prefix).utf8)
            partial = try c.decodeIfPresent([UInt8].self, forKey: .partial) ?? []
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(pid, forKey: .pid)
            try c.encode(fd, forKey: .fd)
            try c.encode(String(decoding: prefix, as: UTF8.self), forKey: .prefix)
            if !partial.isEmpty { try c.encode(partial, forKey: .partial) }
        }
    }

    /// Every pipe being relayed, with what has been read of it but not yet relayed (the relay's
    /// pending output is written first). The fds are the caller's to keep open across the exec.
    public func handover() -> [Handover] {
        flush()
        return streams.map { pid, s in Handover(pid: pid, fd: s.fd, prefix: s.prefix, partial: s.partial) }
    }

    /// Goes on relaying the pipes an earlier image handed over.
    public func adopt(_ handed: [Handover]) {
        for h in handed {
            _ = fcntl(h.fd, F_SETFD, FD_CLOEXEC)
            let stream = Stream(fd: h.fd, prefix: h.prefix)
            stream.partial = h.partial
            let pid = h.pid
            do {
                stream.registration = try loop.add(h.fd) { [unowned self, unowned stream] _ in self.pump(stream, pid: pid) }
                streams[pid] = stream
            } catch {
                close(h.fd)
            }
        }
    }

    public func closeAll() {
        for (pid, stream) in streams { finish(stream, pid: pid) }
    }

    private func pump(_ stream: Stream, pid: Int32) {
        while true {
            let n = readBuffer.withUnsafeMutableBytes { read(stream.fd, $0.baseAddress, $0.count) }
            if n > 0 {
                split(stream, readBuffer[0..<n])
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { break }
            finish(stream, pid: pid)  // EOF: the worker and everything it started closed the pipe
            break
        }
        flush()
    }

    private func split(_ stream: Stream, _ bytes: ArraySlice<UInt8>) {
        var start = bytes.startIndex
        while let nl = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) {
            emit(stream, bytes[start..<nl])
            start = nl + 1
        }
        stream.partial += bytes[start...]
        while stream.partial.count >= OutputRelay.maximumLine {
            let piece = stream.partial.prefix(OutputRelay.maximumLine)
            stream.partial.removeFirst(piece.count)
            writeLine(stream.prefix, piece)
        }
    }

    private func emit(_ stream: Stream, _ line: ArraySlice<UInt8>) {
        if stream.partial.isEmpty {
            writeLine(stream.prefix, line)
        } else {
            stream.partial += line
            writeLine(stream.prefix, stream.partial[...])
            stream.partial.removeAll(keepingCapacity: true)
        }
    }

    private func writeLine(_ prefix: [UInt8], _ line: ArraySlice<UInt8>) {
        writeBuffer += prefix
        writeBuffer += line.last == UInt8(ascii: "\r") ? line.dropLast() : line
        writeBuffer.append(UInt8(ascii: "\n"))
        if writeBuffer.count > 64 * 1024 { flush() }
    }

    private func finish(_ stream: Stream, pid: Int32) {
        if !stream.partial.isEmpty {
            writeLine(stream.prefix, stream.partial[...])
            stream.partial.removeAll()
        }
        flush()
        if let r = stream.registration { loop.forgetBeforeClose(r) }
        close(stream.fd)
        streams[pid] = nil
    }

    private func flush() {
        guard !writeBuffer.isEmpty else { return }
        writeAll(out, writeBuffer)
        writeBuffer.removeAll(keepingCapacity: true)
    }
}

/// Writes all of `bytes`, retrying on EINTR and short writes; gives up on other errors (a closed stdout).
public func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    bytes.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
            if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { return }
        }
    }
}

/// Writes text to stderr, unbuffered.
public func writeStandardError(_ text: String) {
    writeAll(2, Array(text.utf8))
}
