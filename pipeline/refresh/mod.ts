/**
 * The nightly dataset refresh (`tp refresh`): pinned upstream sources, a lock per night, an
 * incremental `reproduce`, dated snapshots with a changelog, and an atomic `latest` pointer.
 * Application code like the CLI: it may import every face and the stage registry; only the CLI
 * imports it.
 */
export { REFRESH_USAGE, refreshCommand } from "./command.ts";
export { type Changelog, diffNights, renderChangelog } from "./changelog.ts";
export { Lock, lockPathFor, RefreshInputError, Sources } from "./sources.ts";
export { type NightState } from "./state.ts";
