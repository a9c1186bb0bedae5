package dev.moe.cli;

import java.io.PrintStream;

/** A progress bar on stderr: redrawn in place on a terminal, one line per 10% otherwise (logs, CI). */
final class Progress {
    private final String label;
    private final PrintStream out;
    private final boolean terminal = System.console() != null;
    private int lastShown = -1;

    Progress(String label, PrintStream out) {
        this.label = label;
        this.out = out;
    }

    synchronized void update(long done, long total) {
        int percent = total <= 0 ? 100 : (int) (100 * done / total);
        int step = terminal ? percent : percent / 10 * 10;
        if (step == lastShown) {
            return;
        }
        lastShown = step;
        int filled = percent / 5;
        String bar = "#".repeat(filled) + " ".repeat(20 - filled);
        String line = String.format("%s [%s] %3d%% %,.0f/%,.0f MiB", label, bar, percent, done / 1048576.0,
                total / 1048576.0);
        if (terminal) {
            out.print("\r" + line + (percent >= 100 ? "\n" : ""));
        } else {
            out.println(line);
        }
        out.flush();
    }
}
