import Foundation
import Glibc

/// A stand-in for systemd's notification socket: an AF_UNIX datagram socket bound at
/// `<directory>/notify.sock`, drained continuously by a background thread. (It must be drained: the
/// kernel queues only `net.unix.max_dgram_qlen` datagrams — 10 by default — before a sender blocks.)
///
/// Pass `path` to the supervisor as NOTIFY_SOCKET. The socket has SO_PASSCRED set, so every message
/// records the sender's pid (e.g. to check that READY=1 came from the supervisor, not a worker).
final class NotifyListener: @unchecked Sendable {
    struct Message: Sendable, Equatable {
        var text: String
        /// From SCM_CREDENTIALS; 0 if the kernel did not attach credentials.
        var senderPID: Int32

        /// The datagram's `KEY=VALUE` lines, in order.
        var fields: [(key: String, value: String)] {
            text.split(separator: "\n").map { line in
                guard let eq = line.firstIndex(of: "=") else { return (String(line), "") }
                return (String(line[..<eq]), String(line[line.index(after: eq)...]))
            }
        }

        /// Whether one line of the datagram is exactly `field` (e.g. "READY=1").
        func contains(field: String) -> Bool { text.split(separator: "\n").contains { $0 == field } }

        /// The value of the last `key=` line, if any.
        func value(of key: String) -> String? { fields.last { $0.key == key }?.value }
    }

    let path: String
    private let box: Box

    /// Everything shared with the receiver thread. The thread closes `socket` and `wakeRead` when it
    /// ends; deinit closes `wakeWrite`, which is what ends it.
    private final class Box: @unchecked Sendable {
        let condition = NSCondition()
        var received: [Message] = []
        let socket: Int32
        let wakeRead: Int32
        let wakeWrite: Int32

        init(socket: Int32, wakeRead: Int32, wakeWrite: Int32) {
            self.socket = socket
            self.wakeRead = wakeRead
            self.wakeWrite = wakeWrite
        }
    }

