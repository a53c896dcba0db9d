"""Raise the batch-scoring ceiling of a registered ONNX version: profile its graph per operator, and re-encode its
inputs so it scores the same rows with the same probabilities, faster.

The production graph takes one [N,1] input per feature. Profiled (`profile`, one thread, batch 4096), its string
half (Where, Concat, OneHotEncoder, ArrayFeatureExtractor, Split, LabelEncoder, Cast) is about a third of the kernel
time, and ORT's conversion of every Python string of every batch adds a fifth of the wall time on top. `reencode`
swaps that half for one int64 input (a mixed-radix code of the categorical columns, computed outside the graph from
Arrow columns) and a Gather from a constant table holding the original graph's own one-hot block for every
combination, feeds the numeric columns as one float32 [N,k] matrix, and declares the types ONNX cannot infer for the
ai.onnx.ml Imputer/Scaler outputs so ORT fuses each MatMul + Add + Relu into one FusedGemm. The dense layers,
weights, imputation and scaling are the original nodes, so the probabilities come out the same (checked by `compare`).

python scripts/onnx_ceiling.py profile /tmp/book.parquet --batch-rows 4096 8192 --rows 1000000
python scripts/onnx_ceiling.py check /tmp/book.parquet --rows 1000000
python scripts/onnx_ceiling.py bench /tmp/book.parquet --batch-rows 1024 4096 8192
python scripts/onnx_ceiling.py save /tmp/credit-scoring-reencoded.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoring.onnx_runtime import PROBABILITIES_OUTPUT, inference_session
from scoring.schema import MISSING_CATEGORY, FeatureSchema
from scripts.bench_batch_baselines import (
    build_feeds,
    feed_batches,
    least_contended,
    peak_rss_mb,
    read_features,
    resolve_version,
    timed,
)

NUMERIC_INPUT = "numeric_features"
CODE_INPUT = "category_code"
# Stands for "any category the model never saw" while probing; no real category contains a NUL character.
UNKNOWN_PROBE = "\x00unknown"
SHAPE_KEEPING_ML_OPS = ("Imputer", "Scaler")
# Names of the nodes `reencode` adds: `prune` keeps them first (they read graph inputs and constants only).
ADDED_NODES = ("numeric_in", "category_block")
KINDS = {
    "original": "original graph, run only (= (a))",
    "original+shapes": "original graph + declared shapes, run only",
    "original+feeds": "original graph, feeds from Arrow + run",
    "reencoded": "re-encoded graph, run only",
    "reencoded+codes": "re-encoded, codes from Arrow dictionary + run",
    "reencoded+codes-str": "re-encoded, codes from Arrow string + run",
}


# --- profiling ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpProfile:
    op_type: str
    nodes: int
    microseconds: float
    share: float  # of the kernel time summed over every node


@dataclass(frozen=True)
class GraphProfile:
    rows: int
    batch_rows: int
    wall_seconds: float  # session.run calls, as the caller sees them
    run_seconds: float  # ORT's model_run events: wall minus this is the Python binding (input conversion)
    kernel_seconds: float
    ops: list[OpProfile]


def profile_graph(
    model: onnx.ModelProto | Path, batches: Sequence[dict[str, np.ndarray]], threads: int = 1
) -> GraphProfile:
    """Run every batch once with ORT's profiler on and sum the kernel time per operator type."""
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        payload = model.SerializeToString() if isinstance(model, onnx.ModelProto) else Path(model).read_bytes()
        session = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
        # Warm-up run before the clock, as in the benchmarks; its events are dropped below (first model_run).
        session.run([PROBABILITIES_OUTPUT], batches[0])
        started = time.perf_counter()
        for batch in batches:
            session.run([PROBABILITIES_OUTPUT], batch)
        wall = time.perf_counter() - started
        events = json.loads(Path(session.end_profiling()).read_text())
    rows = sum(len(next(iter(batch.values()))) for batch in batches)
    return summarize_profile(events, rows, len(next(iter(batches[0].values()))), wall)


