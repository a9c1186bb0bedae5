package dev.moe.router.discovery;

import dev.moe.router.dispatch.ExpertChannels;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerPort;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodCondition;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.context.SmartLifecycle;

/**
 * Discovery of expert pods through the Kubernetes API: a shared informer on the pods of this release (namespace and
 * label selector from configuration). A pod that is Ready, has an IP and is not terminating is probed (DescribeShard)
 * and its experts enter the {@link ExpertDirectory}; a pod that turns unready, is deleted or changes its IP leaves
 * the table at once and the channel to its old address is shut down (calls in flight on it fail with UNAVAILABLE).
 */
public final class KubernetesExpertDiscovery implements SmartLifecycle {
    private static final Logger log = LoggerFactory.getLogger(KubernetesExpertDiscovery.class);
    private static final Duration RETRY_INTERVAL = Duration.ofSeconds(1);
    private static final int MAX_PROBES = 30;
    private static final Duration CHANNEL_GRACE = Duration.ofSeconds(5);

    private final KubernetesClient client;
    private final String namespace;
    private final String labelSelector;
    private final int defaultPort;
    private final ExpertServerProbe probe;
    private final ExpertDirectory directory;
    private final ExpertChannels channels;
    private final ExecutorService probes = Executors.newVirtualThreadPerTaskExecutor();
    /**
     * pod uid → its current registration (the address it is known under, in the directory or being probed). A probe
     * may only publish its result while its own registration object is still the current one: a pod that flapped
     * away and back meanwhile has a new registration, and a new channel. Guarded by this.
     */
    private final Map<String, Registration> registrations = new HashMap<>();

    /** One appearance of a pod at an address; compared by identity. */
    private static final class Registration {
        final String address;

        Registration(String address) {
            this.address = address;
        }
    }
    private volatile SharedIndexInformer<Pod> informer;

    public KubernetesExpertDiscovery(KubernetesClient client, String namespace, String labelSelector, int defaultPort,
                                     ExpertServerProbe probe, ExpertDirectory directory, ExpertChannels channels) {
        this.client = client;
        this.namespace = namespace != null && !namespace.isBlank() ? namespace : client.getNamespace();
        this.labelSelector = labelSelector;
        this.defaultPort = defaultPort;
        this.probe = probe;
        this.directory = directory;
        this.channels = channels;
    }

    @Override
    public void start() {
        log.info("watching expert pods in namespace {} with labels {}", namespace, labelSelector);
        informer = client.pods().inNamespace(namespace).withLabelSelector(labelSelector)
                .inform(new ResourceEventHandler<>() {
                    @Override
                    public void onAdd(Pod pod) {
                        reconcile(pod);
                    }

                    @Override
                    public void onUpdate(Pod oldPod, Pod newPod) {
                        reconcile(newPod);
                    }

                    @Override
                    public void onDelete(Pod pod, boolean deletedFinalStateUnknown) {
                        forget(uid(pod));
                    }
                }, Duration.ofMinutes(5).toMillis());
    }

    /** Brings the table in line with one pod's current state. */
    void reconcile(Pod pod) {
        String uid = uid(pod);
        String address = servingAddress(pod);
        Registration registration;
        synchronized (this) {
            Registration known = registrations.get(uid);
            if (known != null && known.address.equals(address)) {
                return; // nothing changed for the table
            }
            forget(uid);
            if (address == null) {
                return;
            }
            registration = new Registration(address);
            registrations.put(uid, registration);
        }
        probes.submit(() -> probeUntilKnown(uid, registration, pod.getMetadata().getName()));
    }

    private void probeUntilKnown(String uid, Registration registration, String podName) {
        for (int attempt = 1; attempt <= MAX_PROBES; attempt++) {
            if (!isCurrent(uid, registration)) {
                return; // the pod moved on while we were waiting
            }
            ExpertServerProbe.Outcome outcome = probe.probe(registration.address);
            if (outcome instanceof ExpertServerProbe.Outcome.Accepted accepted) {
                synchronized (this) {
                    if (registrations.get(uid) == registration) {
                        directory.put(accepted.endpoint());
                    }
                }
                return;
            }
            if (outcome instanceof ExpertServerProbe.Outcome.Refused) {
                return;
            }
            try {
                Thread.sleep(RETRY_INTERVAL);
            } catch (InterruptedException e) {
                return;
            }
        }
        log.warn("expert pod {} at {} is Ready but did not answer DescribeShard {} times; waiting for its next update",
                podName, registration.address, MAX_PROBES);
    }

    private synchronized boolean isCurrent(String uid, Registration registration) {
        return registrations.get(uid) == registration;
    }

    /** Removes a pod's address from the table and closes its channel. */
    private synchronized void forget(String uid) {
        Registration registration = registrations.remove(uid);
        if (registration != null) {
            directory.remove(registration.address);
            channels.release(registration.address, CHANNEL_GRACE); // frees the address now; calls in flight go on
        }
    }

    /** {@code ip:port} of a pod that may serve, or null when it is not Ready, has no IP or is terminating. */
    String servingAddress(Pod pod) {
        if (pod.getMetadata().getDeletionTimestamp() != null || pod.getStatus() == null) {
            return null;
        }
        String ip = pod.getStatus().getPodIP();
        boolean ready = pod.getStatus().getConditions() != null
                && pod.getStatus().getConditions().stream().anyMatch(KubernetesExpertDiscovery::isReady);
        if (!ready || ip == null || ip.isBlank()) {
            return null;
        }
        return (ip.contains(":") ? "[" + ip + "]" : ip) + ":" + grpcPort(pod);
    }

    private int grpcPort(Pod pod) {
        if (pod.getSpec() != null && pod.getSpec().getContainers() != null) {
            for (Container container : pod.getSpec().getContainers()) {
                if (container.getPorts() == null) {
                    continue;
                }
                for (ContainerPort port : container.getPorts()) {
                    if ("grpc".equals(port.getName()) && port.getContainerPort() != null) {
                        return port.getContainerPort();
                    }
                }
            }
        }
        return defaultPort;
    }

    private static String uid(Pod pod) {
        String uid = pod.getMetadata().getUid();
        return uid != null ? uid : pod.getMetadata().getNamespace() + "/" + pod.getMetadata().getName();
    }

    /** Pods currently tracked (Ready and known by address), for tests and diagnostics. */
    public synchronized int trackedPods() {
        return registrations.size();
    }

    @Override
    public void stop() {
        SharedIndexInformer<Pod> current = informer;
        if (current != null) {
            current.close();
        }
        probes.shutdownNow();
    }

    @Override
    public boolean isRunning() {
        return informer != null && !probes.isShutdown();
    }

    private static boolean isReady(PodCondition condition) {
        return "Ready".equals(condition.getType()) && "True".equals(condition.getStatus());
    }
}
