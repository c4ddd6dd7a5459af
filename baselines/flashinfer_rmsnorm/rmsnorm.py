"""FlashInfer wrapper: flashinfer.norm.rmsnorm. Raises ImportError (reported as unavailable by
the harness) when the flashinfer package is not importable. Value-returning."""
try:
    import flashinfer
except ImportError as e:  # pragma: no cover - depends on the machine
    raise ImportError(f"flashinfer unavailable: {e}") from e


def run(hidden_states, weight):
    return flashinfer.norm.rmsnorm(hidden_states, weight, eps=1e-5)
