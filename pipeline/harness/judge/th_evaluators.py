"""The evaluator registry, as in flashinfer-bench (bench/evaluators/registry.py): each special evaluator is
asked whether it can evaluate a definition; the one that can judges its cells, and DefaultEvaluator judges
every definition none claims. An evaluator supplies `verify` (a cell's correctness: a Verdict) and `recheck`
(the post-timing check of the last timed output)."""

from th_eval_default import DefaultEvaluator
from th_eval_sampling import SamplingEvaluator

EVALUATORS = [SamplingEvaluator]  # special evaluators, asked in turn; DefaultEvaluator is the fallback


def evaluator_for(definition):
    """The evaluator class for `definition`: the one special evaluator that claims it, else DefaultEvaluator."""
    matches = [e for e in EVALUATORS if e.can_evaluate(definition)]
    if len(matches) > 1:
        raise ValueError(f"definition {definition.get('name')!r}: several evaluators apply: "
                         f"{[e.__name__ for e in matches]}")
    return matches[0] if matches else DefaultEvaluator