def summarize_profile(events: list[dict[str, Any]], rows: int, batch_rows: int, wall: float) -> GraphProfile:
    runs = [event for event in events if event.get("cat") == "Session" and event.get("name") == "model_run"]
    # Skip the warm-up run's events: everything that starts before the second model_run began.
    after = runs[1]["ts"] if len(runs) > 1 else 0
    durations: dict[str, float] = defaultdict(float)
    nodes: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= after:
            op_type = event["args"]["op_name"]
            durations[op_type] += event["dur"]
            nodes[op_type].add(event["name"])
    kernel = sum(durations.values())
    ops = [
        OpProfile(op_type, len(nodes[op_type]), micros, micros / kernel)
        for op_type, micros in sorted(durations.items(), key=lambda item: -item[1])
    ]
    run = sum(event["dur"] for event in runs[1:]) / 1e6
    return GraphProfile(rows, batch_rows, wall, run, kernel / 1e6, ops)


# --- re-encoding -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryClasses:
    """One categorical column: which class (a distinct one-hot block of the original graph) each value falls in."""

    name: str
    classes: int
    by_value: dict[str, int]  # known categories, "" and any token the graph itself recognises
    missing: int  # null
    unknown: int  # a value the original graph ignores (all-zero one-hot)
    stride: int  # this column's weight in the mixed-radix code


@dataclass(frozen=True)
class CodeEncoder:
    """Builds the re-encoded graph's feeds from Arrow data: the numeric matrix and the combined category code."""

    numeric_columns: list[str]  # order of the numeric matrix's columns (the original Concat's order)
    columns: list[CategoryClasses]
    passthrough: list[str] = field(default_factory=list)  # numeric features left as their own [N,1] inputs

    def encode(self, data: pa.RecordBatch | pa.Table) -> dict[str, np.ndarray]:
        rows = data.num_rows
        feeds: dict[str, np.ndarray] = {}
        if self.numeric_columns:
            matrix = np.empty((rows, len(self.numeric_columns)), dtype=np.float32)
            for position, name in enumerate(self.numeric_columns):
                matrix[:, position] = _float_values(data.column(name))
            feeds[NUMERIC_INPUT] = matrix
        for name in self.passthrough:
            feeds[name] = _float_values(data.column(name)).astype(np.float32).reshape(-1, 1)
        code = np.zeros(rows, dtype=np.int64)
        for column in self.columns:
            code += class_codes(data.column(column.name), column) * column.stride
        feeds[CODE_INPUT] = code
        return feeds


def _float_values(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    # Nulls become NaN, the original graph's missing marker for numeric inputs.
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)


def class_codes(column: pa.Array | pa.ChunkedArray, classes: CategoryClasses) -> np.ndarray:
    """Each row's class. A dictionary column is mapped through its (small) dictionary, so the cost per row is one
    integer take; a plain string column needs a hash lookup per row (`pc.index_in`)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if not chunks:
        return np.empty(0, dtype=np.int64)
    return np.concatenate([_chunk_codes(chunk, classes) for chunk in chunks])


def _chunk_codes(chunk: pa.Array, classes: CategoryClasses) -> np.ndarray:
    if pa.types.is_dictionary(chunk.type):
        labels = chunk.dictionary.to_pylist()
        per_entry = [
            classes.missing if label is None else classes.by_value.get(label, classes.unknown) for label in labels
        ]
        lookup = np.array([*per_entry, classes.missing], dtype=np.int64)
        return lookup[pc.fill_null(chunk.indices, len(labels)).to_numpy()]
    known = list(classes.by_value)
    lookup = np.array([*classes.by_value.values(), classes.unknown, classes.missing], dtype=np.int64)
    positions = pc.fill_null(pc.index_in(chunk, value_set=pa.array(known, type=pa.string())), len(known))
    positions = pc.if_else(pc.is_null(chunk), len(known) + 1, positions)
    return lookup[positions.to_numpy(zero_copy_only=False)]


def declare_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` declaring the outputs of its ai.onnx.ml Imputer and Scaler nodes (same shape as their input,
    float). ONNX infers no type for them, so ORT cannot see that the dense layers take [N,k] floats and leaves each
    MatMul + Add + Relu as three kernels; declared, they fuse into one FusedGemm. The arithmetic stays the same."""
    declared = onnx.ModelProto()
    declared.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {value.name: value.type for value in [*inferred.graph.input, *inferred.graph.value_info]}
    for node in inferred.graph.node:
        source = node.input[0] if node.input else ""
        if node.domain == "ai.onnx.ml" and node.op_type in SHAPE_KEEPING_ML_OPS and source in types:
            value_type = onnx.TypeProto()
            value_type.CopyFrom(types[source])
            value_type.tensor_type.elem_type = TensorProto.FLOAT
            types[node.output[0]] = value_type
            declared.graph.value_info.append(helper.make_value_info(node.output[0], value_type))
    return declared


