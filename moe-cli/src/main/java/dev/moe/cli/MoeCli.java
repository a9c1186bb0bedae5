package dev.moe.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code bin/moe}: run a local cluster, send a forward, calibrate activation sparsity, benchmark the kernels. */
@Command(name = "moe", mixinStandardHelpOptions = true, version = "moe-serving 0.1.0",
        description = "Serve Mixture-of-Experts models as gRPC microservices: a router and expert servers.",
        subcommands = {LocalCommand.class, ForwardCommand.class, CalibrateCommand.class,
                dev.moe.cli.bench.BenchCommand.class, CommandLine.HelpCommand.class})
public final class MoeCli {

    public static void main(String[] args) {
        System.exit(run(args));
    }

    /** Runs a command line and returns the exit code (0 success, 1 failure, 2 bad usage or bad input). */
    public static int run(String... args) {
        CommandLine cli = new CommandLine(new MoeCli());
        cli.setExecutionExceptionHandler((e, commandLine, parseResult) -> {
            commandLine.getErr().println("moe: " + describe(e));
            return isUsersInput(e) ? 2 : 1;
        });
        try {
            return cli.execute(args);
        } catch (OutOfMemoryError e) {
            // Errors pass through picocli: say what to do instead of a stack trace.
            cli.getErr().printf(java.util.Locale.ROOT, "moe: out of memory (%s) with a %.1f GiB heap: give the JVM"
                    + " more with MOE_JAVA_OPTS=-Xmx<size>, or ask for less%n", e.getMessage(),
                    Runtime.getRuntime().maxMemory() / 1073741824.0);
            return 1;
        }
    }

    /**
     * One line for a failure. A server that fails to start wraps the reason (a bad checkpoint or thresholds file, a
     * port in use) in layers of framework exceptions: the message is that reason's, the deepest of the user's errors
     * in the chain, else the root cause's.
     */
    static String describe(Throwable e) {
        Throwable cause = significantCause(e);
        if (cause instanceof java.net.BindException) {
            return "cannot listen: " + cause.getMessage() + " (another process holds the port: choose another with"
                    + " --port, or --port 0 for any free one)";
        }
        String message = cause.getMessage();
        return message == null || message.isBlank() ? cause.getClass().getSimpleName() : message;
    }

    /** Bad input that the user can fix: exit code 2. */
    private static boolean isUsersInput(Throwable e) {
        return isUsersError(significantCause(e));
    }

    private static boolean isUsersError(Throwable t) {
        return t instanceof UserError || t instanceof dev.moe.core.checkpoint.CheckpointException
                || t instanceof dev.moe.core.sparsity.SparsityProfileException || t instanceof java.net.BindException;
    }

    private static Throwable significantCause(Throwable e) {
        Throwable users = null;
        Throwable root = e;
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            if (isUsersError(t)) {
                users = t;
            }
            root = t;
        }
        return users != null ? users : root;
    }

    /** Bad usage or bad input: one line on stderr, exit code 2. */
    public static final class UserError extends RuntimeException {
        public UserError(String message) {
            super(message);
        }
    }
}
