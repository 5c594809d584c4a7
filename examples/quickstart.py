"""The README's Python example, runnable: `.venv/bin/python examples/quickstart.py`.

Attacks the default model (trained once and cached) with PGD, evaluates it with the standard suite,
audits it for gradient masking, finds minimal l2 perturbations with FMN and writes the HTML report.
"""

from __future__ import annotations

import advrobust as ar
from advrobust.data import load
from advrobust.report import write_report
from advrobust.training.pretrained import default_model


def main() -> None:
    model, meta = default_model()  # or any torch.nn.Module taking [0,1] pixels
    test = load("mnist-5k", split="test").subset(200)
    x, y = test.x, test.y

    attack = ar.attacks.PGD(ar.Linf(eps=0.3), steps=40)
    res = attack(model, x, y)  # or attack(model, x, y, target=t)
    print(f"PGD-40 at eps 0.3: success {res.success_rate:.1%}, mean queries {res.queries.float().mean():.1f}")

    rep = ar.evaluate(model, x, y, threat=ar.Linf(eps=0.3), suite="standard")
    print(f"clean accuracy {rep.clean_accuracy:.1%}, robust accuracy {rep.robust_accuracy}")

    aud = ar.audit(model, x, y, threat=ar.Linf(eps=0.3))
    print("audit passed:", aud.passed, [(c.name, c.verdict) for c in aud.checks])

    fmn = ar.attacks.create("fmn", norm="l2")  # minimum-norm: the smallest r per point
    correct = model(x).argmax(1) == y
    curve = ar.evaluation.robustness_curve(fmn(model, x, y).norm, correct)
    print("FMN l2:", curve.summary(max_eps=3.0))

    path = write_report("quickstart_report.html", rep, audit=aud)
    print("report:", path)


if __name__ == "__main__":
    main()