    /// Binds `<directory>/<name>` (replacing a stale socket file).
    init(directory: String, name: String = "notify.sock") throws {
        path = directory + "/" + name
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError.system(call: "socket(AF_UNIX, SOCK_DGRAM)", errno: errno) }
        var one: Int32 = 1
        guard setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            let e = errno
            close(fd)
            throw HarnessError.system(call: "setsockopt(SO_PASSCRED)", errno: e)
        }
        let bound = NotifyListener.withAddress(path) { address, length in bind(fd, address, length) }
        guard let bound, bound == 0 else {
            let e = bound == nil ? ENAMETOOLONG : errno
            close(fd)
            throw HarnessError.system(call: "bind(\(path))", errno: e)
        }
        var wake: [Int32] = [-1, -1]
        guard pipe(&wake) == 0 else {
            let e = errno
            close(fd)
            unlink(path)
            throw HarnessError.system(call: "pipe", errno: e)
        }
        for end in wake { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        box = Box(socket: fd, wakeRead: wake[0], wakeWrite: wake[1])
        let box = self.box
        let thread = Thread { NotifyListener.receive(box) }
        thread.name = "notify listener \(path)"
        thread.start()
    }

    convenience init(in directory: TempDir, name: String = "notify.sock") throws {
        try self.init(directory: directory.path, name: name)
    }

    deinit {
        unlink(path)
        // Closing the write end wakes the receiver (POLLHUP); it closes the socket and the read end.
        close(box.wakeWrite)
    }

    // MARK: Reading

    /// Every datagram received so far, with its sender.
    var receivedMessages: [Message] { box.condition.withLock { box.received } }

    /// The text of every datagram received so far.
    var messages: [String] { receivedMessages.map(\.text) }

    /// Whether any datagram so far has a line exactly equal to `field` (e.g. "READY=1").
    func contains(field: String) -> Bool { receivedMessages.contains { $0.contains(field: field) } }

    /// The value of `key` in the most recent datagram that set it (e.g. the last STATUS=).
    func latestValue(of key: String) -> String? {
        receivedMessages.reversed().lazy.compactMap { $0.value(of: key) }.first
    }

    /// The first datagram (already received or arriving within `timeout`) whose text satisfies `predicate`.
    func waitFor(_ predicate: (String) -> Bool, timeout: Duration = .seconds(10)) -> String? {
        waitForMessage({ predicate($0.text) }, timeout: timeout)?.text
    }

    /// Like `waitFor`, but sees and returns the whole message (text and sender).
    func waitForMessage(_ predicate: (Message) -> Bool, timeout: Duration = .seconds(10)) -> Message? {
        let deadline = Date(timeIntervalSinceNow: timeout.timeInterval)
        box.condition.lock()
        defer { box.condition.unlock() }
        var checked = 0
        while true {
            while checked < box.received.count {
                if predicate(box.received[checked]) { return box.received[checked] }
                checked += 1
            }
            if !box.condition.wait(until: deadline) {
                return box.received[checked...].first(where: predicate)
            }
        }
    }

    /// Waits for a datagram with a line exactly equal to `field`.
    func waitFor(field: String, timeout: Duration = .seconds(10)) -> Message? {
        waitForMessage({ $0.contains(field: field) }, timeout: timeout)
    }

    // MARK: Sending (for self-tests and simulated clients)

    /// Sends one datagram to the AF_UNIX socket at `path`, like sd_notify does.
    static func send(_ text: String, to path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError.system(call: "socket", errno: errno) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let sent = withAddress(path) { address, length in
            bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), address, length) }
        }
        guard let sent else { throw HarnessError.system(call: "sendto(\(path))", errno: ENAMETOOLONG) }
        guard sent == bytes.count else { throw HarnessError.system(call: "sendto(\(path))", errno: errno) }
    }

    // MARK: Internals

    /// Calls `body` with a `sockaddr_un` for a filesystem `path`; nil if the path does not fit.
    private static func withAddress<R>(
        _ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R
    ) -> R? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let length = socklen_t(MemoryLayout.offset(of: \sockaddr_un.sun_path)! + bytes.count + 1)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    /// The receiver thread: waits on the socket and the wake pipe, appends each datagram.
    private static func receive(_ box: Box) {
        defer {
            close(box.socket)
            close(box.wakeRead)
        }
        var buffer = [UInt8](repeating: 0, count: 65536)
        // Room for one cmsghdr carrying a ucred, with slack for alignment.
        var control = [UInt8](repeating: 0, count: 64)
        while true {
            var fds = [
                pollfd(fd: box.socket, events: Int16(POLLIN), revents: 0),
                pollfd(fd: box.wakeRead, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&fds, 2, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[1].revents != 0 { return }
            guard fds[0].revents & Int16(POLLIN) != 0 else {
                if fds[0].revents != 0 { return }  // POLLERR / POLLNVAL
                continue
            }
            let (length, sender) = receiveOne(box.socket, &buffer, &control)
            guard length >= 0 else { continue }  // EAGAIN / EINTR
            let text = String(decoding: buffer[0..<length], as: UTF8.self)
            box.condition.lock()
            box.received.append(Message(text: text, senderPID: sender))
            box.condition.broadcast()
            box.condition.unlock()
        }
    }

    /// SCM_CREDENTIALS from <bits/socket.h>; the Glibc module omits it (it is _GNU_SOURCE only).
    private static let scmCredentials: Int32 = 2

    /// recvmsg with SCM_CREDENTIALS, parsed by hand (CMSG_* macros are not imported into Swift).
    private static func receiveOne(_ fd: Int32, _ buffer: inout [UInt8], _ control: inout [UInt8]) -> (Int, Int32) {
        buffer.withUnsafeMutableBytes { data in
            control.withUnsafeMutableBytes { ctl in
                var iov = iovec(iov_base: data.baseAddress, iov_len: data.count)
                return withUnsafeMutablePointer(to: &iov) { iovPointer in
                    var header = msghdr()
                    header.msg_iov = iovPointer
                    header.msg_iovlen = 1
                    header.msg_control = ctl.baseAddress
                    header.msg_controllen = ctl.count
                    let n = recvmsg(fd, &header, Int32(MSG_DONTWAIT) | Int32(MSG_CMSG_CLOEXEC))
                    guard n >= 0 else { return (-1, 0) }
                    return (n, credentialsPID(ctl, length: Int(header.msg_controllen)))
                }
            }
        }
    }

    /// Walks the control messages: struct cmsghdr { size_t len; int level; int type; } followed by
    /// data aligned to sizeof(size_t); SCM_CREDENTIALS data is struct ucred { pid_t; uid_t; gid_t; }.
    private static func credentialsPID(_ control: UnsafeMutableRawBufferPointer, length: Int) -> Int32 {
        let word = MemoryLayout<Int>.size
        let align = { (n: Int) in (n + word - 1) & ~(word - 1) }
        let headerSize = align(MemoryLayout<cmsghdr>.size)
        var offset = 0
        var pid: Int32 = 0
        while offset + headerSize <= length {
            let cmsgLength = control.loadUnaligned(fromByteOffset: offset, as: Int.self)
            let level = control.loadUnaligned(fromByteOffset: offset + word, as: Int32.self)
            let type = control.loadUnaligned(fromByteOffset: offset + word + 4, as: Int32.self)
            guard cmsgLength >= headerSize, offset + cmsgLength <= length else { break }
            if level == SOL_SOCKET && type == scmCredentials && cmsgLength >= headerSize + 12 {
                pid = control.loadUnaligned(fromByteOffset: offset + headerSize, as: Int32.self)
            } else if level == SOL_SOCKET && type == Int32(SCM_RIGHTS) {
                // Never keep descriptors somebody passed us.
                let count = (cmsgLength - headerSize) / 4
                for i in 0..<count {
                    close(control.loadUnaligned(fromByteOffset: offset + headerSize + 4 * i, as: Int32.self))
                }
            }
            offset += align(cmsgLength)
        }
        return pid
    }
}
