package dev.moe.core.checkpoint;

import java.util.Arrays;

/**
 * One entry of a safetensors header.
 *
 * @param name       tensor name, e.g. {@code model.layers.1.mlp.gate.weight}
 * @param dtype      element type
 * @param shape      dimensions, row-major
 * @param dataBegin  byte offset of the first element, relative to the start of the data section
 * @param dataEnd    byte offset one past the last element
 */
public record TensorInfo(String name, DType dtype, long[] shape, long dataBegin, long dataEnd) {

    public long numElements() {
        long n = 1;
        for (long d : shape) {
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    public long byteSize() {
        return dataEnd - dataBegin;
    }

    public String shapeString() {
        return Arrays.toString(shape);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof TensorInfo t && name.equals(t.name) && dtype == t.dtype
                && Arrays.equals(shape, t.shape) && dataBegin == t.dataBegin && dataEnd == t.dataEnd;
    }

    @Override
    public int hashCode() {
        return name.hashCode() * 31 + Arrays.hashCode(shape);
    }

    @Override
    public String toString() {
        return name + " " + dtype + shapeString();
    }
}
