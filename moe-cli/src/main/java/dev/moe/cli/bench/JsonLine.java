package dev.moe.cli.bench;

import java.util.Locale;

/** One JSON object on one line, keys in insertion order; non-finite numbers become null. */
final class JsonLine {
    private final StringBuilder sb = new StringBuilder("{");

    private JsonLine key(String key) {
        if (sb.length() > 1) {
            sb.append(',');
        }
        quote(key);
        sb.append(':');
        return this;
    }

    JsonLine put(String key, String value) {
        key(key);
        if (value == null) {
            sb.append("null");
        } else {
            quote(value);
        }
        return this;
    }

    JsonLine put(String key, long value) {
        key(key).sb.append(value);
        return this;
    }

    JsonLine put(String key, boolean value) {
        key(key).sb.append(value);
        return this;
    }

    /**
     * A number with at most {@code decimals} decimals (trailing zeros dropped); a non-zero value too small for them
     * keeps three significant digits instead of becoming 0 (a tiny shape on a loaded machine can be that slow).
     */
    JsonLine put(String key, double value, int decimals) {
        key(key);
        if (!Double.isFinite(value)) {
            sb.append("null");
            return this;
        }
        String s = String.format(Locale.ROOT, "%." + decimals + "f", value);
        if (value != 0 && Double.parseDouble(s) == 0) {
            s = new java.math.BigDecimal(value).round(new java.math.MathContext(3)).toPlainString();
        }
        if (s.indexOf('.') >= 0) {
            int end = s.length();
            while (s.charAt(end - 1) == '0') {
                end--;
            }
            if (s.charAt(end - 1) == '.') {
                end++; // keep one zero: 1.0 stays a float-looking number
            }
            s = s.substring(0, end);
        }
        if (s.equals("-0.0")) {
            s = "0.0";
        }
        sb.append(s);
        return this;
    }

    JsonLine put(String key, double value) {
        return put(key, value, 4);
    }

    /** A measured time: median, min and max ms per call, repeats, calls per repeat. */
    JsonLine putTime(Measure.Result time) {
        return put("ms", time.medianMs(), 5)
                .put("ms_min", time.minMs(), 5)
                .put("ms_max", time.maxMs(), 5)
                .put("repeats", time.repeats())
                .put("calls_per_repeat", time.callsPerRepeat());
    }

    /** Fractions of x (gate/up input) and h (down input) pruned, and the union densities of their active rows. */
    JsonLine putSparsity(double prunedX, double prunedH, double unionX, double unionH) {
        return put("achieved_sparsity_x", prunedX, 4)
                .put("achieved_sparsity_h", prunedH, 4)
                .put("union_density_x", unionX, 4)
                .put("union_density_h", unionH, 4);
    }

    private void quote(String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                default -> {
                    if (c < 0x20) {
                        sb.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
                }
            }
        }
        sb.append('"');
    }

    @Override
    public String toString() {
        return sb + "}";
    }
}
