"""Process-wide state shared by the API, the runtimes and the adapters.

Kept in plain lists so the hot paths read them through a local reference with no attribute lookup:
a wrapper checks `GUARD[0]` and the two stacks, and nothing else, before deciding to dispatch.
"""

# Active apply runtimes (LIFO: enable_apply pushes, disable_apply pops; the last one dispatches).
APPLY = []
# Active tracing runtimes (used only while no apply runtime is active: the two exclude each other).
TRACING = []
# > 0 while an adapter is dispatching: calls a solution or a fallback makes to patched functions
# (a Python solution calling torch.nn.functional.linear, say) then go straight to the originals.
# One counter for the process, not per thread: another thread's calls in that window also skip
# substitution, which costs speed, never correctness.
GUARD = [0]


class Counter:
    """Calls of one definition: run by a solution (`hit`, of which `def_best` through the miss policy),
    run by the fallback for want of one (`miss`), by the fallback because a CUDA graph was being
    captured and the shape was not warmed (`fallback_capture`), and failed solutions (`error`)."""

    __slots__ = ("hit", "miss", "def_best", "fallback_capture", "error")

    def __init__(self):
        self.hit = self.miss = self.def_best = self.fallback_capture = self.error = 0

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}


COUNTERS = {}


def counter(name):
    c = COUNTERS.get(name)
    if c is None:
        c = COUNTERS[name] = Counter()
    return c


def stats():
    """Counters per definition name: {name: {hit, miss, def_best, fallback_capture, error}}."""
    return {n: c.as_dict() for n, c in sorted(COUNTERS.items())}


def reset_stats():
    """Zeroes every counter (counters outlive disable_apply, so a run can be read after it)."""
    for c in COUNTERS.values():
        c.__init__()
