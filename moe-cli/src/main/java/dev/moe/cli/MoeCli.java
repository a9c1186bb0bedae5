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
            if (e instanceof UserError) {
                commandLine.getErr().println("moe: " + e.getMessage());
                return 2;
            }
            commandLine.getErr().println("moe: " + e.getMessage());
            return 1;
        });
        return cli.execute(args);
    }

    /** Bad usage or bad input: one line on stderr, exit code 2. */
    static final class UserError extends RuntimeException {
        UserError(String message) {
            super(message);
        }
    }
}
