package dev.moe.cli.bench;

import java.io.IOException;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;

/**
 * How much CPU other processes use while we measure (a 2-core box shared with builds and tests): system busy time from
 * {@code /proc/stat} minus this JVM's CPU time, per second of wall time, in cores. Unknown (NaN) off Linux.
 */
final class LoadMonitor {
    private static final Path PROC_STAT = Path.of("/proc/stat");
    private static final double USER_HZ = 100.0;
    /** Other processes' load (cores) above which a measurement is repeated. */
    static final double BUSY = 0.25;

    private LoadMonitor() {
    }

    /** A point in time: wall clock, system busy seconds, this process's CPU seconds. */
    record Sample(long wallNanos, double busySeconds, double processSeconds) {
    }

    static Sample sample() {
        return new Sample(System.nanoTime(), systemBusySeconds(), processSeconds());
    }

    /** Cores used by other processes between two samples (NaN when unknown). */
    static double otherCores(Sample from, Sample to) {
        double wall = (to.wallNanos() - from.wallNanos()) / 1e9;
        if (wall <= 0 || Double.isNaN(from.busySeconds()) || Double.isNaN(to.busySeconds())
                || Double.isNaN(from.processSeconds())) {
            return Double.NaN;
        }
        double other = (to.busySeconds() - from.busySeconds()) - (to.processSeconds() - from.processSeconds());
        return Math.max(0, other / wall);
    }

    /** Waits (up to {@code maxSeconds}) until other processes use less than a tenth of a core for a second. */
    static void waitForQuiet(double maxSeconds, PrintStream log) {
        long deadline = System.nanoTime() + (long) (maxSeconds * 1e9);
        double other = Double.NaN;
        while (System.nanoTime() < deadline) {
            Sample a = sample();
            try {
                Thread.sleep(1000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
            other = otherCores(a, sample());
            if (!(other >= 0.1)) {
                return;
            }
        }
        log.printf(Locale.ROOT, "bench: other processes still use %.2f cores after %.0f s; measuring anyway%n", other,
                maxSeconds);
    }

    private static double systemBusySeconds() {
        try {
            for (String line : Files.readAllLines(PROC_STAT)) {
                if (line.startsWith("cpu ")) {
                    String[] f = line.trim().split("\\s+");
                    // user nice system idle iowait irq softirq steal ...
                    long busy = 0;
                    for (int i = 1; i < f.length && i <= 8; i++) {
                        if (i != 4 && i != 5) { // not idle, not iowait
                            busy += Long.parseLong(f[i]);
                        }
                    }
                    return busy / USER_HZ;
                }
            }
        } catch (IOException | RuntimeException e) {
            // not Linux: unknown
        }
        return Double.NaN;
    }

    private static double processSeconds() {
        if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os) {
            long ns = os.getProcessCpuTime();
            return ns < 0 ? Double.NaN : ns / 1e9;
        }
        return Double.NaN;
    }
}
