// The MLA bandwidth bench's synthetic grid (bench_bw.py) on a machine without a GPU: every point's index
// tensors are valid for the definitions (pages in range and used once, indptr consistent, the last page's
// length right) and the reference's sub-batches are rebased views of the same pages.
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { assert } from "../../tests/assert.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const PY = Deno.env.get("TRACEPIPE_PYTHON") ?? "/usr/bin/python3";

const CHECK = `
import sys
sys.path.insert(0, ${JSON.stringify(HERE)})
import torch, bench_bw as b
for ps in (1, 64):
    for batch, tokens in b.GRID[:4] + [(3, 1), (5, 65), (2, 64)]:
        indptr, indices, last, num_pages, moved = b.case(batch, tokens, ps)
        per = -(-tokens // ps)
        assert indptr.dtype == torch.int32 and indices.dtype == torch.int32
        assert indptr.tolist() == [i * per for i in range(batch + 1)], (ps, batch, tokens)
        assert indices.numel() == batch * per and int(indices.max()) < num_pages and int(indices.min()) >= 0
        assert torch.unique(indices).numel() == indices.numel(), "a page used twice"
        if ps == 1:
            assert last is None
        else:
            assert last.tolist() == [(tokens - 1) % ps + 1] * batch
            assert int(((indptr[1:] - indptr[:-1] - 1) * ps + last).sum()) == batch * tokens
        assert moved >= batch * tokens * 1152
        lo, hi = 1, min(batch, 3)
        ip, ix, ll = b.sub_batch(indptr, indices, last, lo, hi)
        assert ip[0] == 0 and ip.numel() == hi - lo + 1 and torch.equal(ix, indices[int(indptr[lo]):int(indptr[hi])])
        assert (ll is None) == (ps == 1)
print("ok")
`;

Deno.test("the MLA bandwidth bench's synthetic points have valid paged index tensors", async () => {
  const probe = await new Deno.Command(PY, { args: ["-c", "import torch"], stderr: "null" })
    .output()
    .catch(() => null);
  if (!probe?.success) {
    console.log(`SKIP ${PY} cannot import torch`);
    return;
  }
  const o = await new Deno.Command(PY, { args: ["-c", CHECK], stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
  assert(o.success && text.trim().endsWith("ok"), text.slice(-2000));
});