def tensor_dependencies(graph: onnx.GraphProto) -> dict[str, frozenset[str]]:
    """For every tensor, the graph inputs it is computed from (initializers and constants count for nothing)."""
    depends: dict[str, frozenset[str]] = {value.name: frozenset({value.name}) for value in graph.input}
    for initializer in graph.initializer:
        depends[initializer.name] = frozenset()
    for node in graph.node:  # ONNX graphs are topologically sorted
        inputs = frozenset().union(*(depends.get(name, frozenset()) for name in node.input if name))
        for output in node.output:
            depends[output] = inputs
    return depends


def categorical_block(graph: onnx.GraphProto, categorical: Sequence[str]) -> str:
    """The one tensor where the categorical inputs' computation meets the rest of the graph (the one-hot block)."""
    depends = tensor_dependencies(graph)
    wanted = frozenset(categorical)

    def only_categorical(name: str) -> bool:
        return bool(depends.get(name)) and depends[name] <= wanted

    frontier = {
        name
        for node in graph.node
        if not all(only_categorical(output) for output in node.output)
        for name in node.input
        if name and only_categorical(name)
    }
    if len(frontier) != 1 or depends[next(iter(frontier))] != wanted:
        raise ValueError(f"expected one tensor computed from all categorical inputs alone, found {sorted(frontier)}")
    return frontier.pop()


def numeric_concat(graph: onnx.GraphProto, numeric: Sequence[str]) -> onnx.NodeProto | None:
    """The Concat over axis 1 that takes exactly the numeric inputs (skl2onnx's merged numeric columns), if any."""
    for node in graph.node:
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), None)
        if node.op_type == "Concat" and axis in (1, -1) and sorted(node.input) == sorted(numeric):
            return node
    return None


