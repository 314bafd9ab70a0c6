"""Arrays borrowed without reference counting, for the hottest compiled loops.

numba counts the references to every array that a compiled function receives or binds (an
argument, a view, an inlined helper's parameter): an atomic increment and decrement on the
array's memory record, which its pruning pass cannot always remove. Where a small helper
runs millions of times with several array arguments, those counts cost: in the svc Gram
kernel's inverse path (:func:`._svm_gram_kernel._set_by_inverse`, W3's run-wise betas) they
took 17-20% of a plain fit's profile and 23% of a permutation test's on an Emerald Rapids
Xeon, where an atomic operation costs about 6.6 ns. The binary logistic Newton solver
(:func:`._logistic_kernel._newton_binary`), ``LogisticRegressionCV``'s path start and the
svc Gram kernel's single-problem solver (:func:`._svm_gram_kernel._solve_dual`) borrow
their arrays too: their counts took 4.6% of a ``LogisticRegressionCV`` profile and 2.9% of
svc's at W1 12 mm on a Rocket Lake Xeon (stop 77).

:func:`borrowed` returns the same array without its memory record (a null ``meminfo``, which
numba's reference counting skips). Such an array owns nothing: it is valid only while its
owner is alive, so it must stay local to the compiled function that borrows it (never
returned, stored or captured), with the owner held by that function's caller.
"""

from __future__ import annotations

from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["borrowed"]


@intrinsic
def borrowed(typingctx, arr):
    """``arr`` itself (same data, shape, strides and type) without its memory record, so
    that numba does not count references to it; see the module's docstring for when that is
    safe. In compiled code only."""

    def codegen(context, builder, signature, args):
        source = context.make_array(signature.args[0])(context, builder, value=args[0])
        view = context.make_array(signature.return_type)(context, builder)
        view.meminfo = cgutils.get_null_value(view.meminfo.type)
        view.parent = cgutils.get_null_value(view.parent.type)
        view.nitems = source.nitems
        view.itemsize = source.itemsize
        view.data = source.data
        view.shape = source.shape
        view.strides = source.strides
        return view._getvalue()

    return arr(arr), codegen
