package dev.moe.cli.bench;

import java.util.Arrays;

/**
 * Timing protocol of every benchmark here: warm up (JIT, caches, page faults) for a while, size a repeat so it lasts at
 * least {@code minSeconds}, run {@code repeats} repeats, and keep the median of the per-call times (plus min and max,
 * to show the spread).
 */
final class Measure {

    /** How long to warm up, how many repeats, how long each repeat lasts at least. */
    record Settings(double warmupSeconds, int repeats, double minSeconds) {
        Settings {
            if (repeats < 1) {
                throw new IllegalArgumentException("repeats must be >= 1");
            }
        }

        Settings scaled(double factor) {
            return new Settings(warmupSeconds * factor, repeats, minSeconds * factor);
        }
    }

    /**
     * @param perRepeatMs   per-call milliseconds of each repeat, in run order
     * @param medianRepeat  index (in run order) of the repeat whose time is the median
     */
    record Result(double medianMs, double minMs, double maxMs, int callsPerRepeat, double[] perRepeatMs,
                  int medianRepeat) {
        int repeats() {
            return perRepeatMs.length;
        }
    }

    /** Told where repeats begin and end, for callers that also split the time into phases. */
    interface Listener {
        void repeatStarts(int repeat);

        void repeatEnds(int repeat, int calls);
    }

    private Measure() {
    }

    static Result run(Settings settings, Runnable call) {
        return run(settings, call, null);
    }

    static Result run(Settings settings, Runnable call, Listener listener) {
        long estimate = warmUp(settings, call);
        int perRepeat = (int) Math.max(1, Math.min(1_000_000, Math.ceil(settings.minSeconds() * 1e9 / estimate)));
        Result result = repeats(settings, call, listener, perRepeat);
        if (result.repeats() >= 3 && result.maxMs() > 3 * result.minMs()) {
            // A spread this wide is a transient (a deoptimisation and recompilation, a burst of other load), not the
            // code's cost: warm up again and measure once more.
            warmUp(settings, call);
            result = repeats(settings, call, listener, perRepeat);
        }
        return result;
    }

    /**
     * Runs the call for at least the warm-up time, then on while the recent calls are still much slower than the best
     * one (code still being compiled), up to a cap; returns the best call time in nanoseconds.
     */
    private static long warmUp(Settings settings, Runnable call) {
        long warmupNs = (long) (settings.warmupSeconds() * 1e9);
        long capNs = Math.max(3_000_000_000L, 8 * warmupNs);
        long start = System.nanoTime();
        long best = Long.MAX_VALUE;
        long[] recent = new long[3];
        int calls = 0;
        while (true) {
            long t0 = System.nanoTime();
            call.run();
            long dt = System.nanoTime() - t0;
            if (calls > 0 || warmupNs <= 0) {
                best = Math.min(best, dt); // the first call pays compilation and page faults
            }
            recent[calls % recent.length] = dt;
            calls++;
            long elapsed = System.nanoTime() - start;
            if (calls < 2 || elapsed < warmupNs) {
                continue;
            }
            long[] sorted = recent.clone();
            Arrays.sort(sorted);
            boolean settled = calls < recent.length + 1 ? true : sorted[1] <= 1.5 * best;
            if (settled || elapsed >= capNs) {
                break;
            }
        }
        return Math.max(1, best);
    }

    private static Result repeats(Settings settings, Runnable call, Listener listener, int perRepeat) {
        double[] ms = new double[settings.repeats()];
        for (int r = 0; r < ms.length; r++) {
            if (listener != null) {
                listener.repeatStarts(r);
            }
            long t0 = System.nanoTime();
            for (int i = 0; i < perRepeat; i++) {
                call.run();
            }
            ms[r] = (System.nanoTime() - t0) / 1e6 / perRepeat;
            if (listener != null) {
                listener.repeatEnds(r, perRepeat);
            }
        }
        double[] sorted = ms.clone();
        Arrays.sort(sorted);
        double median = median(ms);
        int medianRepeat = 0;
        for (int r = 1; r < ms.length; r++) {
            if (Math.abs(ms[r] - median) < Math.abs(ms[medianRepeat] - median)) {
                medianRepeat = r;
            }
        }
        return new Result(median, sorted[0], sorted[sorted.length - 1], perRepeat, ms, medianRepeat);
    }

    static double median(double[] values) {
        double[] sorted = values.clone();
        Arrays.sort(sorted);
        int n = sorted.length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
}
