package dev.moe.core.kernels;

import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.IntConsumer;

/**
 * A persistent pool of kernel threads (one per core by default) for the parallel loops of expert compute. The caller
 * works too; workers spin briefly for the next loop before parking, so back-to-back loops of one call (gate/up, then
 * down) do not pay a wake-up each. Each thread first runs its own share of a loop's units, then helps with the shares
 * of the others (see {@link Loop}). Loops from concurrent calls run one after another: each already uses every core.
 */
public final class KernelPool implements AutoCloseable {
    private static final int SPIN_BEFORE_PARK = 20_000;

    private final Thread[] workers;
    private final ReentrantLock loopLock = new ReentrantLock();
    private volatile Loop current;
    private volatile int generation;
    private volatile boolean closed;

    /** Ints per 64-byte cache line: each counter of a loop sits alone on one. */
    private static final int LINE = 16;

    /**
     * One parallel loop. Thread {@code p} of {@code parts} (the caller is part 0) owns the units
     * {@code [start(p), start(p + 1))} and claims them from its own counter; once they are gone it takes what the
     * others have not claimed yet from theirs. With one shared next-unit counter every unit was a locked
     * read-modify-write of a line the other core had just written, 14 cross-core round trips in a call of one Qwen3
     * expert (2 threads: a call with no kernel work 1.57 → 1.45 µs, 5.65 → 4.8 µs while the VM's cores sit far
     * apart; int8 batch 1 0.084-0.087 → 0.080-0.082 ms). Contiguous shares also keep each thread's outputs apart:
     * interleaved ones (units p, p + parts, ...) put neighbouring panels' outputs on shared lines again (batch 16 stub
     * calls 25 → 42 µs, int8 batch 1 0.075-0.078 → 0.087-0.091 ms with the cores far apart).
     */
    private static final class Loop {
        final int units;
        final int parts;
        final IntConsumer body;
        /** {@code [next(p)]}: the next unit of part p; {@code [done()]}: units finished; each on its own line. */
        final AtomicIntegerArray counters;
        volatile Throwable failure;
        final Thread caller = Thread.currentThread();

        Loop(int units, int parts, IntConsumer body) {
            this.units = units;
            this.parts = parts;
            this.body = body;
            this.counters = new AtomicIntegerArray(LINE * (parts + 2)); // a line of padding before the first counter
            for (int p = 0; p < parts; p++) {
                counters.setPlain(next(p), start(p)); // published to the workers by the volatile write of current
            }
        }

        int start(int part) {
            return (int) ((long) units * part / parts);
        }

        static int next(int part) {
            return LINE * (part + 1);
        }

        int done() {
            return LINE * (parts + 1);
        }

        boolean finished() {
            return counters.get(done()) >= units;
        }

        /** Runs units as part {@code part}: its own share first, then the others' unclaimed ones. */
        void work(int part) {
            int finished = 0;
            for (int i = 0; i < parts; i++) {
                int p = (part + i) % parts;
                int end = start(p + 1);
                int unit;
                while ((unit = counters.getAndIncrement(next(p))) < end) {
                    try {
                        body.accept(unit);
                    } catch (Throwable t) {
                        failure = t;
                    }
                    finished++;
                }
            }
            if (finished > 0 && counters.addAndGet(done(), finished) == units) {
                LockSupport.unpark(caller);
            }
        }
    }

    /** A pool of {@code threads} threads in all, the caller included. */
    public KernelPool(int threads) {
        if (threads < 1) {
            throw new IllegalArgumentException("kernel threads must be >= 1, got " + threads);
        }
        workers = new Thread[threads - 1];
        for (int i = 0; i < workers.length; i++) {
            int part = i + 1;
            workers[i] = Thread.ofPlatform().daemon().name("moe-kernel-" + part).start(() -> workerLoop(part));
        }
    }

    public static KernelPool ofAvailableProcessors() {
        return new KernelPool(Runtime.getRuntime().availableProcessors());
    }

    public int threads() {
        return workers.length + 1;
    }

    /** Callers waiting for the pool while another caller's loop runs (an estimate, for monitoring). */
    public int waitingCallers() {
        return loopLock.getQueueLength();
    }

    /** Runs {@code body} for every unit in [0, units) on the pool; returns when all are done, rethrowing a failure. */
    public void parallelFor(int units, IntConsumer body) {
        if (units <= 0) {
            return;
        }
        if (workers.length == 0 || units == 1) {
            for (int u = 0; u < units; u++) {
                body.accept(u);
            }
            return;
        }
        loopLock.lock();
        try {
            Loop loop = new Loop(units, workers.length + 1, body);
            current = loop;
            generation++;
            for (Thread w : workers) {
                LockSupport.unpark(w);
            }
            loop.work(0);
            int spins = 0;
            while (!loop.finished()) {
                if (++spins > SPIN_BEFORE_PARK) {
                    LockSupport.parkNanos(this, 20_000);
                } else {
                    Thread.onSpinWait();
                }
            }
            current = null;
            if (loop.failure != null) {
                if (loop.failure instanceof RuntimeException r) {
                    throw r;
                }
                if (loop.failure instanceof Error e) {
                    throw e;
                }
                throw new IllegalStateException(loop.failure);
            }
        } finally {
            loopLock.unlock();
        }
    }

    private void workerLoop(int part) {
        int seen = 0;
        while (!closed) {
            int spins = 0;
            while (generation == seen && !closed) {
                if (++spins > SPIN_BEFORE_PARK) {
                    LockSupport.park(this);
                } else {
                    Thread.onSpinWait();
                }
            }
            seen = generation;
            Loop loop = current;
            if (loop != null) {
                loop.work(part);
            }
        }
    }

    @Override
    public void close() {
        closed = true;
        for (Thread w : workers) {
            LockSupport.unpark(w);
        }
    }
}
