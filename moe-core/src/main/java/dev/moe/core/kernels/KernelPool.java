package dev.moe.core.kernels;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.IntConsumer;

/**
 * A persistent pool of kernel threads (one per core by default) for the parallel loops of expert compute. The caller
 * works too; workers spin briefly for the next loop before parking, so back-to-back loops of one call (gate/up, then
 * down) do not pay a wake-up each. Loops from concurrent calls run one after another: each already uses every core.
 */
public final class KernelPool implements AutoCloseable {
    private static final int SPIN_BEFORE_PARK = 20_000;

    private final Thread[] workers;
    private final ReentrantLock loopLock = new ReentrantLock();
    private volatile Loop current;
    private volatile int generation;
    private volatile boolean closed;

    private static final class Loop {
        final int units;
        final IntConsumer body;
        final AtomicInteger next = new AtomicInteger();
        final AtomicInteger done = new AtomicInteger();
        volatile Throwable failure;
        final Thread caller = Thread.currentThread();

        Loop(int units, IntConsumer body) {
            this.units = units;
            this.body = body;
        }

        void work() {
            int unit;
            int finished = 0;
            while ((unit = next.getAndIncrement()) < units) {
                try {
                    body.accept(unit);
                } catch (Throwable t) {
                    failure = t;
                }
                finished++;
            }
            if (finished > 0 && done.addAndGet(finished) == units) {
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
            workers[i] = Thread.ofPlatform().daemon().name("moe-kernel-" + (i + 1)).start(this::workerLoop);
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
            Loop loop = new Loop(units, body);
            current = loop;
            generation++;
            for (Thread w : workers) {
                LockSupport.unpark(w);
            }
            loop.work();
            int spins = 0;
            while (loop.done.get() < units) {
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

    private void workerLoop() {
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
                loop.work();
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
