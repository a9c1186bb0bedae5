package dev.moe.cli.bench;

import picocli.CommandLine.Command;

/** {@code moe bench}: measurement harnesses for the expert kernels and one MoE layer (not tests: numbers). */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Benchmarks: expert FFN kernels against the machine's limits, one MoE layer in process, and the"
                + " first calls of a fresh JVM after the kernel warm-up.",
        subcommands = {KernelBench.class, LayerBench.class, WarmupBench.class})
public final class BenchCommand implements Runnable {

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        throw new picocli.CommandLine.ParameterException(spec.commandLine(), "bench needs a subcommand: kernel, layer or warmup");
    }
}
