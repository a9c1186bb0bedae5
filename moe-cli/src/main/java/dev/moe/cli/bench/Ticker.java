package dev.moe.cli.bench;

import java.io.PrintStream;
import java.util.Locale;

/** Progress of a slow step on stderr: redrawn in place on a terminal, a line per ~10% otherwise. */
final class Ticker {
    private final String label;
    private final long total;
    private final PrintStream err;
    private final boolean terminal = System.console() != null;
    private final long startNanos = System.nanoTime();
    private long done;
    private int lastTenth = -1;

    Ticker(String label, long total, PrintStream err) {
        this.label = label;
        this.total = total;
        this.err = err;
        show();
    }

    synchronized void step() {
        done++;
        show();
    }

    private void show() {
        int tenth = total <= 0 ? 10 : (int) (10 * done / total);
        if (!terminal && tenth == lastTenth && done != total) {
            return;
        }
        lastTenth = tenth;
        String line = String.format(Locale.ROOT, "%s %d/%d (%.1f s)", label, done, total,
                (System.nanoTime() - startNanos) / 1e9);
        if (terminal) {
            err.print("\r" + line + (done >= total ? "\n" : ""));
        } else {
            err.println(line);
        }
        err.flush();
    }
}
