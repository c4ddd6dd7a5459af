"""Apply configuration, as flashinfer-bench's `ApplyConfig` / `ApplyConfigRegistry`, plus the two
settings FlashInfer's Trace Apply adds: which mode picks the solution and what a failing one does."""

from dataclasses import dataclass, field

MISS_POLICIES = ("fallback_only", "use_def_best")
ERROR_POLICIES = ("raise", "fallback")
MODES = ("ranked", "pinned")


@dataclass(frozen=True)
class ApplyConfig:
    """Per-definition apply settings.

    max_atol, max_rtol: traces count only when PASSED with errors within both (flashinfer-bench's
    defaults 1e-2 and 1e-5). aot_ratio: share of each definition's winning solutions built when apply
    is enabled (the rest on first use). on_miss_policy: `fallback_only` runs the original function on
    a key the table lacks; `use_def_best` runs the solution that won most keys. on_error: `raise`
    (strict, FlashInfer Trace Apply's rule) re-raises when a matched solution fails to load or run;
    `fallback` counts the error and runs the original function instead.
    """

    max_atol: float = 1e-2
    max_rtol: float = 1e-5
    aot_ratio: float = 1.0
    on_miss_policy: str = "fallback_only"
    on_error: str = "raise"

    def __post_init__(self):
        if not self.max_atol > 0:
            raise ValueError(f"ApplyConfig.max_atol: must be > 0, got {self.max_atol}")
        if not self.max_rtol > 0:
            raise ValueError(f"ApplyConfig.max_rtol: must be > 0, got {self.max_rtol}")
        if not 0.0 <= self.aot_ratio <= 1.0:
            raise ValueError(f"ApplyConfig.aot_ratio: must be in [0, 1], got {self.aot_ratio}")
        if self.on_miss_policy not in MISS_POLICIES:
            raise ValueError(f"ApplyConfig.on_miss_policy: must be one of {MISS_POLICIES}, got {self.on_miss_policy!r}")
        if self.on_error not in ERROR_POLICIES:
            raise ValueError(f"ApplyConfig.on_error: must be one of {ERROR_POLICIES}, got {self.on_error!r}")


@dataclass
class ApplyConfigRegistry:
    """A default config and per-definition overrides; `get` returning None means "do not apply"."""

    default: ApplyConfig = field(default_factory=ApplyConfig)
    per_definition: dict = field(default_factory=dict)

    def register(self, def_name, config, override=False):
        if def_name in self.per_definition and not override:
            raise ValueError(f"ApplyConfigRegistry: {def_name!r} is already registered (pass override=True)")
        self.per_definition[def_name] = config

    def get(self, def_name):
        if def_name in self.per_definition:
            return self.per_definition[def_name]
        return self.default


def as_registry(apply_config):
    """A registry from what enable_apply was given: None, an ApplyConfig or a registry."""
    if apply_config is None:
        return ApplyConfigRegistry()
    if isinstance(apply_config, ApplyConfig):
        return ApplyConfigRegistry(default=apply_config)
    if isinstance(apply_config, ApplyConfigRegistry):
        return apply_config
    raise TypeError(f"apply_config: expected ApplyConfig or ApplyConfigRegistry, got {type(apply_config).__name__}")
