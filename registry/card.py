"""The model card of a registered version: what a validator reads before signing it off, as Markdown and HTML.

Built only from what is recorded (the version's tags and metadata, the runs behind it, the audit trail's gate
verdicts), logged into the version's source run under `model_card/`, and linked from the version's `model_card` tag.
Registration writes it; every gate evaluation of the version rewrites it with the new verdict.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from registry import audit
from registry.errors import RegistryError
from registry.resolve import ResolvedModel, load_version
from registry.settings import RegistrySettings
from registry.slices import MIN_GROUP_ROWS, parse_slices
from scoring import contract

logger = logging.getLogger(__name__)

CARD_FOLDER = "model_card"
MARKDOWN_FILE = "model_card.md"
HTML_FILE = "model_card.html"
FIGURES = {  # train run artifact -> caption
    "plots/reliability_diagram.png": "Reliability diagram (test split), before and after calibration",
    "plots/fairness_slices.png": "Fairness slices (test split)",
    "plots/roc_curve.png": "ROC curve (test split)",
}
GATE_VERDICTS = ("passed", "refused", "forced")
LIMITATIONS = [
    "Trained and evaluated on one lender's historical applications: accepted applicants only (no reject inference), "
    "so the rates apply to a population like the one it was trained on.",
    "Calibration is fitted on the validation split; the ECE on a test split of this size cannot go below its noise "
    "floor (reported above), so a small ECE difference is not evidence.",
    "Fairness slices are computed on the test split's features: attributes that are not model inputs cannot be "
    "sliced, and groups under the minimum size are shown but not compared.",
    "Reason codes replace one feature at a time by a typical applicant's value: interactions are split arbitrarily, "
    "and a feature at its reference value is never a reason. They explain the model, not the world.",
]


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    table: list[list[str]] = field(default_factory=list)  # first row: header
    figures: list[str] = field(default_factory=list)  # train-run artifact paths of FIGURES


@dataclass
class ModelCard:
    title: str
    sections: list[Section]

    def markdown(self, figure_links: dict[str, str]) -> str:
        lines = [f"# {self.title}", ""]
        for section in self.sections:
            lines += [f"## {section.title}", ""]
            for paragraph in section.paragraphs:
                lines += [paragraph, ""]
            if section.bullets:
                lines += [f"- {bullet}" for bullet in section.bullets] + [""]
            if section.table:
                header, *rows = section.table
                lines += [_markdown_row(header), "|" + " --- |" * len(header)]
                lines += [_markdown_row(row) for row in rows] + [""]
            for path in section.figures:
                if path in figure_links:
                    lines += [f"![{FIGURES[path]}]({figure_links[path]})", ""]
        return "\n".join(lines)

    def html(self, figure_png: dict[str, bytes]) -> str:
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title>",
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
            "text-align:left}pre{background:#f6f6f6;padding:1em;overflow-x:auto}img{max-width:100%}</style>",
            f"</head><body><h1>{html.escape(self.title)}</h1>",
        ]
        for section in self.sections:
            parts.append(f"<h2>{html.escape(section.title)}</h2>")
            parts += [f"<p>{html.escape(paragraph)}</p>" for paragraph in section.paragraphs]
            if section.bullets:
                parts.append("<ul>" + "".join(f"<li>{html.escape(b)}</li>" for b in section.bullets) + "</ul>")
            if section.table:
                header, *rows = section.table
                parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
                parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
                parts.append("</table>")
            for path in section.figures:
                if path in figure_png:
                    encoded = base64.b64encode(figure_png[path]).decode()
                    caption = html.escape(FIGURES[path])
                    parts.append(
                        f"<figure><img alt='{caption}' src='data:image/png;base64,{encoded}'>"
                        f"<figcaption>{caption}</figcaption></figure>"
                    )
        parts.append("</body></html>")
        return "\n".join(parts)


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _number(value: float | None, digits: int = 4) -> str:
    return (
        "not recorded" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
    )


def _interval(metrics: dict[str, float], name: str) -> str:
    return f"{_number(metrics.get(f'{name}_ci_low'))} – {_number(metrics.get(f'{name}_ci_high'))}"


def _run(client: MlflowClient, run_id: str | None) -> Run | None:
    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


FAIRNESS_COLUMNS = {  # fairness.json's group fields -> the card's column headings
    "rows": "rows",
    "roc_auc": "ROC AUC",
    "approval_rate": "approval rate",
    "default_rate": "default rate",
    "mean_pd": "mean PD",
    "default_rate_approved": "default rate of approved",
    "calibration_bias": "mean PD − default rate",
}


def _fairness_sections(client: MlflowClient, model: ResolvedModel, train: Run | None) -> list[Section]:
    """One section per slice of the train run's `fairness/fairness.json`, its groups as a table."""
    slices = model.tags.get(contract.FAIRNESS_SLICES_TAG, "not recorded")
    note = (
        f"Approval = probability of default below the threshold. Gaps compare groups of at least {MIN_GROUP_ROWS} "
        f"rows; slices: {slices}."
    )
    if model.precision == "int8":
        note += (
            " Computed for the fp32 network of the same train run; with a gap bound set, the gate recomputes them "
            "for this version."
        )
    head = Section("Fairness slices (test split)", paragraphs=[note])
    try:
        report = json.loads(_download_text(client, train.info.run_id, "fairness/fairness.json")) if train else None
    except (MlflowException, OSError, ValueError):
        report = None
    if report is None:
        head.paragraphs.append("Not recorded (the version was trained before fairness slices existed).")
        return [head]
    sections = [head]
    for result in report["slices"]:
        column = result["column"]
        table = [[column, *FAIRNESS_COLUMNS.values()]]
        for group in result["groups"]:
            table.append([str(group[column])] + [_cell(name, group.get(name)) for name in FAIRNESS_COLUMNS])
        gaps = ", ".join(f"{metric} {_number(gap, 3)}" for metric, gap in result["gaps"].items())
        sections.append(Section(f"Slice {result['spec']}", paragraphs=[f"Gaps: {gaps}."], table=table))
    head.bullets += [f"skipped {column}: {why}" for column, why in report["skipped"].items()]
    sections[-1].figures.append("plots/fairness_slices.png")
    return sections


