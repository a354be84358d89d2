"""Flags that act, on MNIST: hidden tricks, escalated, against the honest worst case (issue 25, item 2).

    python benchmarks/escalation.py [--samples 500]

Runs evaluations/escalation-mnist.toml through the same code as `advsec run` (into
reports/escalation-mnist-samples<N>, resumed by cell): four defenses hide rounded inputs, saturated logits,
input noise or a memory of past queries behind a deterministic, differentiable, stateless declaration
(evaluations/plugins/hidden_tricks.py), each deploying the same standard wong-cnn. For every hidden trick
and budget it prints the robust accuracy a naive evaluation reports (the spec's PGD-40 alone), the one
advsec reports after its flags acted, and the honest worst case: the trick declared truthfully and attacked
adaptively (rounding, noise), or the bare network, which gives the same answers (saturation, memory),
then the honest cells stage by stage (BPDA, EOT, and Square after BPDA). Floor: escalated within 5 pp of
honest, or below it; a truthful defense is never escalated.
"""

from __future__ import annotations

import itertools
import tomllib

import torch
from common import REPO, Output, benchmark_parser, parse_benchmark_args, record

FLOOR_PP = 5.0


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--samples", type=int, default=500)
    args = parse_benchmark_args(parser)
    from advsec import registry
    from advsec.progress import Progress
    from advsec.results import cell_summaries
    from advsec.runner import run_spec
    from advsec.spec import spec_from_dict

    path = REPO / "evaluations" / "escalation-mnist.toml"
    raw = tomllib.loads(text := path.read_text())
    raw["evaluation"] = {**raw.get("evaluation", {}), "samples": args.samples}
    spec = spec_from_dict(raw, text=text, base_dir=path.parent)
    folder = REPO / "reports" / f"escalation-mnist-samples{args.samples}"
    store = run_spec(spec, folder, device=torch.device("cpu"), progress=Progress(quiet=True))
    cells = {(c.defense, c.eps): c for c in cell_summaries(store) if c.norm != "none"}
    # Each hidden trick names its honest twin (evaluations/plugins/hidden_tricks.py); a truthful one none.
    twins = {d.label: getattr(registry.defenses.get(d.name), "honest_twin", None) for d in spec.defenses}
    budgets = sorted({eps for _, eps in cells})
    say = Output()
    say(f"MNIST wong-cnn (standard training), first {args.samples} test images, linf; naive = the spec's "
        "PGD-40 alone; escalated = advsec's reported figure; robust accuracy in %")  # fmt: skip
    say(f"{'defense':<18} {'eps':>4} {'naive':>6} {'escalated':>9} {'honest':>6}  {'verdict':<28} added")
    for hidden, honest in twins.items():
        if honest is None:
            continue
        for eps in budgets:
            cell, truth = cells[hidden, eps], cells[honest, eps]
            naive = cell.unescalated_robust_accuracy
            added = ", ".join(a.attack for a in cell.attacks if a.escalation) or "nothing"
            gap = 100 * (cell.robust_accuracy - truth.robust_accuracy)
            verdict = (
                "not escalated" if naive is None
                else f"at or below honest ({gap:+.1f} pp)" if gap <= 0
                else f"within {FLOOR_PP:g} pp ({gap:+.1f})" if gap <= FLOOR_PP
                else f"MISSED ({gap:+.1f} pp)"
            )  # fmt: skip
            shown = "—" if naive is None else f"{100 * naive:.1f}"
            say(f"{hidden:<18} {eps:>4g} {shown:>6} {100 * cell.robust_accuracy:>9.1f} "
                f"{100 * truth.robust_accuracy:>6.1f}  {verdict:<28} {added}")  # fmt: skip
    truthful = sorted(label for label, twin in twins.items() if twin is None)
    escalated = sorted({d for (d, _), cell in cells.items()
                        if d in truthful and cell.unescalated_robust_accuracy is not None})  # fmt: skip
    say(f"truthful defenses escalated: {', '.join(escalated) or 'none'} (of {', '.join(truthful)})")
    say("honest worst cases, stage by stage (robust % after each attack of the cascade):")
    for defense, eps in itertools.product(twins, budgets):
        cell = cells[defense, eps]
        if twins[defense] is None and len(cell.attacks) > 1:
            stages = ", ".join(f"{a.attack} {100 * a.robust_after:.1f}" for a in cell.attacks)
            say(f"  {defense:<18} {eps:>4g}  {stages}")
    record("escalation", say.lines)


if __name__ == "__main__":
    main()
