#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

The files are small valid inputs written from the format descriptions in
core/readers.h and core/model_file.h (an independent encoder: the fuzzers'
round-trip checks fail at once if this and core disagree). Run it again after
a format change: python3 fuzz/make_corpus.py
"""
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    assert len(data) < 10 * 1024, (target, name, len(data))
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def idx(type_code, dims, payload):
    return bytes([0, 0, type_code, len(dims)]) + b"".join(
        struct.pack(">I", d) for d in dims) + payload


def idx_seeds():
    put("idx_fuzzer", "u8_images", idx(0x08, [3, 2, 2], bytes(range(12))))
    put("idx_fuzzer", "u8_labels", idx(0x08, [4], bytes([7, 0, 9, 3])))
    put("idx_fuzzer", "i8", idx(0x09, [2], struct.pack(">bb", -1, 5)))
    put("idx_fuzzer", "i16", idx(0x0B, [2, 1], struct.pack(">hh", -2, 258)))
    put("idx_fuzzer", "i32", idx(0x0C, [2], struct.pack(">ii", -70000, 9)))
    put("idx_fuzzer", "f32", idx(0x0D, [1, 3], struct.pack(">fff", 1.5, -2, 0)))
    put("idx_fuzzer", "f64", idx(0x0E, [2, 1, 1], struct.pack(">dd", 0.25, 1e9)))
    # 5 items of 4x4 pixels: like a tiny MNIST images file.
    put("idx_fuzzer", "mnist_like",
        idx(0x08, [5, 4, 4], bytes((i * 37) % 256 for i in range(80))))


def csv_seeds():
    # First byte: option flags (see csv_fuzzer.cc); 0 = labels in column 0.
    put("csv_fuzzer", "labels_first", b"\x00" + b"1,0.5,2\n0,3,4.25\n2,-1,1e3\n")
    put("csv_fuzzer", "header_crlf", b"\x02" + b"label,a,b\r\n1,2,3\r\n0,4,5\r\n")
    put("csv_fuzzer", "label_last_classes",
        b"\x0c" + b"0.1,0.2,3\n0.3,0.4,9\n")
    put("csv_fuzzer", "features_only", b"\x01" + b"1,2,3\n4,5,6\n")
    put("csv_fuzzer", "scaled_pixels",
        b"\x10" + b"5,0,128,255,17\n7,255,0,3,9\n")


# Enum values of core/spec.h.
SIGMOID, TANH, RELU, SOFTMAX, IDENTITY = 1, 2, 3, 4, 5
QUADRATIC, CROSS_ENTROPY = 1, 2
STANDARD_NORMAL, SCALED_NORMAL = 1, 2
FLOAT64, FLOAT32 = 1, 2


def sealed(body):
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def model(sizes, hidden, output, cost, init, dtype, seed, epochs, metadata):
    header = struct.pack("<I", len(sizes))
    header += b"".join(struct.pack("<I", n) for n in sizes)
    header += bytes([hidden, output, cost, init, dtype, 0, 0, 0])
    header += struct.pack("<QQI", seed, epochs, len(metadata)) + metadata
    fmt = "<f" if dtype == FLOAT32 else "<d"
    params = b""
    k = 0
    for l in range(1, len(sizes)):
        # w(l) column-major (n_l x n_{l-1}), then b(l): small distinct values.
        for _ in range(sizes[l] * sizes[l - 1] + sizes[l]):
            k += 1
            params += struct.pack(fmt, ((k * 7919) % 200 - 100) / 64.0)
    body = b"BPMODEL\0" + struct.pack("<II", 1, len(header)) + header + params
    return sealed(body)


def model_seeds():
    put("model_file_fuzzer", "f64_tanh_sigmoid_xent",
        model([3, 4, 2], TANH, SIGMOID, CROSS_ENTROPY, STANDARD_NORMAL,
              FLOAT64, 7, 42, b"meta\0data"))
    put("model_file_fuzzer", "f32_relu_identity_quad",
        model([2, 3, 3, 1], RELU, IDENTITY, QUADRATIC, SCALED_NORMAL,
              FLOAT32, 1, 0, b""))
    put("model_file_fuzzer", "f64_sigmoid_softmax",
        model([4, 3], SIGMOID, SOFTMAX, CROSS_ENTROPY, SCALED_NORMAL,
              FLOAT64, 2**63, 5, b'{"id":"m1"}'))
    put("model_file_fuzzer", "f32_sigmoid_quad",
        model([1, 1], SIGMOID, SIGMOID, QUADRATIC, STANDARD_NORMAL,
              FLOAT32, 0, 1, b"x"))


def dataset(metadata, inputs, n, features, class_count=0, labels=(),
            target_rows=0, targets=()):
    body = b"BPDATA\0\0" + struct.pack("<II", 1, len(metadata)) + metadata
    body += struct.pack("<QIII", n, features, class_count, target_rows)
    body += b"".join(struct.pack("<d", v) for v in inputs)
    if class_count:
        body += b"".join(struct.pack("<I", v) for v in labels)
    else:
        body += b"".join(struct.pack("<d", v) for v in targets)
    return sealed(body)


def dataset_seeds():
    put("dataset_file_fuzzer", "labels",
        dataset(b"desc", [0.5, -1.25, 3.0, 1e-300, 7.0, -0.0], 3, 2,
                class_count=4, labels=[3, 0, 2]))
    put("dataset_file_fuzzer", "targets",
        dataset(b"", [1.0, 2.0], 2, 1, target_rows=3,
                targets=[0.25, -1.0, 0.0, 0.75, 1.0, 1.0 / 3]))
    put("dataset_file_fuzzer", "one_example",
        dataset(b"m", [0.0], 1, 1, class_count=1, labels=[0]))


if __name__ == "__main__":
    idx_seeds()
    csv_seeds()
    model_seeds()
    dataset_seeds()
