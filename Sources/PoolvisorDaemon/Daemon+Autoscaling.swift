import PoolvisorCore
import PoolvisorLinux
import PoolvisorScalers

/// The autoscaled pools' triggers: queue depth on the scalers' threads, CPU and cron read here.
extension Daemon {
    /// A queue trigger is read on its source's thread (the answer comes back as `queueRead`); CPU and
    /// cron are read here at once.
    public func readTriggers(pool: String, queue: Bool) {
        if queue, let scalers, scalers.hasSource(pool) {
            // Sent (or, should one still be out, under way): the reading comes back as `queueRead`.
            scalers.read(pool)
            return
        }
        feed(.triggersRead(pool: pool, localSamples(pool)))
    }

    func queueRead(_ pool: String, _ sample: TriggerSample) {
        feed(.triggersRead(pool: pool, [sample] + localSamples(pool)))
    }

    /// The triggers read without the network: the pool's CPU against its requests, the cron window.
    func localSamples(_ pool: String) -> [TriggerSample] {
        guard let config = reconciler.pool(named: pool)?.spec.autoscaling else { return [] }
        var samples: [TriggerSample] = []
        if let target = config.cpuTarget {
            let reading: Result<TriggerReading, ScalerError> =
                status(pool: pool).pools.first?.cpuUtilisation
                .map { .success(.cpu(utilisation: $0, target: target)) } ?? .failure(ScalerError("no worker to measure"))
            samples.append(TriggerSample(trigger: "cpu", reading: reading))
        }
        if let cron = config.cron {
            let reading: Result<TriggerReading, ScalerError> =
                WallClock.civilTime(in: cron.timeZone)
                .map { .success(.cron(name: cron.name, replicas: cron.replicas, open: cron.window.isOpen(at: $0))) }
                ?? .failure(ScalerError("time zone '\(cron.timeZone)' is not known on this host"))
            samples.append(TriggerSample(trigger: cron.name, reading: reading))
        }
        return samples
    }
}
