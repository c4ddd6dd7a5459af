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


class StackedRuntime:
    """A runtime that is active while it sits on one of the stacks above (LIFO): `start` pushes it
    (and installs the adapters while any runtime needs them), `stop` pops it; usable as a context
    manager. Subclasses name their stack and add work around the push (`before_start`) and the pop
    (`after_stop`)."""

    stack = None  # APPLY or TRACING, set by the subclass

    def __init__(self, install_adapters=True):
        self.install_adapters = install_adapters
        self._started = False

    def before_start(self):
        pass

    def after_stop(self):
        pass

    def start(self):
        from . import adapters  # adapters imports this module: import it when first needed
        self.before_start()
        self.stack.append(self)
        self._started = True
        if self.install_adapters:
            adapters.acquire()
        return self

    def stop(self):
        from . import adapters
        if not self.stack or self.stack[-1] is not self:
            raise RuntimeError(f"{type(self).__name__}.stop: this runtime is not the most recent one "
                               "(stop in LIFO order)")
        self.stack.pop()
        self._started = False
        if self.install_adapters:
            adapters.release()
        self.after_stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._started:
            self.stop()
        return False