def probe_block(model: onnx.ModelProto, schema: FeatureSchema, block: str, rows: dict[str, list[str]]) -> np.ndarray:
    """The original graph's `block` tensor for categorical rows given per column (numeric inputs held at 0)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(helper.make_empty_tensor_value_info(block))
    session = inference_session(probe, threads=1)
    count = len(next(iter(rows.values())))
    feeds = {
        name: np.array(rows[name], dtype=object).reshape(-1, 1)
        if name in rows
        else np.zeros((count, 1), dtype=np.float32)
        for name in schema.features
    }
    (values,) = session.run([block], feeds)
    return np.asarray(values)


def graph_tokens(model: onnx.ModelProto) -> list[str]:
    """Strings the graph's own OneHotEncoders know besides the schema's categories (skl2onnx's imputer fill value,
    "__missing__"): a row holding one literally must be coded the way the original graph treats it."""
    tokens: set[str] = set()
    for node in model.graph.node:
        for attribute in node.attribute:
            if node.op_type == "OneHotEncoder" and attribute.name == "cats_strings":
                tokens.update(value.decode() for value in attribute.strings)
    return sorted(tokens)


def category_classes(model: onnx.ModelProto, schema: FeatureSchema, block: str) -> list[CategoryClasses]:
    """Group each column's possible values by the one-hot block the original graph gives them (other columns held
    at their first value): values with the same block are one class, so codes stay few."""
    columns = []
    extra = graph_tokens(model)
    for name in schema.categorical:
        candidates = [*schema.categories[name], *extra, MISSING_CATEGORY, UNKNOWN_PROBE]
        candidates = list(dict.fromkeys(candidates))
        rows = {other: [schema.categories[other][0]] * len(candidates) for other in schema.categorical}
        rows[name] = candidates
        blocks = probe_block(model, schema, block, rows)
        class_of_block: dict[bytes, int] = {}
        value_class = {
            value: class_of_block.setdefault(row.tobytes(), len(class_of_block))
            for value, row in zip(candidates, blocks, strict=True)
        }
        unknown = value_class.pop(UNKNOWN_PROBE)
        # Other columns' categories and tokens fall in the unknown class anyway: listing them would only slow lookups.
        value_class = {value: number for value, number in value_class.items() if number != unknown or value == ""}
        columns.append(
            CategoryClasses(
                name=name,
                classes=len(class_of_block),
                by_value=value_class,
                missing=value_class[MISSING_CATEGORY],  # null is what the original graph's "" means
                unknown=unknown,
                stride=0,
            )
        )
    return with_strides(columns)


def with_strides(columns: list[CategoryClasses]) -> list[CategoryClasses]:
    strided, stride = [], 1
    for column in reversed(columns):
        strided.append(CategoryClasses(**{**column.__dict__, "stride": stride}))
        stride *= column.classes
    return list(reversed(strided))


def representatives(column: CategoryClasses) -> list[str]:
    """One input string per class, in class order (the unknown class probed with the unknown marker)."""
    chosen: dict[int, str] = {}
    for value, number in column.by_value.items():
        chosen.setdefault(number, value)
    chosen.setdefault(column.unknown, UNKNOWN_PROBE)
    return [chosen[number] for number in range(column.classes)]


def block_table(
    model: onnx.ModelProto, schema: FeatureSchema, block: str, columns: list[CategoryClasses]
) -> np.ndarray:
    """The original graph's block for every combination of classes, row = the combination's mixed-radix code:
    taken from the graph itself, so whatever it does with "", unknown values or its own tokens is kept exactly."""
    grids = np.meshgrid(*(np.arange(column.classes) for column in columns), indexing="ij")
    rows = {
        column.name: [representatives(column)[number] for number in grid.ravel()]
        for column, grid in zip(columns, grids, strict=True)
    }
    table = probe_block(model, schema, block, rows)
    if table.ndim != 2:
        raise ValueError(f"the categorical block {block!r} has shape {table.shape}, expected [N, width]")
    return table


def reencode(
    model: onnx.ModelProto, schema: FeatureSchema, keep_label: bool = False
) -> tuple[onnx.ModelProto, CodeEncoder]:
    """A graph of the same version taking `numeric_features` (float32 [N,k], NaN = missing) and `category_code`
    (int64 [N]) instead of one input per feature, and the encoder that builds those feeds from Arrow data.

    Only `probabilities` is kept unless `keep_label` (ORT runs every node of the graph, fetched or not).
    """
    graph = model.graph
    block = categorical_block(graph, schema.categorical)
    columns = category_classes(model, schema, block)
    table = block_table(model, schema, block, columns)
    concat = numeric_concat(graph, schema.numeric)

    new = onnx.ModelProto()
    new.CopyFrom(model)
    new_graph = new.graph
    del new_graph.input[:]
    numeric_columns: list[str] = []
    passthrough = list(schema.numeric)
    if concat is not None:
        numeric_columns, passthrough = list(concat.input), []
        new_graph.input.append(
            helper.make_tensor_value_info(NUMERIC_INPUT, TensorProto.FLOAT, ["N", len(numeric_columns)])
        )
        new_graph.node.append(helper.make_node("Identity", [NUMERIC_INPUT], [concat.output[0]], name=ADDED_NODES[0]))
    for original in graph.input:
        if original.name in passthrough:
            new_graph.input.append(original)
    new_graph.input.append(helper.make_tensor_value_info(CODE_INPUT, TensorProto.INT64, ["N"]))
    table_name = "category_block_table"
    new_graph.initializer.append(numpy_helper.from_array(table.astype(np.float32), table_name))
    new_graph.node.append(helper.make_node("Gather", [table_name, CODE_INPUT], [block], name=ADDED_NODES[1], axis=0))
    if not keep_label:
        outputs = [output for output in new_graph.output if output.name == PROBABILITIES_OUTPUT]
        del new_graph.output[:]
        new_graph.output.extend(outputs)
    prune(new_graph, replaced=({concat.output[0]} if concat is not None else set()) | {block})
    new = declare_shapes(new)
    onnx.checker.check_model(new)
    return new, CodeEncoder(numeric_columns=numeric_columns, columns=columns, passthrough=passthrough)


def prune(graph: onnx.GraphProto, replaced: Iterable[str]) -> None:
    """Keep only the nodes and initializers the outputs need, in topological order; the original producers of
    `replaced` tensors are dropped (the new nodes appended at the end produce them now)."""
    replaced = set(replaced)
    new_nodes = [node for node in graph.node if node.name in ADDED_NODES]
    old_nodes = [node for node in graph.node if node not in new_nodes and not replaced & set(node.output)]
    producers = {output: node for node in [*old_nodes, *new_nodes] for output in node.output}
    needed: set[str] = set()
    stack = [output.name for output in graph.output]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        if name in producers:
            stack.extend(i for i in producers[name].input if i)
    kept = new_nodes + [node for node in old_nodes if set(node.output) & needed]
    kept_initializers = [tensor for tensor in graph.initializer if tensor.name in needed]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(kept_initializers)
    del graph.value_info[:]


# --- checking ----------------------------------------------------------------------------------------------------


def probabilities(session: ort.InferenceSession, feeds: dict[str, np.ndarray], batch_rows: int = 65536) -> np.ndarray:
    return np.concatenate(
        [session.run([PROBABILITIES_OUTPUT], batch)[0][:, 1] for batch in feed_batches(feeds, batch_rows)]
    )


def compare(
    original: onnx.ModelProto | Path,
    reencoded: onnx.ModelProto,
    encoder: CodeEncoder,
    table: pa.Table,
    schema: FeatureSchema,
) -> dict[str, float]:
    """Probabilities of default of both graphs on the same rows: the original fed as the gateway feeds it (one
    [N,1] array per feature, "" for a missing category), the re-encoded one through `encoder`."""
    before = probabilities(inference_session(original, threads=1), build_feeds(table, schema))
    after = probabilities(inference_session(reencoded, threads=1), encoder.encode(table))
    difference = np.abs(before.astype(np.float64) - after)
    return {
        "rows": len(before),
        "max_abs_diff": float(difference.max()),
        "identical_rows": int((difference == 0).sum()),
    }


def awkward_rows(table: pa.Table, schema: FeatureSchema, seed: int = 7) -> pa.Table:
    """A copy of `table` where a third of each categorical column is replaced by a value the original graph treats
    specially (null, "", a category never seen, the graph's own "__missing__" token) and some numbers are null."""
    rng = np.random.default_rng(seed)
    rows = table.num_rows
    columns = {}
    for name in table.column_names:
        values = table[name]
        if name in schema.categorical:
            text = np.array(pc.fill_null(values, "<null>").to_pylist(), dtype=object)
            swap = rng.random(rows) < 1 / 3
            text[swap] = rng.choice(
                np.array(["<null>", "", "caravan", "__missing__", "OWNER"], dtype=object), swap.sum()
            )
            columns[name] = pa.array([None if value == "<null>" else value for value in text], type=pa.string())
        else:
            numbers = _float_values(values)
            columns[name] = pa.array(numbers, mask=rng.random(rows) < 0.1, type=pa.float64())
    return pa.table(columns)


# --- benchmarks --------------------------------------------------------------------------------------------------


def read_book(parquet_path: Path, schema: FeatureSchema, rows: int | None, dictionary: bool) -> pa.Table:
    """The feature columns, categorical ones as Arrow dictionaries when `dictionary` (Parquet stores them
    dictionary-encoded already, so this skips materialising the strings)."""
    if not dictionary:
        return read_features(parquet_path, schema, rows)
    file_format = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=schema.categorical))
    dataset = ds.dataset(parquet_path, format=file_format)
    return dataset.to_table(columns=schema.features) if rows is None else dataset.head(rows, columns=schema.features)


