package dev.moe.cli.bench;

import java.io.PrintStream;
import java.util.ListResourceBundle;
import java.util.Locale;
import java.util.function.Supplier;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * The measurement options of the bench commands (a picocli {@code @Mixin}) and what they resolve to. The help of
 * {@code --quick}, {@code --repeats}, {@code --min-time} and {@code --warmup} names each command's own defaults, so it
 * comes from the command's {@link Help} bundle ({@code @Command(resourceBundle = ...)}).
 */
final class MeasureOptions {
    private static final String QUICK = "quick";
    private static final String REPEATS = "repeats";
    private static final String MIN_TIME = "min-time";
    private static final String WARMUP = "warmup";

    @Option(names = "--quick", descriptionKey = QUICK)
    boolean quick;

    @Option(names = "--repeats", descriptionKey = REPEATS)
    Integer repeats;

    @Option(names = "--min-time", paramLabel = "DURATION", descriptionKey = MIN_TIME)
    String minTime;

    @Option(names = "--warmup", paramLabel = "DURATION", descriptionKey = WARMUP)
    String warmup;

    @Option(names = "--table", description = "Print the table on stdout (after the JSON lines) instead of stderr.")
    boolean table;

    @Option(names = "--seed", defaultValue = "42", description = "Seed of weights and inputs (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--bw-mib", hidden = true, description = "Buffer of the bandwidth measurement.")
    Integer bwMib;

    @Option(names = "--jit-warmup", hidden = true, description = "Time spent getting the kernels compiled first.")
    String jitWarmup;

    @Option(names = "--attempts", hidden = true, defaultValue = "3",
            description = "Measurements disturbed by other processes are repeated up to this many attempts in all.")
    int attempts;

    /** The command this is mixed into: its usage errors. */
    @Spec(Spec.Target.MIXEE)
    CommandSpec spec;

    /** Help texts of the options whose defaults differ per command; each command has a public subclass. */
    abstract static class Help extends ListResourceBundle {
        private final Object[][] contents;

        Help(String quick, String repeats, String minTime, String warmup) {
            contents = new Object[][] {{QUICK, quick}, {REPEATS, repeats}, {MIN_TIME, minTime}, {WARMUP, warmup}};
        }

        @Override
        protected Object[][] getContents() {
            return contents;
        }
    }

    /**
     * Checks --repeats (default 7, --quick: 3) and --attempts, then resolves --min-time and --warmup, in seconds,
     * to the command's defaults when not given.
     */
    Measure.Settings settings(double minTimeDefault, double quickMinTimeDefault, double warmupDefault,
                              double quickWarmupDefault) {
        int reps = repeats != null ? repeats : quick ? 3 : 7;
        if (reps < 1) {
            throw Opts.usage(spec, "--repeats must be >= 1");
        }
        if (attempts < 1) {
            throw Opts.usage(spec, "--attempts must be >= 1");
        }
        double minSeconds = seconds("--min-time", minTime, minTimeDefault, quickMinTimeDefault);
        double warmSeconds = seconds("--warmup", warmup, warmupDefault, quickWarmupDefault);
        return new Measure.Settings(warmSeconds, reps, minSeconds);
    }

    /** --jit-warmup in seconds, or the command's default. */
    double jitWarmupSeconds(double normalDefault, double quickDefault) {
        return seconds("--jit-warmup", jitWarmup, normalDefault, quickDefault);
    }

    private double seconds(String option, String value, double normalDefault, double quickDefault) {
        return value != null ? Opts.seconds(spec, option, value) : quick ? quickDefault : normalDefault;
    }

    /** Bytes of the bandwidth measurement's buffer: --bw-mib, or 1 GiB (--quick: 256 MiB). */
    long bwBytes() {
        return bwMib != null ? Math.max(1, bwMib) * 1048576L : quick ? 256L << 20 : 1L << 30;
    }

    /** Read bandwidth and FMA peak at each thread count, measured as long as --quick allows. */
    MachineLimits.Limits[] machineLimits(int[] threadCounts, float[] bwBuffer, PrintStream err) {
        return MachineLimits.measure(threadCounts, bwBuffer, quick ? 3 : 9, quick ? 0.03 : 0.2, quick ? 3 : 5, err);
    }

    /** One attempt's measurements, made into results once the load of other processes meanwhile is known. */
    interface Attempt<T> {
        T result(double otherLoad, int attempt);
    }

    /**
     * Runs {@code measurement} until other processes used at most {@link LoadMonitor#BUSY} cores meanwhile, waiting
     * for a quiet machine before each new attempt, up to --attempts in all (the last one is kept, however busy).
     *
     * @param during what was measured, for the message: "while ... ran", "during this measurement"
     */
    <T> T untilQuiet(String during, PrintStream err, Supplier<Attempt<T>> measurement) {
        for (int attempt = 1; ; attempt++) {
            LoadMonitor.Sample before = LoadMonitor.sample();
            Attempt<T> measured = measurement.get();
            double other = LoadMonitor.otherCores(before, LoadMonitor.sample());
            if (other > LoadMonitor.BUSY && attempt < attempts) {
                err.printf(Locale.ROOT, "bench: other processes used %.2f cores %s; waiting for a quiet machine to"
                        + " measure again (attempt %d of %d)%n", other, during, attempt + 1, attempts);
                LoadMonitor.waitForQuiet(120, err);
                continue;
            }
            return measured.result(other, attempt);
        }
    }
}
