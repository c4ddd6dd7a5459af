/**
 * Scaling out: shards of the judging stages (`reproduce --shard I/N`) and `tp slurm`, which runs
 * them as a Slurm array job and merges their stores. Application code, like the CLI: it knows the
 * engine and which stages judge, and the store is the only thing its jobs share.
 */
export {
  JUDGING_STAGES,
  parseShard,
  type Shard,
  shardedRun,
  shardFilter,
  shardOf,
  shardUnit,
} from "./shard.ts";
export { type MergeResult, mergeShards, readStatus } from "./merge.ts";
export {
  queuedJobs,
  SLURM_USAGE,
  slurmCommand,
  type Submission,
  unfinishedShards,
  writeScripts,
} from "./slurm.ts";
export {
  mergeScript,
  prepareScript,
  shardsScript,
  shellQuote,
  slurmFiles,
  type SlurmLayout,
  stagesAround,
} from "./slurm_scripts.ts";
