import CShim
import Glibc
import PoolvisorSystem

/// A single-threaded epoll loop. Every source of work — signals, timers, worker output, notify
/// sockets — is a file descriptor registered here with a handler; nothing polls.
public final class EventLoop {
    public struct Registration: Hashable {
        fileprivate let token: UInt64
        let fd: Int32
    }

    public typealias Handler = (_ events: UInt32) -> Void

    private let epfd: Int32
    private var handlers: [UInt64: Handler] = [:]
    private var nextToken: UInt64 = 1
    private var events = [epoll_event](repeating: epoll_event(), count: 256)

    public init() throws {
        epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epfd >= 0 else { throw SystemError("epoll_create1") }
    }

    deinit { close(epfd) }

    public static let readable = EPOLLIN.rawValue
    static let writable = EPOLLOUT.rawValue

    /// Watches `fd`; tokens are never reused, so an event for a removed registration is dropped.
    @discardableResult
    public func add(_ fd: Int32, events: UInt32 = EventLoop.readable, _ handler: @escaping Handler) throws -> Registration {
        let token = nextToken
        nextToken += 1
        var ev = epoll_event(events: events, data: epoll_data(u64: token))
        guard epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0 else { throw SystemError("epoll_ctl(ADD, fd \(fd))") }
        handlers[token] = handler
        return Registration(token: token, fd: fd)
    }

    /// Changes what a registration waits for, e.g. `writable` while output is pending. With 0 only
    /// errors and hang-ups are reported (epoll always reports those).
    func modify(_ registration: Registration, events: UInt32) throws {
        var ev = epoll_event(events: events, data: epoll_data(u64: registration.token))
        guard epoll_ctl(epfd, EPOLL_CTL_MOD, registration.fd, &ev) == 0 else {
            throw SystemError("epoll_ctl(MOD, fd \(registration.fd))")
        }
    }

    /// Stops watching (the caller closes the fd).
    public func remove(_ registration: Registration) {
        handlers[registration.token] = nil
        epoll_ctl(epfd, EPOLL_CTL_DEL, registration.fd, nil)
    }

    /// Forgets the handler of an fd the caller is about to close: closing the last reference to a file
    /// removes it from epoll by itself, so this saves a syscall per exiting worker. Only for fds that
    /// were never duplicated (all of ours are CLOEXEC and never dup'ed).
    public func forgetBeforeClose(_ registration: Registration) {
        handlers[registration.token] = nil
    }

    /// Waits for events (forever when `timeoutMilliseconds` is -1) and runs their handlers.
    public func runOnce(timeoutMilliseconds: Int32 = -1) {
        let n = events.withUnsafeMutableBufferPointer { epoll_wait(epfd, $0.baseAddress, Int32($0.count), timeoutMilliseconds) }
        guard n > 0 else { return }
        for i in 0..<Int(n) {
            let ev = events[i]
            handlers[ev.data.u64]?(ev.events)
        }
    }
}
