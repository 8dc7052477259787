import CShim
import Glibc
import PoolvisorSystem

/// SIGCHLD, SIGTERM, SIGINT, SIGHUP and SIGUSR2 as a file descriptor. The CShim constructor blocked them
/// before `main` ran, so they are only ever consumed here, on the loop thread.
public final class SignalSource {
    public let fd: Int32

    public init() throws {
        var set = sigset_t()
        cshim_supervisor_sigset(&set)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        fd = signalfd(-1, &set, Int32(SFD_CLOEXEC | SFD_NONBLOCK))
        guard fd >= 0 else { throw SystemError("signalfd") }
    }

    deinit { close(fd) }

    /// Every pending signal, with the pid that sent it.
    public func readPending() -> [(signal: Int32, sender: Int32)] {
        var out: [(Int32, Int32)] = []
        var info = signalfd_siginfo()
        while read(fd, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            out.append((Int32(info.ssi_signo), Int32(bitPattern: info.ssi_pid)))
        }
        return out
    }
}
