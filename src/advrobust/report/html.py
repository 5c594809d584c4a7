"""HTML assembly: one self-contained page (inline CSS, images as ``data:`` URIs, no JavaScript).

Every piece of text that comes from a user or a result (model, data, class, attack and check
names, evidence, titles) is escaped with :func:`html.escape` at the point it enters the markup:
functions here take plain strings and return markup; :class:`Raw` marks the only strings that are
already markup.
"""

from __future__ import annotations

import base64
import html
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from advrobust.evaluation.stats import wilson_interval
from advrobust.evaluation.suites import suite_caveat
from advrobust.report.figures import norm_label
from advrobust.report.views import AuditView, EvaluationView, TrainingView, TransferView

CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d0d7de; --good:#1a7f37; --bad:#c62828; --warn:#9a6700; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       max-width: 1060px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.3em; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
p.meta, figcaption, .note { color: var(--muted); font-size: 0.9em; }
nav { margin: 12px 0 8px; font-size: 0.92em; }
nav a { margin-right: 14px; color: #0969da; text-decoration: none; }
.headline { font-size: 1.08em; background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px;
            padding: 12px 16px; }
.caveat { border: 1px solid var(--warn); border-left-width: 6px; border-radius: 6px; padding: 8px 14px; }
.cards { display: flex; gap: 14px; flex-wrap: wrap; margin: 14px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 16px; min-width: 200px; }
.card .value { font-size: 1.8em; font-weight: 600; }
.card .label { color: var(--muted); font-size: 0.88em; }
table { border-collapse: collapse; margin: 10px 0; font-size: 0.92em; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td:first-child { white-space: nowrap; }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figure.transparent img { background: repeating-conic-gradient(#999 0% 25%, #ccc 0% 50%) 50% / 12px 12px; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; color: #fff; font-weight: 600;
         font-size: 0.85em; }
.pass { background: var(--good); } .fail { background: var(--bad); } .other { background: var(--warn); }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  nav { display: none; }
  h2 { break-after: avoid; }
  figure, table, .cards { break-inside: avoid; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  @page { margin: 1.5cm; }
}
"""


@dataclass(frozen=True)
class Raw:
    """A string that is already markup (built here from escaped parts)."""

    markup: str


Cell = str | Raw


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def pct(value: float) -> str:
    """How the report shows a fraction: one decimal percent (``0.8125`` → ``81.2%``); NaN → ``—``."""
    return "—" if math.isnan(value) else f"{value:.1%}"


def num(value: float) -> str:
    """How the report shows other numbers: 4 significant digits; NaN → ``—``."""
    return "—" if math.isnan(value) else f"{value:.4g}"


def interval(k: int, n: int) -> str:
    """The 95% Wilson interval of ``k`` out of ``n``, as shown: ``[71.3%, 88.0%]``."""
    if n <= 0:
        return "—"
    lo, hi = wilson_interval(k, n)
    return f"[{lo:.1%}, {hi:.1%}]"


def table(head: Sequence[str], rows: Sequence[Sequence[Cell]], numeric: Sequence[bool] = ()) -> str:
    """A table; plain strings are escaped, :class:`Raw` cells are inserted as they are."""

    def cell(c: Cell, i: int) -> str:
        cls = ' class="num"' if i < len(numeric) and numeric[i] else ""
        return f"<td{cls}>{c.markup if isinstance(c, Raw) else esc(c)}</td>"

    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(cell(c, i) for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def image(png: bytes, alt: str, caption: str, transparent: bool = False) -> str:
    """A PNG inline; ``transparent``: on a grey checkerboard, so that both its white and its black
    parts show beside the see-through ones (a texture with an alpha mask)."""
    data = base64.b64encode(png).decode("ascii")
    kind = ' class="transparent"' if transparent else ""
    return (
        f'<figure{kind}><img src="data:image/png;base64,{data}" alt="{esc(alt)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def _badge(verdict: str) -> Raw:
    v = verdict.lower()
    cls = "pass" if v in ("pass", "passed", "ok") else "fail" if v in ("fail", "failed") else "other"
    return Raw(f'<span class="badge {cls}">{esc(verdict)}</span>')


# ----------------------------------------------------------------------------- sections


def summary(ev: EvaluationView, audit: AuditView | None) -> str:
    """What was attacked, how, and how robust it is: a headline, two cards, the accuracy table."""
    eps_list = ", ".join(f"{e:g}" for e in ev.epsilons)
    suite = f" (suite “{esc(ev.suite)}”)" if ev.suite else ""
    attacks = ", ".join(esc(a) for a in ev.attacks) or "—"
    last = len(ev.epsilons) - 1
    headline = (
        f"<p class=\"headline\">Model <b>{esc(ev.model_name)}</b> on <b>{esc(ev.data_name)}</b> "
        f"({ev.n} test points) was attacked with {attacks}{suite} under the "
        f"<b>{esc(norm_label(ev.threat))} ≤ ε</b> threat model, ε ∈ {{{esc(eps_list)}}}. "
        f"It classifies <b>{pct(ev.clean_accuracy)}</b> of the points correctly; at ε = "
        f"{ev.epsilons[last]:g}, <b>{pct(ev.robust_accuracy[last])}</b> stay correct under every "
        f"attack tried.</p>"
        if ev.epsilons
        else ""
    )
    counts = ev.robust_counts()
    clean_k = int(ev.clean_correct.sum())
    cards = [(pct(ev.clean_accuracy), f"clean accuracy {interval(clean_k, ev.n)}")]
    cards += [
        (pct(a), f"robust accuracy at ε = {e:g} {interval(k, ev.n)}")
        for e, a, k in zip(ev.epsilons, ev.robust_accuracy, counts, strict=True)
    ][-2:]
    card_html = "".join(
        f'<div class="card"><div class="value">{esc(v)}</div><div class="label">{esc(lab)}</div></div>'
        for v, lab in cards
    )
    by_attack = {(r.attack, r.eps): r for r in ev.per_attack}
    names = list(dict.fromkeys(r.attack for r in ev.per_attack))
    rows = []
    for i, e in enumerate(ev.epsilons):
        per = [by_attack.get((a, e)) for a in names]
        broken = ev.broken_counts(i)
        rows.append(
            [f"{e:g}", pct(ev.robust_accuracy[i]), interval(counts[i], ev.n)]
            + ["skipped" if r is not None and r.skipped_reason else pct(r.robust_accuracy)
               if r is not None else "—" for r in per]
            + [", ".join(f"{a}: {c}" for a, c in broken.items()) or "—"]
        )
    head = ["ε", "robust accuracy (all attacks)", "95% interval", *[f"after {a}" for a in names],
            "points broken by"]
    acc_table = table(head, rows, [True, True, True, *[True] * len(names), False])
    audit_line = ""
    if audit is not None:
        verdict = "passed" if audit.passed else "FAILED"
        tally = Counter(c.verdict.lower() for c in audit.checks)
        counts = ", ".join(f"{n} {v}" for v, n in tally.most_common())
        audit_line = (
            f"<p>Gradient-masking audit: {_badge(verdict).markup} — {len(audit.checks)} checks: "
            f"{esc(counts)} (details below).</p>"
        )
    meta = (
        f'<p class="note">Robust accuracy counts a point as robust only if it is classified '
        f"correctly and no attack broke it: it is an upper bound on the true robustness. Intervals "
        f"are 95% Wilson intervals over the {ev.n} points. The attacks run in the order listed, each "
        f"on the points the earlier ones left unbroken; “after X” is the accuracy once X has run. "
        f"Model fingerprint: "
        f"<code>{esc(ev.model_fingerprint or '—')}</code>.</p>"
    )
    caveat = suite_caveat(ev.suite)
    caveat_line = f'<p class="caveat"><b>Not a robustness claim.</b> {esc(caveat)}.</p>' if caveat else ""
    if ev.randomized:
        caveat_line += (
            f'<p class="caveat"><b>Randomized model.</b> Its outputs changed between two passes of the same '
            f"inputs. The attacks averaged their gradients over draws of the model (EOT), and a point counts "
            f"as misclassified when the model is {esc(ev.verdict_rule)}.</p>"
        )
    return headline + caveat_line + f'<div class="cards">{card_html}</div>' + acc_table + audit_line + meta


def attacks_table(ev: EvaluationView) -> str:
    """Every attack at every budget: its own robust accuracy, success rate, cost."""
    rows = [
        [r.attack, f"{r.eps:g}", pct(r.robust_accuracy), pct(r.success_rate), num(r.median_norm),
         num(r.mean_queries), num(r.seconds), r.skipped_reason or ""]
        for r in ev.per_attack
    ]
    head = ["attack", "ε", "robust accuracy after it", "success rate on the points it attacked",
            f"median {norm_label(ev.threat)}", "mean queries", "seconds", "skipped because"]
    return table(head, rows, [False, True, True, True, True, True, True, False])


def per_class_table(ev: EvaluationView) -> str:
    rows = [
        [ev.class_name(k), str(n), pct(clean), *[pct(a) for a in robust]]
        for k, n, clean, robust in ev.per_class()
    ]
    head = ["class", "points", "clean accuracy", *[f"robust at ε = {e:g}" for e in ev.epsilons]]
    return table(head, rows, [False, True, True, *[True] * len(ev.epsilons)])


def audit_table(audit: AuditView) -> str:
    rows = [[c.name, _badge(c.verdict), c.evidence, c.explanation] for c in audit.checks]
    return table(["check", "verdict", "evidence", "what it means"], rows)


def transfer_table(tr: TransferView) -> str:
    rows = [[r, *[pct(v) for v in tr.matrix[i]]] for i, r in enumerate(tr.rows)]
    return table(["crafted with (attack × source)", *tr.columns], rows, [False, *[True] * len(tr.columns)])


def training_table(tv: TrainingView) -> str:
    """Every metric per epoch (accuracies in percent), and the epoch's note (e.g. a
    catastrophic-overfitting warning)."""
    names = list(tv.metrics)
    rows = [
        [str(ep), *[(pct if "acc" in k else num)(tv.metrics[k][i]) for k in names], tv.notes[i]]
        for i, ep in enumerate(tv.epochs)
    ]
    summary = f'<p class="note">{esc(tv.summary)}.</p>' if tv.summary else ""
    return table(["epoch", *names, "note"], rows, [True] * (len(names) + 1)) + summary


def page(title: str, sections: Sequence[tuple[str, str, str]], subtitle: str) -> str:
    """The whole document: ``sections`` are (anchor, heading, body markup)."""
    nav = "".join(f'<a href="#{a}">{esc(h)}</a>' for a, h, _ in sections)
    body = "".join(section(a, h, b) for a, h, b in sections)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1>"
        f'<p class="meta">{esc(subtitle)} · generated {stamp}</p></header>'
        f"<nav>{nav}</nav><main>{body}</main></body></html>\n"
    )