def table_batches(table: pa.Table, batch_rows: int) -> list[pa.Table]:
    return [table.slice(start, batch_rows) for start in range(0, table.num_rows, batch_rows)]


def ceiling(
    kind: str,
    onnx_path: Path,
    schema: FeatureSchema,
    parquet_path: Path,
    batch_rows: int,
    threads: int = 1,
    rows: int | None = None,
    repeats: int = 3,
) -> dict[str, Any]:
    """rows/s of one of `KINDS`, timed as (a): one session (intra-op `threads`), every row in `batch_rows` batches,
    the fastest of `repeats` passes. "+feeds"/"+codes" kinds build each batch's feeds from Arrow inside the clock."""
    original = onnx.load(onnx_path)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    encode: Callable[[pa.Table], dict[str, np.ndarray]]
    if kind.startswith("original"):
        model = declare_shapes(original) if kind == "original+shapes" else original
        encode = partial(build_feeds, schema=schema)
    else:
        model, encoder = reencode(original, schema)
        encode = encoder.encode
    run = partial(inference_session(model, threads).run, [PROBABILITIES_OUTPUT])
    # Dictionary columns where the encoding is timed (Parquet's own encoding, no strings materialised); the
    # run-only kinds build their feeds once, before the clock.
    table = read_book(parquet_path, schema, rows, dictionary=kind in ("original+feeds", "reencoded+codes"))
    if kind in ("original", "original+shapes", "reencoded"):
        result = timed(run, feed_batches(encode(table), batch_rows), table.num_rows, repeats)
    else:
        result = timed(lambda batch: run(encode(batch)), table_batches(table, batch_rows), table.num_rows, repeats)
    return {"kind": kind, "batch_rows": batch_rows, "threads": threads, **result}


