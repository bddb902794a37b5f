"""`augworth report`: one self-contained HTML file per sweep: spec, status, exchange rates with intervals and
flags, fit diagnostics, the paper's questions where the sweep has them, every figure, and the commands that
reproduce it all.

Self-contained means nothing is fetched when it is opened: the style sheet is inline, figures are PNGs inlined as
data: URIs, and there are no scripts, fonts or links (the paper is cited as text). Tables are pandas' HTML
with every value escaped. The caller passes in what it knows of the sweep (spec text, status counts), so
`analysis` needs nothing from the orchestrator.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

CITATION = ("Geiping, Goldblum, Somepalli, Shwartz-Ziv, Goldstein and Wilson: How Much Data Are Augmentations "
            "Worth? An Investigation into Scaling Laws, Invariance, and Implicit Regularization. ICLR 2023, "
            "arXiv 2210.06441.")

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 110em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.1em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; }
"""

DIAGNOSTIC_COLUMNS = ("a", "b", "c", "rmse", "b_profile_low", "b_profile_high", "fit_at_bound", "lack_of_fit_p",
                      "fit_reason")


@dataclass
class Section:
    title: str
    text: str = ""  # plain text, escaped when written
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)  # (caption, PNG bytes)
    lines: list[str] = field(default_factory=list)  # plain text, a list item each


def render(title: str, sections: Sequence[Section], *, spec_text: str, status: Mapping[str, Any],
           commands: Sequence[str]) -> str:
    """The whole HTML document as a string."""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p class=\"note\">Exchange rates as in {html.escape(CITATION)} v(x) = f_ref⁻¹(f_aug(x)) − x: the extra "
             "real samples an augmentation is worth at x training samples.</p>"]
    totals = status.get("totals", {})
    if totals:
        parts.append("<h2>Status</h2>" + _table(pd.DataFrame([totals])))
    for note in status.get("notes", []):
        parts.append(f"<p class=\"note\">{html.escape(str(note))}</p>")
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        if section.lines:
            parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in section.lines) + "</ul>")
        for caption, png in section.figures:
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"<figure><img alt=\"{html.escape(caption)}\" src=\"data:image/png;base64,{data}\">"
                         f"<figcaption class=\"note\">{html.escape(caption)}</figcaption></figure>")
        for caption, frame in section.tables:
            parts.append(f"<h3>{html.escape(caption)}</h3>" + _table(frame))
    parts.append("<h2>Spec</h2><pre>" + html.escape(spec_text) + "</pre>")
    parts.append("<h2>Reproduce</h2><pre>" + html.escape("\n".join(commands)) + "</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _table(frame: pd.DataFrame) -> str:
    # by position: a terminal table may repeat a header ("95% CI")
    columns = [frame.iloc[:, i] for i in range(frame.shape[1])]
    shown = pd.DataFrame({i: c.map(_number) if pd.api.types.is_float_dtype(c) else c for i, c in enumerate(columns)},
                         index=frame.index)
    shown.columns = frame.columns
    return shown.to_html(index=False, escape=True, na_rep="", border=0)


def table_frame(table: Any) -> tuple[str, pd.DataFrame]:
    """A terminal table (rich) as the report shows it: its title and caption as the caption, and its cells' text as
    the terminal prints them (markup read, not shown), so both read every v through one formatter."""
    from rich.text import Text

    def plain(value: Any) -> str:
        return Text.from_markup(str(value)).plain if value is not None else ""

    cells = [[plain(cell) for cell in column.cells] for column in table.columns]
    frame = pd.DataFrame(list(zip(*cells, strict=True)), columns=[plain(c.header) for c in table.columns])
    return ". ".join(part for part in (plain(table.title), plain(table.caption)) if part), frame


def _number(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}"


def rate_tables(rates: pd.DataFrame, labels: pd.Series, group_columns: Sequence[str] = ()
                ) -> list[tuple[str, pd.DataFrame]]:
    """Per eval set, the exchange-rate rows of the treatments (reference rows left out) and the fits, with the
    group columns that vary (width, model ...) so that rows of different groups can be told apart."""
    out = []
    rates = rates.assign(treatment=labels)
    groups = [c for c in group_columns if c in rates.columns and rates[c].astype(str).nunique() > 1]
    for eval_set in sorted(rates["eval_set"].unique(), key=lambda name: (name != "test", name)):
        mine = rates[(rates["eval_set"] == eval_set) & ~rates["is_reference"]]
        out.append((f"exchange rates on '{eval_set}' (95% CI of v: whole seeds resampled; ≥ N: v censored at what "
                    "the measurements support, a 95% bound; > N: past twice the reference's largest size)",
                    rate_frame(mine, groups)))
        fits = rates[rates["eval_set"] == eval_set].drop_duplicates([*groups, "treatment"])
        columns = [*groups, "treatment", *[c for c in DIAGNOSTIC_COLUMNS if c in fits.columns]]
        out.append((f"fits on '{eval_set}': e(x) = a·x^(−c) + b, with diagnostics (b's profile interval treats "
                    "points as independent: a diagnostic)", fits[columns]))
    return out


def rate_frame(rows: pd.DataFrame, groups: Sequence[str]) -> pd.DataFrame:
    """The rows as the terminal table reads them (`formatting.rate_text`): one formatter for both."""
    from augworth.analysis.formatting import number, rate_text

    shown = []
    for d in rows.to_dict("records"):
        text = rate_text(d)
        shown.append({**{g: d[g] for g in groups}, "treatment": d["treatment"], "size x": d["data_size"],
                      "seeds": d.get("n_seeds"), "acc": number(d.get("accuracy_mean")),
                      "acc fit": number(d.get("accuracy_fit")), "extra v": text.v, "95% CI of v": text.ci,
                      "(x+v)/x": text.ratio, "note": text.note})
    return pd.DataFrame(shown, columns=[*groups, "treatment", "size x", "seeds", "acc", "acc fit", "extra v",
                                        "95% CI of v", "(x+v)/x", "note"])
