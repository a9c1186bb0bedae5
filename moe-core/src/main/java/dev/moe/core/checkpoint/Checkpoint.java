package dev.moe.core.checkpoint;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Stream;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * A checkpoint directory as published on the Hugging Face Hub: {@code config.json} plus either
 * {@code model.safetensors} or shards {@code model-0000N-of-0000M.safetensors} listed by
 * {@code model.safetensors.index.json}.
 *
 * <p>Shards are opened (and memory-mapped) lazily, on the first read of a tensor they hold, so a process
 * only maps the files with tensors it needs.
 */
public final class Checkpoint implements AutoCloseable {
    public static final String CONFIG_FILE = "config.json";
    public static final String SINGLE_FILE = "model.safetensors";
    public static final String INDEX_FILE = "model.safetensors.index.json";
    private static final JsonMapper JSON = JsonMapper.builder().build();
    private static final int FINGERPRINT_SAMPLE_BYTES = 64 * 1024;
    private static final int DEFAULT_FP8_BLOCK = 128;

    private final Path directory;
    private final byte[] configBytes;
    private final JsonNode config;
    /** tensor name → shard file name. */
    private final Map<String, String> weightMap;
    private final Map<String, SafetensorsFile> openShards = new ConcurrentHashMap<>();

    private Checkpoint(Path directory, byte[] configBytes, JsonNode config, Map<String, String> weightMap) {
        this.directory = directory;
        this.configBytes = configBytes;
        this.config = config;
        this.weightMap = weightMap;
    }

    public static Checkpoint open(Path directory) {
        if (!Files.isDirectory(directory)) {
            throw new CheckpointException(directory + " is not a directory: the model must be a checkpoint folder"
                    + " holding config.json and *.safetensors");
        }
        Path configPath = directory.resolve(CONFIG_FILE);
        byte[] configBytes;
        try {
            configBytes = Files.readAllBytes(configPath);
        } catch (NoSuchFileException e) {
            throw new CheckpointException(directory + " has no config.json: download the whole model repository,"
                    + " not only its weights");
        } catch (IOException e) {
            throw new CheckpointException("cannot read " + configPath + ": " + e.getMessage(), e);
        }
        JsonNode config;
        try {
            config = JSON.readTree(configBytes);
        } catch (RuntimeException e) {
            throw new CheckpointException(configPath + " is not valid JSON: " + e.getMessage(), e);
        }
        if (config == null || !config.isObject()) {
            throw new CheckpointException(configPath + " is not a JSON object");
        }
        return new Checkpoint(directory, configBytes, config, readWeightMap(directory));
    }