def _cell(name: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{int(value)}" if name == "rows" else f"{value:.3f}"


def _download_text(client: MlflowClient, run_id: str, path: str) -> str:
    with tempfile.TemporaryDirectory(prefix="credit-card-") as folder:
        return Path(client.download_artifacts(run_id, path, folder)).read_text()


def build_card(client: MlflowClient, settings: RegistrySettings, model: ResolvedModel) -> ModelCard:
    tags = model.tags
    prepare = _run(client, tags.get(contract.PREPARE_RUN_ID))
    train = _run(client, tags.get(contract.TRAIN_RUN_ID))
    source = _run(client, tags.get(contract.SOURCE_RUN_ID_TAG))
    tm: dict[str, float] = train.data.metrics if train else {}
    tp: dict[str, str] = train.data.params if train else {}
    pm: dict[str, float] = prepare.data.metrics if prepare else {}
    pp: dict[str, str] = prepare.data.params if prepare else {}
    schema = model.feature_schema

    sections = [
        Section(
            "Intended use",
            paragraphs=[
                f"Estimates the probability that a credit applicant defaults ({schema.target} = "
                f"{schema.positive_label}), to support — not replace — a lender's credit decision. Served by the "
                "gateway (/predict, /explain) and the portfolio job; the decision threshold below turns a "
                "probability into a decision. Not for use on populations unlike the training data, nor as the only "
                "basis of an adverse decision.",
            ],
            bullets=[
                f"registered model {model.name}, version {model.version}, precision {model.precision}",
                f"aliases when this card was written: {', '.join(model.aliases) or 'none'}",
                f"inputs ({len(schema.features)}): {', '.join(schema.features)}",
                f"code: git commit {tags.get(contract.GIT_COMMIT_TAG, 'unknown')}",
            ],
        ),
        Section(
            "Data",
            bullets=[
                f"file {pp.get('data_path', 'not recorded')}, SHA-256 "
                f"{prepare.data.tags.get(contract.DATA_SHA256_TAG, 'not recorded') if prepare else 'not recorded'}",
                "rows: "
                + ", ".join(
                    f"{split} {int(pm[f'rows_{split}'])}" for split in contract.SPLIT_NAMES if f"rows_{split}" in pm
                ),
                "default rate: "
                + ", ".join(
                    f"{split} {pm[f'positive_rate_{split}']:.3f}"
                    for split in contract.SPLIT_NAMES
                    if f"positive_rate_{split}" in pm
                ),
                f"stratified split, seed {pp.get('seed', 'not recorded')}; prepare run "
                f"{tags.get(contract.PREPARE_RUN_ID, 'not recorded')}, "
                f"train run {tags.get(contract.TRAIN_RUN_ID, 'not recorded')}",
            ],
        ),
        Section(
            "Performance (test split, calibrated probabilities)",
            table=[
                ["metric", "value"],
                ["ROC AUC (this precision)", tags.get(contract.TEST_ROC_AUC_TAG, "not recorded")],
                ["Gini", _number(tm.get("test_gini"))],
                ["KS", _number(tm.get("test_ks"))],
                ["Brier score", _number(tm.get("test_brier"))],
                ["log loss", _number(tm.get("test_log_loss"))],
                [
                    f"cross-validated ROC AUC ({tp.get('cv_folds', '?')} folds, mean ± sd)",
                    f"{_number(tm.get('cv_roc_auc_mean'))} ± {_number(tm.get('cv_roc_auc_std'))}",
                ],
                ["decision threshold (max Youden J on validation)", tags.get(contract.DECISION_THRESHOLD_TAG, "?")],
                [
                    "precision / recall at the threshold",
                    f"{_number(tm.get('test_precision'))} / {_number(tm.get('test_recall'))}",
                ],
            ],
        ),
        Section(
            "Calibration",
            paragraphs=[
                f"Method: {(model.calibration or {}).get('method', 'not recorded')} (chosen on the validation split by "
                "cross-validated log loss among none, sigmoid and isotonic; fitted there and applied inside the ONNX "
                "graph; none keeps the network's own probabilities). Expected calibration error over 10 equal-mass "
                "bins on the test split, bootstrap 95% interval:",
            ],
            table=[
                ["", "ECE", "95% interval"],
                [
                    "before",
                    _number(tm.get("test_ece_uncalibrated")),
                    _interval(tm, "test_ece_uncalibrated"),
                ],
                [
                    "after",
                    _number(tm.get("test_ece")),
                    _interval(tm, "test_ece"),
                ],
                [
                    "noise floor (a perfectly calibrated model, this many rows)",
                    _number(tm.get("test_ece_noise_floor")),
                    "",
                ],
                ["this version (its own precision)", tags.get(contract.TEST_ECE_TAG, "not recorded"), ""],
            ],
            figures=["plots/reliability_diagram.png"],
        ),
        Section(
            "Score scaling",
            paragraphs=[
                f"score = {model.score_scaling.offset:.2f} − {model.score_scaling.factor:.4f} · ln(PD / (1 − PD)): "
                f"{model.score_scaling.base_score:g} points at {model.score_scaling.base_odds:g}:1 good:bad odds, "
                f"{model.score_scaling.pdo:g} points to double the odds.",
            ],
            bullets=[
                f"band {band.name}: score >= {band.min_score:g}"
                if math.isfinite(band.min_score)
                else f"band {band.name}: below"
                for band in model.score_scaling.bands
            ]
            or ["no decision bands configured"],
        ),
        *_fairness_sections(client, model, train),
        _int8_section(client, model, source),
        _gate_section(client, settings, model),
        Section("Limitations", bullets=[*LIMITATIONS, *_input_limitations(model)]),
    ]
    return ModelCard(f"Model card: {model.name} version {model.version} ({model.precision})", sections)


def _input_limitations(model: ResolvedModel) -> list[str]:
    """Slicing columns that are also model inputs: protected attributes, often, that a lender may not use."""
    slices = model.tags.get(contract.FAIRNESS_SLICES_TAG, "")
    inputs = [spec.column for spec in parse_slices(slices) if spec.column in model.feature_schema.features]
    if not inputs:
        return []
    return [
        f"{', '.join(inputs)}: fairness slices and model inputs at once. Where they are protected attributes (age "
        "and marital status are in many jurisdictions), a credit decision may not use them and they may not be "
        "given as adverse-action reasons: remove them from the inputs (--drop-columns) before real use."
    ]


def _int8_section(client: MlflowClient, model: ResolvedModel, source: Run | None) -> Section:
    quantize_run = source if model.precision == "int8" else None
    if quantize_run is None:
        siblings = client.search_model_versions(
            f"name = '{model.name}' and tags.{contract.TRAIN_RUN_ID} = '{model.tags.get(contract.TRAIN_RUN_ID, '')}'"
        )
        int8 = next((v for v in siblings if v.tags.get(contract.PRECISION_TAG) == "int8"), None)
        quantize_run = _run(client, int8.tags.get(contract.SOURCE_RUN_ID_TAG)) if int8 else None
    if quantize_run is None:
        return Section("INT8 agreement", paragraphs=["No INT8 sibling of this version is registered."])
    q = quantize_run.data.metrics
    return Section(
        "INT8 agreement (INT8 against its fp32 source, test split)",
        table=[
            ["measure", "value"],
            ["decisions equal at the threshold", _number(q.get("decision_agreement"))],
            ["ROC AUC change", _number(q.get("test_roc_auc_delta"))],
            ["max |Δp|", _number(q.get("max_abs_diff"))],
            [
                "same top-3 reason codes (as a set / in order)",
                f"{_number(q.get('reason_top3_agreement'))} / {_number(q.get('reason_top3_order_agreement'))}",
            ],
            [
                "size fp32 → INT8 (bytes)",
                f"{_number(q.get('size_bytes_fp32'), 0)} → {_number(q.get('size_bytes_int8'), 0)}",
            ],
        ],
    )


def _gate_section(client: MlflowClient, settings: RegistrySettings, model: ResolvedModel) -> Section:
    records = audit.history(client, settings, audit.query(to_version=model.version))
    verdicts = [r for r in records if r.gate_verdict in GATE_VERDICTS]
    if not verdicts:
        return Section("Promotion gate verdicts", paragraphs=["The gate has not evaluated this version yet."])
    return Section(
        "Promotion gate verdicts",
        table=[["at", "action", "verdict", "outcome", "actor", "approver", "reason"]]
        + [[r.at, r.action, r.gate_verdict, r.outcome, r.actor, r.approver, r.reason or ""] for r in verdicts],
    )


@dataclass(frozen=True)
class WrittenCard:
    version: str
    markdown_uri: str
    html_uri: str


def write_card(client: MlflowClient, settings: RegistrySettings, version: str) -> WrittenCard:
    """Build the version's card, log it into its source run and point the version's `model_card` tag at it."""
    model = load_version(client, settings.model_name, version, settings)
    run_id = model.tags.get(contract.SOURCE_RUN_ID_TAG)
    if not run_id:
        raise RegistryError(f"{model.name} version {version} records no source run: nowhere to keep its card")
    card = build_card(client, settings, model)
    pngs = _figures(client, model.tags.get(contract.TRAIN_RUN_ID, ""))
    # The figures are logged beside the card, so that the Markdown's relative links open wherever both are.
    links = {path: f"v{model.version}_{Path(path).name}" for path in pngs}
    markdown_name, html_name = f"v{model.version}_{MARKDOWN_FILE}", f"v{model.version}_{HTML_FILE}"
    with tempfile.TemporaryDirectory(prefix="credit-card-") as folder:
        (Path(folder) / markdown_name).write_text(card.markdown(links))
        (Path(folder) / html_name).write_text(card.html(pngs))
        for path, png in pngs.items():
            (Path(folder) / links[path]).write_bytes(png)
        client.log_artifacts(run_id, folder, CARD_FOLDER)
    written = WrittenCard(
        model.version, f"runs:/{run_id}/{CARD_FOLDER}/{markdown_name}", f"runs:/{run_id}/{CARD_FOLDER}/{html_name}"
    )
    client.set_model_version_tag(model.name, model.version, contract.MODEL_CARD_TAG, written.markdown_uri)
    logger.info("model card of %s version %s: %s", model.name, model.version, written.markdown_uri)
    return written


def _figures(client: MlflowClient, train_run_id: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    if not train_run_id:
        return found
    with tempfile.TemporaryDirectory(prefix="credit-card-") as folder:
        for path in FIGURES:
            try:
                found[path] = Path(client.download_artifacts(train_run_id, path, folder)).read_bytes()
            except (MlflowException, OSError):
                continue  # an older train run: the card says what is missing in words
    return found


def refresh_card(client: MlflowClient, settings: RegistrySettings, version: str) -> WrittenCard | None:
    """`write_card` for callers that must not fail because of it (registration, promotion): a warning instead."""
    try:
        return write_card(client, settings, version)
    except Exception as error:  # the card is documentation: a failure to write it must not undo a registration
        logger.warning("model card of version %s not written: %s: %s", version, type(error).__name__, error)
        return None


def download_card(client: MlflowClient, markdown_uri: str, output: Path) -> list[Path]:
    """The card's files (Markdown, HTML, its figures) into `output`; a folder that cannot be written is named."""
    run_id, _, path = markdown_uri.removeprefix("runs:/").partition("/")
    prefix = Path(path).name.removesuffix(MARKDOWN_FILE)
    try:
        output.mkdir(parents=True, exist_ok=True)
        files = [a.path for a in client.list_artifacts(run_id, CARD_FOLDER) if Path(a.path).name.startswith(prefix)]
        return [Path(client.download_artifacts(run_id, name, str(output))) for name in files]
    except OSError as error:
        raise RegistryError(f"cannot write the model card into {output} ({error.strerror or error})") from error


def card_location(tags: dict[str, Any]) -> str | None:
    location = tags.get(contract.MODEL_CARD_TAG)
    return str(location) if location else None