def measure_in_subprocess(kind: str, batch_rows: int, arguments: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "bench", str(arguments.parquet), "--measure", kind]
    command += [
        "--batch-rows",
        str(batch_rows),
        "--threads",
        str(arguments.threads),
        "--repeats",
        str(arguments.repeats),
    ]
    command += ["--tracking-uri", arguments.tracking_uri, "--alias", arguments.alias]
    if arguments.rows is not None:
        command += ["--rows", str(arguments.rows)]
    completed = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


# --- command line ------------------------------------------------------------------------------------------------


def print_profile(title: str, profile: GraphProfile) -> None:
    binding = profile.wall_seconds - profile.run_seconds
    print(
        f"\n{title}: {profile.rows:,} rows, batch {profile.batch_rows}, "
        f"{profile.rows / profile.wall_seconds / 1e6:.3f} M rows/s (profiler on); wall {profile.wall_seconds:.3f} s "
        f"= ORT run {profile.run_seconds:.3f} s (kernels {profile.kernel_seconds:.3f} s) "
        f"+ outside ORT's run (Python binding, input conversion) {binding:.3f} s"
    )
    print(f"  {'op type':<24} {'nodes':>5} {'ms':>9} {'% kernels':>9} {'% wall':>7}")
    for op in profile.ops:
        wall_share = op.microseconds / 1e6 / profile.wall_seconds
        print(f"  {op.op_type:<24} {op.nodes:>5} {op.microseconds / 1e3:>9.1f} {op.share:>9.1%} {wall_share:>7.1%}")


def command_profile(arguments: argparse.Namespace) -> None:
    onnx_path, schema, version = resolve_version(arguments.alias, arguments.tracking_uri)
    original = onnx.load(onnx_path)
    model, encoder = reencode(original, schema)
    table = read_book(arguments.parquet, schema, arguments.rows, dictionary=True)
    feeds = build_feeds(table, schema)
    codes = encoder.encode(table)
    for batch_rows in arguments.batch_rows:
        profile = profile_graph(original, feed_batches(feeds, batch_rows), arguments.threads)
        print_profile(f"version {version} original graph", profile)
        profile = profile_graph(model, feed_batches(codes, batch_rows), arguments.threads)
        print_profile(f"version {version} re-encoded graph", profile)


