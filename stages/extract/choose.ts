/**
 * Chooses the representative shapes per definition from the candidate groups, and describes each
 * definition's events (counts, time shares, axis quantiles) for the report. Groups that match no
 * definition become "missing" entries naming the definition they would need.
 */
import { sha256 } from "../../pipeline/engine/mod.ts";
import type { Definition } from "../../pipeline/trace/mod.ts";
import { type Family, isAttention, neededDefinitionName } from "./families.ts";
import type { ShapeGroup } from "./candidates.ts";
import type { DefinitionReport, MissingDefinition } from "./report.ts";
import { type Candidate, quantiles, selectRepresentative } from "./select.ts";

/** One chosen shape for one definition. */
export interface ChosenShape {
  def: Definition;
  family: Family;
  cand: Candidate;
}

/** What the selection yields: the report's rows, the unmatched groups and the chosen shapes. */
export interface Choice {
  definitions: DefinitionReport[];
  missing: MissingDefinition[];
  picks: ChosenShape[];
}

/** The selection parameters. */
export interface ChoiceParams {
  sampleSize: number;
  seed: number;
  timeWeight: number;
}

/** Names of the candidate key's axes, in key order, for attention. */
const ATTENTION_KEY_AXES = ["batch_size", "avg_kv_len", "avg_q_len"];

/** Chooses shapes per definition over the groups, in (family, consts) order. */
export function chooseShapes(
  groups: Iterable<ShapeGroup>,
  totalTime: number,
  p: ChoiceParams,
): Choice {
  const choice: Choice = { definitions: [], missing: [], picks: [] };
  for (const g of sortedGroups(groups)) {
    const events = g.cands.reduce((a, c) => a + c.count, 0);
    const time = g.cands.reduce((a, c) => a + c.timeUs, 0);
    if (!g.defs.length) {
      choice.missing.push({
        name: neededDefinitionName(g.family, g.consts),
        family: g.family,
        consts: g.consts,
        events,
        timeShare: time / (totalTime || 1),
      });
      continue;
    }
    if (!g.cands.length) continue; // the site never ran in this trace
    for (const def of g.defs) {
      const chosen = chooseForDefinition(g.cands, def, p);
      for (const c of chosen) choice.picks.push({ def, family: g.family, cand: c });
      choice.definitions.push(
        definitionReport(def, g, chosen, { events, time, totalTime }),
      );
    }
  }
  return choice;
}

function sortedGroups(groups: Iterable<ShapeGroup>): ShapeGroup[] {
  return [...groups].sort((
    a,
    b,
  ) => (a.family + JSON.stringify(a.consts) < b.family + JSON.stringify(b.consts) ? -1 : 1));
}

/** The representative candidates of one definition. */
function chooseForDefinition(cands: Candidate[], def: Definition, p: ChoiceParams): Candidate[] {
  // Per-definition stream of the selection seed, so adding a definition changes no other pick.
  const seed = parseInt(sha256(`${p.seed}:${def.name}`).slice(0, 8), 16);
  const idx = selectRepresentative(cands, p.sampleSize, seed, p.timeWeight);
  return idx.map((i) => cands[i]);
}

/** The report row of one definition: its events, time shares and per-axis quantiles. */
function definitionReport(
  def: Definition,
  g: ShapeGroup,
  chosen: Candidate[],
  totals: { events: number; time: number; totalTime: number },
): DefinitionReport {
  const { events, time, totalTime } = totals;
  const names = isAttention(g.family) ? ATTENTION_KEY_AXES : [keyAxisName(g.family)];
  return {
    definition: def.name,
    family: g.family,
    events,
    distinctShapes: g.cands.length,
    chosen: chosen.length,
    chosenTimeShare: chosen.reduce((a, c) => a + c.timeUs, 0) / (time || 1),
    timeShareOfModel: time / (totalTime || 1),
    axes: names.map((axis, d) => {
      const [min, p10, p50, p90, max] = quantiles(g.cands, d, [0, 0.1, 0.5, 0.9, 1]);
      return {
        axis,
        min,
        p10,
        p50,
        p90,
        max,
        chosenMin: Math.min(...chosen.map((c) => c.key[d])),
        chosenMax: Math.max(...chosen.map((c) => c.key[d])),
      };
    }),
  };
}

/** The workload axis that a non-attention candidate's one-element key measures. */
function keyAxisName(f: Family): string {
  return f === "gemm" ? "M" : f === "moe" ? "seq_len" : "batch_size";
}
