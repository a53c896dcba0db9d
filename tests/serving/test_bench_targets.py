"""The benchmark's target check (scripts/bench_gateway.py) reads the right rows and says NO when a target is missed."""

from __future__ import annotations

from scripts.bench_gateway import target_check


def row(server: str, scenario: str, rps: float, rows: int = 1, p99: float = 5.0, failed: int = 0) -> dict[str, object]:
    return {"server": server, "scenario": scenario, "req/s": rps, "rows/s": rps * rows, "p50 ms": 1.0, "p99 ms": p99,
            "failed": failed}  # fmt: skip


def results(gateway_rps: float, gateway_p99: float, hit_rps: float, failed: int = 0) -> list[dict[str, object]]:
    return [
        row("gateway /predict_ab (A/B on, cache off)", "1 row, c=8", gateway_rps, p99=gateway_p99, failed=failed),
        row("gateway /predict_ab (A/B on, cache off)", "100 rows, c=4", 500, rows=100),
        row("gateway /predict_cached", "1 row, c=1, cache hit", hit_rps),
        row("gateway /predict_cached", "1 row, c=1, cache miss", 700),
        row("gateway /predict_cached", "1 row, c=8, cache hit", hit_rps),
        row("gateway /predict_cached", "1 row, c=8, cache miss", 700),
        row("mlflow models serve, ONNX (inputs)", "1 row, c=8", 700),
        row("mlflow models serve, ONNX (inputs)", "1 row, c=8, kept-alive connections", 800),
        row("mlflow models serve, ONNX (inputs)", "100 rows, c=4", 50, rows=100),
        row("mlflow models serve, sklearn (dataframe_split)", "1 row, c=8", 100),
        row("mlflow models serve, sklearn (dataframe_split)", "100 rows, c=4", 40, rows=100),
        row("bare Flask + ONNX (ceiling)", "1 row, c=8", 2000),
    ]


def verdicts(table: str) -> dict[str, str]:
    return {line.split(" | ")[0].strip("| "): line.rsplit("|", 2)[1].strip() for line in table.splitlines()[2:]}


def test_all_targets_met() -> None:
    checked = verdicts(target_check(results(gateway_rps=1500, gateway_p99=9.0, hit_rps=900)))
    assert set(checked.values()) == {"yes"} and len(checked) == 8
    assert "| single rows, c=8: >= 1.5x MLflow's fastest | 1.88x | yes |" in target_check(results(1500, 9.0, 900))


def test_missed_targets_say_no() -> None:
    # 1,100 req/s: 1.38x the kept-alive MLflow figure (its fastest), 55% of the bare app; p99 12 ms; hits slower.
    checked = verdicts(target_check(results(gateway_rps=1100, gateway_p99=12.0, hit_rps=600, failed=3)))
    assert checked["single rows, c=8: >= 1.5x MLflow's fastest"] == "NO"
    assert checked["single rows, c=8: >= 10x MLflow serving sklearn"] == "yes"
    assert checked["single rows, c=8: p99 <= 10 ms"] == "NO"
    assert checked["single rows, c=8: >= 70% of the bare app"] == "NO"
    assert checked["100-row batches: >= 5x MLflow's rows/s"] == "yes"
    assert checked["cache hit faster than miss, c=1 (req/s ratio)"] == "NO"
    assert checked["gateway: no failed requests (non-2xx, socket errors, timeouts)"] == "NO"
