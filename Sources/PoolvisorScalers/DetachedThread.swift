import Glibc
import PoolvisorSystem

/// Starts `body` on a detached thread of its own (512 KiB of stack), keeping `owner` alive until it
/// returns. The thread inherits the loop's blocked signals, so SIGCHLD, SIGTERM, … still reach the
/// signalfd.
func startDetachedThread(_ owner: AnyObject, _ body: @escaping () -> Void) throws {
    final class Box {
        let owner: AnyObject
        let body: () -> Void
        init(_ owner: AnyObject, _ body: @escaping () -> Void) {
            self.owner = owner
            self.body = body
        }
    }
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setstacksize(&attributes, 512 << 10)
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    var thread = pthread_t()
    let context = Unmanaged.passRetained(Box(owner, body)).toOpaque()
    let rc = pthread_create(
        &thread, &attributes,
        { context in
            Unmanaged<Box>.fromOpaque(context!).takeRetainedValue().body()
            return nil
        }, context)
    if rc != 0 {
        Unmanaged<Box>.fromOpaque(context).release()
        throw SystemError("pthread_create", errno: rc)
    }
}
