"""Calls from one compiled function to another through the callee's machine-code address.

Numba compiles a call from ``f`` to a jitted ``g`` by linking ``g``'s LLVM module into ``f``'s
and optimising and compiling the whole again: every kernel an entry point calls is compiled
twice (its own library, then inside the entry point's), about 2-3 s of the cold start of the
compiled epoch. A call through an address compiles ``g`` once: the entry point takes a table
of addresses (int64 array, ``addresses``) and calls

    via(slot, template)(table, *args)    ->  g(*args), g's machine code at table[slot]

(an ``@intrinsic``: one indirect call in Numba's own calling convention, errors raised by
``g`` propagated). The callee's signature is declared, not inferred (``template``), so the
Python side can look the same overload up, compile it or load it from the cache, without
typing the caller (a cached caller is never typed): tokens ``A1 A2 A3`` (C arrays of the float
dtype ``dt``), ``U1 U2 U3`` (uint64 arrays), ``I1`` (int64 array), ``i`` (int64), ``f``
(float64) and ``L`` (a literal: the caller's compile-time constant, taken as given), then
``->`` and ``none``, ``bool`` or ``f3`` (three float64) (``signature`` also takes an array
token: a kernel called from Python, compiled ahead by ``compiling.Sharing``). A call site whose
argument types differ from the template fails to compile (``TypingError``) rather than calling
the wrong code; the table itself must be built for the dtype of the caller's float arrays (its
caller's job: ``tree.kernel_table`` takes the net's dtype, as do the work buffers). Under
``NUMBA_DISABLE_JIT=1`` ``via`` calls the Python function itself.

Relies on Numba's native calling convention (``context.call_conv``) and on
``CompileResult.library.get_pointer_to_function`` (as Numba's first-class functions do).
"""
from __future__ import annotations

import numba
import numpy as np
from numba.core import cgutils, types
from numba.core.errors import TypingError
from numba.extending import intrinsic

RETURNS = {"none": types.none, "bool": types.boolean, "f3": types.UniTuple(types.float64, 3)}


def parse(template):
    """``(argument tokens, return type)`` of a template string (see the module docstring)."""
    args, ret = template.split("->")
    return args.split(), RETURNS[ret.strip()]


def token_type(token, dt):
    """The Numba type of one non-literal token for float dtype ``dt`` (a Numba type)."""
    if token in ("i", "f"):
        return types.int64 if token == "i" else types.float64
    base = {"A": dt, "U": types.uint64, "I": types.int64}[token[0]]
    return types.Array(base, int(token[1]), "C")


def signature(template, dt, literals=()):
    """The Numba signature of ``template`` for float dtype ``dt`` (a NumPy dtype or Numba
    type) with the ``L`` tokens, in order, the values ``literals`` (``types.literal``)."""
    dt = numba.from_dtype(np.dtype(dt)) if not isinstance(dt, types.Type) else dt
    tokens, ret = template.split("->")[0].split(), template.split("->")[1].strip()
    ret = RETURNS[ret] if ret in RETURNS else token_type(ret, dt)
    lits = iter(literals)
    return ret(*[types.literal(next(lits)) if t == "L" else token_type(t, dt) for t in tokens])


def float_dtype(args):
    """The dtype of the first float array among ``args`` (float64 when there is none)."""
    for a in args:
        if isinstance(a, types.Array) and isinstance(a.dtype, types.Float):
            return a.dtype
    return types.float64


def address(dispatcher, sig):
    """The address of the machine code of ``dispatcher``'s overload for ``sig`` (compiled
    now, or loaded from the cache); its return type must be ``sig``'s."""
    dispatcher.compile(sig.args)
    cres = dispatcher.overloads[tuple(sig.args)]
    if cres.signature.return_type != sig.return_type:
        raise TypeError(f"{dispatcher.py_func.__name__}{sig.args} returns "
                        f"{cres.signature.return_type}, declared {sig.return_type}")
    return cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)


def addresses(jobs):
    """The table of a caller: for each job ``(dispatcher, template, dtype, literals)`` (a slot
    each, in order; None: not called by this variant, address 0), the address of
    ``dispatcher``'s overload for ``signature(template, dtype, literals)``."""
    table = np.zeros(len(jobs), np.int64)
    if numba.config.DISABLE_JIT:
        return table
    for slot, job in enumerate(jobs):
        if job is not None:
            table[slot] = address(job[0], signature(*job[1:]))
    return table


def via(slot, dispatcher, template):
    """The call ``(table, *args) -> dispatcher(*args)`` through ``table[slot]`` (see the
    module docstring); ``dispatcher`` itself under ``NUMBA_DISABLE_JIT=1``."""
    if numba.config.DISABLE_JIT:
        return lambda table, *args: dispatcher(*args)
    tokens, ret = parse(template)
    name = getattr(dispatcher, "__name__", "kernel")

    @intrinsic(prefer_literal=True)
    def call(typingctx, table, *args):
        args = tuple(args[0]) if len(args) == 1 and isinstance(args[0], types.StarArgTuple) \
            else tuple(args)
        if len(args) != len(tokens):
            raise TypingError(f"{name}: {len(args)} arguments, declared {len(tokens)}")
        dt = float_dtype(args)
        want = []
        for t, a in zip(tokens, args):
            if t == "L":
                if not isinstance(a, types.Literal):
                    return None                          # typed again with its literal
                want.append(a)
            else:
                want.append(token_type(t, dt))
                if isinstance(want[-1], types.Array) and a != want[-1]:
                    raise TypingError(f"{name}: argument {a}, declared {want[-1]}")
        sig = ret(table, types.StarArgTuple.from_types(want))

        def codegen(context, builder, signature, llargs):
            tbl = context.make_array(signature.args[0])(context, builder, llargs[0])
            addr = builder.load(cgutils.gep(builder, tbl.data, slot))
            with cgutils.if_unlikely(builder, cgutils.is_null(builder, addr)):
                context.call_conv.return_user_exc(
                    builder, RuntimeError, (f"kernel {name} not in the address table",))
            fnty = context.call_conv.get_function_type(ret, want)
            fn = builder.inttoptr(addr, fnty.as_pointer())
            status, res = context.call_conv.call_function(
                builder, fn, ret, want, cgutils.unpack_tuple(builder, llargs[1], len(want)))
            with cgutils.if_unlikely(builder, status.is_error):
                context.call_conv.return_status_propagate(builder, status)
            return res
        return sig, codegen

    return call


