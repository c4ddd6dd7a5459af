/** apply: the ranked apply table and the pinned selection beside a deployable TraceSet. */
export { ApplyParams, applyStage, PUBLISH_DIR, writeApplySet } from "./stage.ts";
export {
  keyJson,
  type PinnedSelection,
  pinnedSelection,
  type RankedTable,
  rankedTable,
} from "./policy.ts";