def command_check(arguments: argparse.Namespace) -> None:
    onnx_path, schema, version = resolve_version(arguments.alias, arguments.tracking_uri)
    original = onnx.load(onnx_path)
    model, encoder = reencode(original, schema)
    print(f"version {version}: combined code has {int(np.prod([c.classes for c in encoder.columns]))} values")
    for column in encoder.columns:
        print(
            f"  {column.name}: {column.classes} classes, stride {column.stride}, missing -> {column.missing}, "
            f"unknown -> {column.unknown}, {column.by_value}"
        )
    for dictionary in (True, False):
        table = read_book(arguments.parquet, schema, arguments.rows, dictionary=dictionary)
        plain = read_features(arguments.parquet, schema, arguments.rows)
        result = compare(original, model, encoder, table if dictionary else plain, schema)
        print(f"book rows ({'dictionary' if dictionary else 'string'} columns): {result}")
    awkward = awkward_rows(read_features(arguments.parquet, schema, min(arguments.rows or 200_000, 200_000)), schema)
    print(
        "awkward rows (null, '', unseen, '__missing__', nulls in numbers):",
        compare(original, model, encoder, awkward, schema),
    )
    awkward_dictionary = awkward.cast(
        pa.schema(
            [
                pa.field(
                    n,
                    pa.dictionary(pa.int32(), pa.string()) if n in schema.categorical else awkward.schema.field(n).type,
                )
                for n in awkward.column_names
            ]
        )
    )
    print(f"awkward rows as dictionaries: {compare(original, model, encoder, awkward_dictionary, schema)}")


def command_bench(arguments: argparse.Namespace) -> None:
    if arguments.measure:
        (batch_rows,) = arguments.batch_rows
        onnx_path, schema, version = resolve_version(arguments.alias, arguments.tracking_uri)
        result = ceiling(
            arguments.measure,
            onnx_path,
            schema,
            arguments.parquet,
            batch_rows,
            arguments.threads,
            arguments.rows,
            arguments.repeats,
        )
        print(json.dumps({**result, "version": version, "peak_rss_mb": round(peak_rss_mb(), 1)}))
        return
    print(f"{'kind':<46} {'batch':>6} {'rows':>10} {'M rows/s':>9} {'peak RSS MB':>12} {'others':>6}")
    for batch_rows in arguments.batch_rows:
        for kind in arguments.kinds:
            result = least_contended(partial(measure_in_subprocess, kind, batch_rows, arguments), arguments.quiet_wait)
            print(
                f"{KINDS[kind]:<46} {batch_rows:>6} {result['rows']:>10,} {result['rows_per_s'] / 1e6:>9.3f} "
                f"{result['peak_rss_mb']:>12,.0f} {result['others_cpu']:>6.0%}",
                flush=True,
            )


def command_save(arguments: argparse.Namespace) -> None:
    onnx_path, schema, version = resolve_version(arguments.alias, arguments.tracking_uri)
    model, encoder = reencode(onnx.load(onnx_path), schema)
    onnx.save(model, arguments.output)
    print(f"version {version} re-encoded: {arguments.output} ({arguments.output.stat().st_size:,} bytes)")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    common.add_argument("--alias", default="production")
    common.add_argument("--threads", type=int, default=1)
    common.add_argument("--rows", type=int, help="only the first ROWS rows")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("profile", "check", "bench"):
        command = commands.add_parser(name, parents=[common])
        command.add_argument("parquet", type=Path)
        command.add_argument("--batch-rows", type=int, nargs="+", default=[1024, 4096, 8192])
    commands.choices["bench"].add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    commands.choices["bench"].add_argument("--repeats", type=int, default=3)
    commands.choices["bench"].add_argument("--measure", choices=list(KINDS), help="one kind here, one JSON line")
    commands.choices["bench"].add_argument("--quiet-wait", type=float, default=60.0, help="see bench_batch_baselines")
    save = commands.add_parser("save", parents=[common])
    save.add_argument("output", type=Path)
    return parser.parse_args()


def main() -> int:
    arguments = parse_arguments()
    handlers = {"profile": command_profile, "check": command_check, "bench": command_bench, "save": command_save}
    handlers[arguments.command](arguments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
