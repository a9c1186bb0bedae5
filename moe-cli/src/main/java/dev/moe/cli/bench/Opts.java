package dev.moe.cli.bench;

import java.util.List;
import java.util.Locale;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;

/** Option checks shared by the bench commands: bad values are usage errors (exit 2, one message). */
final class Opts {
    private Opts() {
    }

    static CommandLine.ParameterException usage(CommandSpec spec, String message) {
        return new CommandLine.ParameterException(spec.commandLine(), message);
    }

    /** Seconds: {@code 0.05}, {@code 50ms}, {@code 2s}. */
    static double seconds(CommandSpec spec, String option, String value) {
        String s = value.trim().toLowerCase(Locale.ROOT);
        double factor = 1;
        if (s.endsWith("ms")) {
            factor = 1e-3;
            s = s.substring(0, s.length() - 2);
        } else if (s.endsWith("s")) {
            s = s.substring(0, s.length() - 1);
        }
        try {
            double v = Double.parseDouble(s) * factor;
            if (v >= 0 && Double.isFinite(v)) {
                return v;
            }
        } catch (NumberFormatException e) {
            // fall through
        }
        throw usage(spec, option + " '" + value + "' is not a duration (e.g. 0.05, 50ms, 1s)");
    }

    static int[] positiveInts(CommandSpec spec, String option, List<Integer> values) {
        if (values.isEmpty()) {
            throw usage(spec, option + " needs at least one value");
        }
        int[] out = new int[values.size()];
        for (int i = 0; i < out.length; i++) {
            if (values.get(i) == null || values.get(i) < 1) {
                throw usage(spec, option + " values must be >= 1, got " + values.get(i));
            }
            out[i] = values.get(i);
        }
        return out;
    }

    static double[] fractions(CommandSpec spec, String option, List<Double> values) {
        if (values.isEmpty()) {
            throw usage(spec, option + " needs at least one value");
        }
        double[] out = new double[values.size()];
        for (int i = 0; i < out.length; i++) {
            Double v = values.get(i);
            if (v == null || !(v >= 0 && v < 1)) {
                throw usage(spec, option + " values must be in [0, 1), got " + v);
            }
            out[i] = v;
        }
        return out;
    }
}
