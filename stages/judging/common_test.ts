/** The judging stages' shared serving harnesses: judges started ahead for verify, and a timing stage alone. */
import { assertEquals } from "../../tests/assert.ts";
import { discoverToolchain } from "../../pipeline/toolchain.ts";
import {
  closeSharedSessions,
  idleSharedSessions,
  mapWithSessions,
  prestartSharedSessions,
} from "./common.ts";

const tc = await discoverToolchain();
const skip = !tc.python?.torch;
if (skip) {
  console.log(
    "skipping the shared-session tests: no Python with torch (apt-get install python3-torch)",
  );
}

Deno.test({
  name:
    "shared sessions: judges prestarted for verify stay idle through a stage before it, verify closes the extra ones, and a timing stage runs with no other judge idle",
  ignore: skip,
  async fn() {
    try {
      await prestartSharedSessions(3);
      assertEquals(idleSharedSessions(), 3);
      await mapWithSessions([1, 2], 2, async () => {}); // a compile stage before verify
      assertEquals(
        idleSharedSessions(),
        3,
        "a stage before verify closed the judges started for it",
      );
      await mapWithSessions([1, 2, 3], 3, async () => {}, { claimsPrestarted: true });
      assertEquals(idleSharedSessions(), 1, "verify kept its extra judges after it");
      await prestartSharedSessions(3); // verify's cells all cached: its judges are still idle at time
      let idleBeside = -1;
      await mapWithSessions([1], 1, () => {
        idleBeside = idleSharedSessions();
        return Promise.resolve();
      }, { alone: true });
      assertEquals(idleBeside, 0, "the timing stage ran beside idle judges");
      assertEquals(idleSharedSessions(), 1);
    } finally {
      await closeSharedSessions();
    }
  },
});
