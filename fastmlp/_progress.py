"""Progress display: a tqdm bar on a terminal, plain lines otherwise, or nothing.

Updates come between fused blocks of steps, never per sample, so a bar costs
nothing measurable.
"""

import sys


def _bar_available(stream):
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class Progress:
    """Report training progress.

    Parameters
    ----------
    verbose : bool or int
        False/0 shows nothing. True/1 shows a tqdm bar when standard output is
        a terminal and tqdm is installed, else plain lines. 2 always prints
        plain lines.
    total : int
        Number of units (epochs or steps) the bar counts to.
    unit : str
        What one unit is.
    """

    def __init__(self, verbose, total, unit):
        self.enabled = bool(verbose)
        self.bar = None
        if self.enabled and verbose != 2 and _bar_available(sys.stdout):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit=unit, dynamic_ncols=True, leave=True)

    def update(self, n, line=None, **postfix):
        """Advance by ``n`` units; show ``postfix`` on the bar, or print ``line``."""
        if not self.enabled:
            return
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix({k: _fmt(v) for k, v in postfix.items()}, refresh=False)
            self.bar.update(n)
        elif line is not None:
            print(line, flush=True)

    def close(self):
        """Finish the bar, if any."""
        if self.bar is not None:
            self.bar.close()


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else value