    private static Map<String, String> readWeightMap(Path directory) {
        Path index = directory.resolve(INDEX_FILE);
        Map<String, String> weightMap = new LinkedHashMap<>();
        if (Files.exists(index)) {
            JsonNode root;
            try {
                root = JSON.readTree(Files.readAllBytes(index));
            } catch (IOException | RuntimeException e) {
                throw new CheckpointException("cannot read " + index + ": " + e.getMessage(), e);
            }
            JsonNode map = root.get("weight_map");
            if (map == null || !map.isObject()) {
                throw new CheckpointException(index + " has no \"weight_map\" object");
            }
            for (Map.Entry<String, JsonNode> e : map.properties()) {
                String shard = e.getValue().asString();
                if (shard.contains("/") || shard.contains("\\")) {
                    throw new CheckpointException(index + ": shard name '" + shard + "' must be a plain file name");
                }
                if (!Files.isRegularFile(directory.resolve(shard))) {
                    throw new CheckpointException(index + " names shard '" + shard + "' (for tensor '" + e.getKey()
                            + "') but " + directory.resolve(shard) + " does not exist: the download is incomplete");
                }
                weightMap.put(e.getKey(), shard);
            }
            return weightMap;
        }
        List<String> files;
        try (Stream<Path> list = Files.list(directory)) {
            files = list.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(".safetensors")).sorted().toList();
        } catch (IOException e) {
            throw new CheckpointException("cannot list " + directory + ": " + e.getMessage(), e);
        }
        if (files.isEmpty()) {
            throw new CheckpointException(directory + " holds no *.safetensors file (PyTorch .bin checkpoints are not"
                    + " supported: convert them to safetensors first)");
        }
        if (files.size() > 1 && !files.contains(SINGLE_FILE)) {
            throw new CheckpointException(directory + " holds " + files.size() + " safetensors files but no "
                    + INDEX_FILE + ": cannot tell which shard holds which tensor");
        }
        String single = files.contains(SINGLE_FILE) ? SINGLE_FILE : files.getFirst();
        try (SafetensorsFile file = SafetensorsFile.open(directory.resolve(single))) {
            for (String name : file.tensors().keySet()) {
                weightMap.put(name, single);
            }
        }
        return weightMap;
    }

    public Path directory() {
        return directory;
    }

    /** The parsed {@code config.json}. */
    public JsonNode config() {
        return config;
    }

    public boolean hasTensor(String name) {
        return weightMap.containsKey(name);
    }

    /** Every tensor name of the checkpoint, in index order. */
    public Iterable<String> tensorNames() {
        return weightMap.keySet();
    }

    public TensorInfo tensor(String name) {
        return shardOf(name).tensor(name);
    }

    /** Reads a tensor widened to float32 (F32, BF16, F16, FP8 codes without their scale). */
    public float[] readFloats(String name) {
        SafetensorsFile shard = shardOf(name);
        return shard.readFloats(shard.tensor(name));
    }

    public int[] readInts(String name) {
        SafetensorsFile shard = shardOf(name);
        return shard.readInts(shard.tensor(name));
    }

    /**
     * Reads a 2-D weight {@code [rows, cols]} as float32, checking its shape. An FP8 weight is dequantised with its
     * {@code <name>_scale_inv} block scales (DeepSeek-V3 layout: one float32 per {@code blockRows × blockCols}
     * block, ceil at the edges): value = code value × scale_inv.
     */
    public float[] readMatrix(String name, int rows, int cols) {
        TensorInfo info = tensor(name);
        if (info.shape().length != 2 || info.shape()[0] != rows || info.shape()[1] != cols) {
            throw new CheckpointException("tensor '" + name + "' has shape " + info.shapeString() + ", expected ["
                    + rows + ", " + cols + "] from config.json");
        }
        float[] values = readFloats(name);
        if (info.dtype() == DType.F8_E4M3) {
            applyBlockScales(name, values, rows, cols);
        } else if (!info.dtype().isFloatingWeight()) {
            throw new CheckpointException("tensor '" + name + "' is " + info.dtype() + ", not a floating-point weight");
        }
        return values;
    }

    private void applyBlockScales(String name, float[] values, int rows, int cols) {
        String scaleName = name + "_scale_inv";
        if (!hasTensor(scaleName)) {
            throw new CheckpointException("FP8 tensor '" + name + "' has no '" + scaleName + "' block scales");
        }
        TensorInfo scaleInfo = tensor(scaleName);
        if (scaleInfo.shape().length != 2) {
            throw new CheckpointException("'" + scaleName + "' has shape " + scaleInfo.shapeString() + ", expected 2-D");
        }
        int scaleRows = (int) scaleInfo.shape()[0];
        int scaleCols = (int) scaleInfo.shape()[1];
        int blockRows = blockSize(0, rows, scaleRows);
        int blockCols = blockSize(1, cols, scaleCols);
        if (ceilDiv(rows, blockRows) != scaleRows || ceilDiv(cols, blockCols) != scaleCols) {
            throw new CheckpointException("'" + scaleName + "' " + scaleInfo.shapeString() + " does not tile [" + rows
                    + ", " + cols + "] in " + blockRows + "x" + blockCols + " blocks");
        }
        float[] scales = readFloats(scaleName);
        for (int r = 0; r < rows; r++) {
            int scaleRow = (r / blockRows) * scaleCols;
            for (int c = 0; c < cols; c++) {
                values[r * cols + c] *= scales[scaleRow + c / blockCols];
            }
        }
    }

    /**
     * Block edge along one axis: {@code quantization_config.weight_block_size} when present, else DeepSeek's 128×128
     * (the block size every FP8 checkpoint it publishes uses). A scale tensor that does not tile the weight in those
     * blocks is refused rather than guessed.
     */
    private int blockSize(int axis, int extent, int numBlocks) {
        JsonNode blocks = config.path("quantization_config").path("weight_block_size");
        if (blocks.isArray() && blocks.size() == 2 && blocks.get(axis).isIntegralNumber() && blocks.get(axis).asInt() > 0) {
            return blocks.get(axis).asInt();
        }
        return DEFAULT_FP8_BLOCK;
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    /**
     * Identifies the checkpoint without reading all its weights: SHA-256 over config.json and, for every shard, its
     * name, size, safetensors header (tensor names, dtypes, shapes, offsets) and the first and last 64 KiB of its data
     * (so two checkpoints of one architecture with different weights differ). Processes that loaded the same files
     * agree.
     */
    public String fingerprint() {
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            sha.update(configBytes);
            for (String shard : new TreeSet<>(weightMap.values())) {
                SafetensorsFile file = shard(shard);
                sha.update(shard.getBytes(java.nio.charset.StandardCharsets.UTF_8));
                sha.update(Long.toString(Files.size(file.path())).getBytes(java.nio.charset.StandardCharsets.UTF_8));
                sha.update(file.headerBytes());
                file.sampleData(FINGERPRINT_SAMPLE_BYTES, sha::update);
            }
            return HexFormat.of().formatHex(sha.digest(), 0, 16);
        } catch (NoSuchAlgorithmException | IOException e) {
            throw new CheckpointException("cannot fingerprint " + directory + ": " + e.getMessage(), e);
        }
    }

    /** Tensors grouped by shard, for diagnostics. */
    public Map<String, List<String>> tensorsByShard() {
        Map<String, List<String>> byShard = new TreeMap<>();
        weightMap.forEach((tensor, shard) -> byShard.computeIfAbsent(shard, s -> new ArrayList<>()).add(tensor));
        return byShard;
    }

    private SafetensorsFile shardOf(String name) {
        String shard = weightMap.get(name);
        if (shard == null) {
            throw new CheckpointException(directory + ": checkpoint has no tensor '" + name + "' (is config.json"
                    + " model_type right for these weights?)");
        }
        return shard(shard);
    }

    private SafetensorsFile shard(String fileName) {
        return openShards.computeIfAbsent(fileName, f -> SafetensorsFile.open(directory.resolve(f)));
    }

    @Override
    public void close() {
        openShards.values().forEach(SafetensorsFile::close);
        openShards.clear();
    }
}
