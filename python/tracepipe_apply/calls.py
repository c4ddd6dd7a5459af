"""Calling conventions. A caller passes a definition's inputs (value-returning: it wants the outputs
back) or its inputs and then its outputs (destination-passing: results go into the given tensors);
a solution is written one way or the other (its spec.destination_passing_style). Every pairing works.
"""

import torch

_TORCH_DTYPES = {}


def torch_dtype(name):
    dt = _TORCH_DTYPES.get(name)
    if dt is None:
        dt = getattr(torch, {"float4_e2m1": "float4_e2m1fn_x2"}.get(name, name), None)
        if dt is None:
            raise ValueError(f"dtype {name!r} is not available in torch {torch.__version__}")
        _TORCH_DTYPES[name] = dt
    return dt


class CallShape:
    """What a definition needs at call time, computed once: argument names and the recipe of every
    output's shape (a constant, or a dimension of an input)."""

    __slots__ = ("d", "names", "n_in", "n_all", "out_recipes", "out_error")

    def __init__(self, d):
        self.d = d
        self.names = d.input_names + d.output_names
        self.n_in = d.n_in
        self.n_all = d.n_in + d.n_out
        self.out_recipes = []
        self.out_error = None
        for name, (shape, dtype) in d.outputs:
            dims = []
            for a in shape or ():
                if a in d.const_axes:
                    dims.append(d.const_axes[a])
                elif a in d.axis_source:
                    dims.append(d.axis_source[a])
                else:
                    self.out_error = f"{d.name}: output {name!r} axis {a!r} is not read from any input"
            self.out_recipes.append((dims, dtype))

    def merge(self, args, kwargs):
        """Positional arguments, then keyword ones in definition order (inputs, then outputs)."""
        out = list(args)
        for name in self.names[len(args):]:
            if name not in kwargs:
                break
            out.append(kwargs[name])
        if len(out) - len(args) != len(kwargs):
            for k in kwargs:
                if k not in self.names:
                    raise TypeError(f"{self.d.name}: unexpected argument {k!r}")
                if self.names.index(k) < len(args):
                    raise TypeError(f"{self.d.name}: multiple values for argument {k!r}")
            raise TypeError(f"{self.d.name}: keyword arguments leave a gap before {self.names[len(out)]!r}")
        return out

    def alloc_outputs(self, args):
        """Empty outputs for a call (on the device of its first tensor input)."""
        if self.out_error:
            raise ValueError(self.out_error)
        dev = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
        outs = []
        for dims, dtype in self.out_recipes:
            shape = [x if isinstance(x, int) else args[x[0]].shape[x[1]] for x in dims]
            outs.append(torch.empty(shape, dtype=torch_dtype(dtype), device=dev))
        return outs


def as_outputs(ret, n_out, who):
    """A value-returning result as a list of n_out outputs (a 1-tuple counts as its item)."""
    if isinstance(ret, (tuple, list)):
        outs = list(ret)
    else:
        outs = [ret]
    if len(outs) != n_out:
        raise RuntimeError(f"{who}: returned {len(outs)} outputs, the definition has {n_out}")
    return outs


def call(fn, sol_dps, cs, args, caller_dps, who):
    """Runs `fn` (a solution) on a call made with `caller_dps` and returns what the caller expects."""
    if caller_dps:
        if sol_dps:
            fn(*args)
            return None
        outs = as_outputs(fn(*args[:cs.n_in]), cs.n_all - cs.n_in, who)
        for dst, src in zip(args[cs.n_in:], outs):
            dst.copy_(src)
        return None
    if not sol_dps:
        ret = fn(*args)
        if type(ret) is tuple and len(ret) == 1:
            return ret[0]
        return ret
    outs = cs.alloc_outputs(args)
    fn(*args, *outs)
    return outs[0] if len(outs) == 1 else tuple(outs)


def write_back(result, dests):
    """Copies a call's outputs into caller-owned buffers (`out=`, in-place APIs); None entries keep
    the result's own tensor. Returns the outputs as the caller now sees them."""
    outs = list(result) if isinstance(result, (tuple, list)) else [result]
    seen = []
    for i, dst in enumerate(dests):
        if dst is None:
            seen.append(outs[i])
        else:
            if dst.data_ptr() != outs[i].data_ptr():
                dst.copy_(outs[i])
            seen.append(dst)
    return seen
